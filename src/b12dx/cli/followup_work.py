"""What every follow-up command does around its work (``b12dx.cli.followup``): open the
database, one transaction, the actor (``cli:<login>`` in a practice), the time, and the
store's field errors named by the command line's options.

The clock is read here and nowhere else (the store and the engine are given the time).
It is passed on with this machine's zone, which the store turns into UTC for keeping, so
"today", the date no entry may be after, is the clinic's local date."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from b12dx.errors import FieldError, InputError
from b12dx.store.periods import parse_days

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from b12dx.knowledge.loader import Knowledge
    from b12dx.store.audit import Actor
    from b12dx.store.db import Database
    from b12dx.store.tables import Patient


@dataclass(frozen=True)
class Work:
    session: Session
    kb: Knowledge
    actor: Actor
    now: dt.datetime

    @property
    def today(self) -> dt.date:
        return self.now.date()


def login() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def now() -> dt.datetime:
    return dt.datetime.now().astimezone()


def practice_actor(session: Session, practice: str | None) -> Actor:
    from sqlalchemy import func, select

    from b12dx.store.audit import LOCAL_PRACTICE_ID, Actor
    from b12dx.store.tables import Practice

    if practice is None:
        return Actor(login(), LOCAL_PRACTICE_ID)
    found = session.scalars(
        select(Practice).where(func.lower(Practice.name) == practice.strip().lower())
    ).first()
    if found is None:
        names = ", ".join(p.name for p in session.scalars(select(Practice).order_by(Practice.id)))
        raise InputError.single("--practice", f"no practice named {practice!r}", names)
    return Actor(login(), found.id)


def open_announced(db: str | None) -> Database:
    """The database opened; when this made a new one, standard error says where, so a
    mistyped name is seen at once and not taken for a database with no patients."""
    from b12dx.extras import need

    need("store", "b12dx's follow-up commands (patient, record, due, backup, restore, user)")
    from b12dx.store.db import open_database

    opened = open_database(db)
    if opened.created:
        sys.stderr.write(f"b12dx: Created a new database at {opened.where}\n")
    return opened


@contextlib.contextmanager
def database(db: str | None) -> Iterator[Database]:
    """The database opened (and closed after); an operational failure (locked past the
    timeout, disk full, server gone) is a DatabaseError saying nothing was changed."""
    opened = open_announced(db)
    from sqlalchemy.exc import OperationalError

    from b12dx.store.db import DatabaseError

    try:
        yield opened
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseError(f"database: {reason}; nothing was changed") from exc
    finally:
        opened.dispose()


Rename = Mapping[str, str | Callable[[FieldError], str]]


@contextlib.contextmanager
def work(db: str | None, practice: str | None = None) -> Iterator[Work]:
    """The database opened, one transaction (committed at the end, rolled back on any
    error), the actor and the time."""
    from b12dx.knowledge.loader import load_knowledge

    with database(db) as opened, opened.transaction() as session:
        yield Work(session, load_knowledge(), practice_actor(session, practice), now())


@contextlib.contextmanager
def patient_work(
    db: str | None, practice: str | None, patient_id: str, names: Rename | None = None
) -> Iterator[tuple[Work, Patient]]:
    """``work`` on one patient of the practice (else a 404-like InputError), with the
    store's field errors named by the command's options (``names``)."""
    from b12dx.store import patients

    with work(db, practice) as c, options(names or {}):
        yield c, patients.get(c.session, c.actor, patient_id)


@contextlib.contextmanager
def options(names: Rename) -> Iterator[None]:
    """The store's field errors, named by the options they came from."""
    try:
        yield
    except InputError as exc:
        out = []
        for e in exc.errors:
            name = names.get(e.path, e.path)
            out.append(FieldError(name(e) if callable(name) else name, e.message, e.accepted))
        raise InputError(out) from None


def date_option(value: str | None, option: str) -> dt.date | None:
    from b12dx.cli.io import parse_date

    return parse_date(value, option) if value is not None else None


def required_date(value: str, option: str) -> dt.date:
    """A date option the command requires (Typer has made sure it is given)."""
    day = date_option(value, option)
    assert day is not None
    return day


def as_of_for(value: str | None, ctx: Work, born: dt.date) -> dt.date:
    when = date_option(value, "--as-of") or ctx.today
    if when < born:
        raise InputError.single("--as-of", f"{when} is before the patient's birth date {born}")
    return when


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def console() -> Any:
    from rich.console import Console

    return Console()


def write_atomic(path: Path, text: str, option: str) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    path = path.expanduser()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError.single(option, f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError.single(option, f"cannot write {path}: {exc.strerror}") from None


def parse_within(value: str) -> int:
    """Days in a period written as a number of days, or Nd, Nw, Nm (``store.periods``)."""
    return parse_days(value, "--within")
