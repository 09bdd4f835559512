"""A process that writes to the follow-up store through its API until it is killed: the
crash and concurrency tests start it, read what it says it has committed, and kill it.

    python tests/store_writer.py URL loop [COUNT]   one dose per transaction
    python tests/store_writer.py URL bulk COUNT     COUNT doses in one transaction

It creates its own patient first (so runs never collide on a dose date), then prints one
line per event, flushed at once:

    ready PATIENT_ID          the database is open and the patient committed
    ok DOSE_ID DATE           a dose and its audit row are committed
    bulk start MARKER COUNT   the long transaction has begun (doses given by MARKER)
    bulk done MARKER          ... and is committed
    error MESSAGE             a write failed (the writer goes on)

``loop`` without COUNT runs until killed. Dates count back from today, one per dose.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from b12dx.knowledge import load_knowledge
from b12dx.store import entries, patients
from b12dx.store.audit import Actor
from b12dx.store.db import open_database

NOW = dt.datetime.now(dt.UTC)  # the real clock: the store refuses doses after "now"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    url, mode = argv[0], argv[1]
    count = int(argv[2]) if len(argv) > 2 else None
    actor = Actor(f"writer:{os.getpid()}")
    kb = load_knowledge()
    db = open_database(url)
    with db.transaction() as s:
        pid = patients.add(
            s,
            kb,
            actor,
            NOW,
            name=f"Writer {os.getpid()}",
            birth_date=dt.date(1950, 1, 1),
            sex="female",
        ).id
    say(f"ready {pid}")
    day = NOW.date()
    if mode == "bulk":
        assert count is not None
        marker = f"bulk:{os.getpid()}"
        with db.transaction() as s:
            say(f"bulk start {marker} {count}")
            patient = patients.get(s, actor, pid)
            for i in range(count):
                entries.add_dose(
                    s,
                    actor,
                    NOW,
                    patient,
                    given_on=day - dt.timedelta(days=i),
                    drug="hydroxocobalamin",
                    dose="1 mg",
                    route="im",
                    given_by=marker,
                )
        say(f"bulk done {marker}")
        return 0
    i = 0
    while count is None or i < count:
        given_on = day - dt.timedelta(days=i)
        try:
            with db.transaction() as s:
                entry = entries.add_dose(
                    s,
                    actor,
                    NOW,
                    patients.get(s, actor, pid),
                    given_on=given_on,
                    drug="hydroxocobalamin",
                    dose="1 mg",
                    route="im",
                )
            say(f"ok {entry.id} {given_on}")
        except Exception as exc:  # reported, so the test can fail with the reason
            say(f"error {type(exc).__name__}: {exc}".replace("\n", " "))
        i += 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
