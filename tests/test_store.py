"""The follow-up store (b12dx.store) on SQLite and on a real PostgreSQL (tests/pg.py):
migrations from empty and from the previous schema, the schema the migrations build is
the one tables.py describes, bad input changes nothing, practices see only their own
patients, snapshots and the audit log are append-only, history as of a date, the due
list, and backup/restore round trips (also from one backend to the other).

Dates are fixed (``NOW``): the store is given the time, it never reads the clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from b12dx.errors import InputError
from b12dx.knowledge import Knowledge, load_knowledge
from b12dx.store import audit, backup, due, entries, history, patients, snapshots
from b12dx.store.audit import Actor
from b12dx.store.backup import BackupError
from b12dx.store.db import (
    Database,
    DatabaseError,
    current_revision,
    default_path,
    head_revision,
    migrate,
    open_database,
)
from b12dx.store.patients import NotFoundError
from b12dx.store.tables import (
    AssessmentSnapshot,
    AuditEntry,
    Base,
    DoseEntry,
    PlannedDose,
    Practice,
    User,
)

NOW = dt.datetime(2026, 9, 1, 10, 30, tzinfo=dt.UTC)
TODAY = NOW.date()
NURSE = Actor("nurse.jones")
OTHER_PRACTICE = Actor("dr.smith", practice_id=2)
BACKENDS = ["sqlite", "postgresql"]


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for a new, empty database on each backend."""
    return new_url(request, tmp_path, request.param)


def new_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    if backend == "sqlite":
        path = tmp_path / f"db{len(list(tmp_path.glob('*.sqlite3')))}.sqlite3"
        path.touch()  # reserves the name; an empty file is a new database to SQLite
        return f"sqlite:///{path}"
    server = request.getfixturevalue("pg_server")
    return str(server.new_database())


@pytest.fixture
def opened() -> Iterator[Callable[[str], Database]]:
    """open_database, with every database opened disposed of at the end."""
    dbs: list[Database] = []

    def _open(u: str) -> Database:
        dbs.append(open_database(u))
        return dbs[-1]

    yield _open
    for d in dbs:
        d.dispose()


@pytest.fixture
def db(url: str, opened: Callable[[str], Database]) -> Database:
    return opened(url)


@pytest.fixture(scope="module", params=BACKENDS)
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kb: Knowledge
) -> Iterator[tuple[Database, str]]:
    """One database per backend with rows in every table, and a patient's id, shared by
    the tests that prove a rejected change leaves it exactly as it was."""
    d = open_database(new_url(request, tmp_path_factory.mktemp("populated"), request.param))
    try:
        yield d, populate(d, kb)
    finally:
        d.dispose()


def counts(d: Database) -> dict[str, int]:
    with d.transaction() as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def add_patient(d: Database, kb: Knowledge, actor: Actor = NURSE, **kw: Any) -> str:
    details: dict[str, Any] = {"name": "Ann Bell", "birth_date": dt.date(1958, 3, 4)}
    details |= {"sex": "female"} | kw
    with d.transaction() as s:
        return patients.add(s, kb, actor, NOW, **details).id


def dose(d: Database, pid: str, day: dt.date, actor: Actor = NURSE, **kw: Any) -> DoseEntry:
    args: dict[str, Any] = {"drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"} | kw
    with d.transaction() as s:
        return entries.add_dose(s, actor, NOW, patients.get(s, actor, pid), given_on=day, **args)


def _lab(pid: str, **kw: Any) -> Callable[[Session], object]:
    def change(s: Session) -> object:
        args: dict[str, Any] = {"test": "total_b12", "value": 150, "unit": "ng/L"}
        args |= {"taken_on": dt.date(2026, 8, 1)} | kw
        return entries.add_lab(s, load_knowledge(), NURSE, NOW, patients.get(s, NURSE, pid), **args)

    return change


def _dose(pid: str, **kw: Any) -> Callable[[Session], object]:
    def change(s: Session) -> object:
        args: dict[str, Any] = {"drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"}
        args |= {"given_on": dt.date(2026, 8, 1)} | kw
        return entries.add_dose(s, NURSE, NOW, patients.get(s, NURSE, pid), **args)

    return change


def _rating(pid: str, **kw: Any) -> Callable[[Session], object]:
    def change(s: Session) -> object:
        args: dict[str, Any] = {"symptom": "paresthesia", "rating": "mild"}
        args |= {"rated_on": dt.date(2026, 8, 1)} | kw
        return entries.add_rating(
            s, load_knowledge(), NURSE, NOW, patients.get(s, NURSE, pid), **args
        )

    return change


def rejected(d: Database, change: Callable[[Session], object]) -> InputError:
    """Run ``change`` in a transaction; it must raise InputError and change nothing."""
    before = counts(d)
    with pytest.raises(InputError) as caught, d.transaction() as s:
        change(s)
    assert counts(d) == before
    return caught.value


def populate(d: Database, kb: Knowledge) -> str:
    """A bit of everything: each table gets rows."""
    with d.transaction() as s:
        if s.get(Practice, 2) is None:
            s.add(Practice(id=2, name="Other surgery", created_at=NOW))
        s.add(User(username="gp", password_hash="h", practice_id=1, created_at=NOW))
    pid = add_patient(d, kb, conditions=["chronic_kidney_disease"], name="Zoë Ñandú")
    add_patient(d, kb, OTHER_PRACTICE, name="Bob Other")
    with d.transaction() as s:
        p = patients.get(s, NURSE, pid)
        patients.update(
            s,
            kb,
            NURSE,
            NOW,
            p,
            egfr=42.5,
            add_exposures=["nitrous_oxide"],
            start_medications=[("metformin", dt.date(2020, 2, 29))],
        )
        _lab(pid, value=123.4, unit="pmol/L", reference_low=150, reference_high=600)(s)
        _rating(pid, symptom="leg_weakness", rating="severe")(s)
        _dose(pid, given_on=dt.date(2026, 8, 2), dose="1000 mcg", given_by="Nurse O'Brien")(s)
        snapshots.save(s, kb, NURSE, NOW, p, TODAY)
    return pid


def alternate_days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(0, (last - first).days + 1, 2)]


# -- migrations -------------------------------------------------------------------------


def test_an_empty_database_is_migrated_to_head_on_open(db: Database) -> None:
    assert current_revision(db.engine) == head_revision()
    names = set(inspect(db.engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= names
    with db.transaction() as s:
        assert s.get(Practice, audit.LOCAL_PRACTICE_ID) is not None


def test_opening_twice_migrates_once_and_keeps_the_data(
    url: str, opened: Callable[[str], Database], kb: Knowledge
) -> None:
    pid = add_patient(opened(url), kb)
    again = opened(url)
    with again.transaction() as s:
        assert patients.get(s, NURSE, pid).name == "Ann Bell"


# The rows as revision 0001 wrote them, in plain SQL that both backends read the same way.
ROWS_0001 = [
    "INSERT INTO patients (id, practice_id, name, birth_date, sex, diet, ethnicity, pregnant,"
    " breastfeeding, profile, calendar_token, created_at) VALUES ('ABCD1234', 1, 'Old Timer',"
    " '1950-05-06', 'male', 'vegan', 'unknown', FALSE, FALSE, NULL, 'tok-1',"
    " '2026-01-02 09:00:00')",
    "INSERT INTO patient_conditions (patient_id, condition_id, egfr, recorded_on)"
    " VALUES ('ABCD1234', 'pernicious_anemia', NULL, '2026-01-02')",
    "INSERT INTO lab_results (patient_id, test, value_number, value_text, unit, taken_on,"
    " reference_low, reference_high, recorded_at, recorded_by) VALUES ('ABCD1234',"
    " 'total_b12', 140, NULL, 'ng/L', '2026-01-01', NULL, NULL, '2026-01-02 09:01:00', 'cli:gp')",
    "INSERT INTO doses_given (patient_id, given_on, drug, dose_mg, route, given_by,"
    " recorded_at, recorded_by) VALUES ('ABCD1234', '2026-01-03', 'hydroxocobalamin', 1.0,"
    " 'im', 'cli:gp', '2026-01-03 10:00:00', 'cli:gp')",
    "INSERT INTO audit_log (at, actor, practice_id, patient_id, action, entity, entity_id,"
    " detail) VALUES ('2026-01-03 10:00:00', 'cli:gp', 1, 'ABCD1234', 'create', 'dose', '1',"
    ' \'{"drug": "hydroxocobalamin"}\')',
]


def test_a_database_at_the_previous_schema_is_migrated_with_its_data_intact(
    url: str, opened: Callable[[str], Database], kb: Knowledge
) -> None:
    migrate(url, "0001")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == "0001"
            assert "users" not in inspect(conn).get_table_names()
            for sql in ROWS_0001:
                conn.execute(text(sql))
    finally:
        engine.dispose()

    db = opened(url)
    assert current_revision(db.engine) == head_revision()
    with db.transaction() as s:
        p = patients.get(s, NURSE, "abcd1234")
        assert (p.name, p.birth_date, p.sex, p.diet) == (
            "Old Timer",
            dt.date(1950, 5, 6),
            "male",
            "vegan",
        )
        assert [c.condition_id for c in p.conditions] == ["pernicious_anemia"]
        assert [(lab.test, lab.value_number, lab.unit) for lab in p.labs] == [
            ("total_b12", 140, "ng/L")
        ]
        assert [(x.given_on, x.dose_mg, x.route) for x in p.doses] == [
            (dt.date(2026, 1, 3), 1.0, "im")
        ]
        [entry] = audit.entries(s, 1, "ABCD1234")
        assert entry.detail == {"drug": "hydroxocobalamin"}
        # What 0002 added works on the migrated database.
        s.add(User(username="gp", password_hash="x", practice_id=1, created_at=NOW))
    # And the migrated patient takes new entries.
    dose(db, "ABCD1234", dt.date(2026, 4, 3))


def test_the_migrations_build_exactly_the_schema_in_tables_py(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


@pytest.mark.parametrize("upgrade", [True, False])
def test_a_database_at_an_unknown_newer_revision_is_refused_clearly(
    url: str, opened: Callable[[str], Database], upgrade: bool
) -> None:
    with opened(url).transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(DatabaseError) as caught:
        open_database(url, upgrade=upgrade)
    message = str(caught.value)
    assert "9999" in message and "newer" in message, message
    assert "Traceback" not in message


def test_the_default_database_is_a_wal_file_in_the_data_dir_created_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: Callable[[str], Database]
) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    monkeypatch.setenv("B12DX_DATA_DIR", str(data_dir))
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    db = open_database()
    try:
        assert db.sqlite_path == data_dir / "b12dx.sqlite3"
        assert db.sqlite_path.is_file()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()
    # WAL is a property of the file: any other program opening it finds it in WAL mode.
    with sqlite3.connect(data_dir / "b12dx.sqlite3") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Without B12DX_DATA_DIR: the platform's user data directory.
    monkeypatch.delenv("B12DX_DATA_DIR")
    assert default_path() == Path(platformdirs.user_data_dir("b12dx")) / "b12dx.sqlite3"


def test_a_bare_path_is_a_sqlite_file(tmp_path: Path, opened: Callable[[str], Database]) -> None:
    db = opened(str(tmp_path / "clinic.db"))
    assert db.is_sqlite and (tmp_path / "clinic.db").is_file()
    assert db.created and db.where == str(tmp_path / "clinic.db")
    assert not opened(str(tmp_path / "clinic.db")).created


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which a file is made world-readable unless told."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_database_and_its_wal_files_are_readable_by_their_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None
) -> None:
    """As backups are: 0600 files (the -wal and -shm too) in a 0700 data directory."""
    data = tmp_path / "data" / "b12dx"
    monkeypatch.setenv("B12DX_DATA_DIR", str(data))
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    db = open_database()
    try:
        with db.transaction() as s:
            s.execute(text("SELECT COUNT(*) FROM patients"))
            files = sorted(p.name for p in data.iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
    finally:
        db.dispose()
    assert {"b12dx.sqlite3", "b12dx.sqlite3-wal", "b12dx.sqlite3-shm"} <= set(files), files
    assert modes == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    # A file in a folder the user chose: the file is private, the folder is theirs.
    chosen = open_database(str(tmp_path / "clinic.sqlite3"))
    chosen.dispose()
    assert stat.S_IMODE((tmp_path / "clinic.sqlite3").stat().st_mode) == 0o600


def test_a_sqlite_file_in_a_folder_that_does_not_exist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the default data directory is made; elsewhere a missing folder is a slip."""
    monkeypatch.delenv("B12DX_DATABASE_URL", raising=False)
    with pytest.raises(DatabaseError) as caught:
        open_database(str(tmp_path / "sub" / "clinic.db"))
    assert str(caught.value).startswith(f"--db: the folder {tmp_path / 'sub'} does not exist")
    monkeypatch.setenv("B12DX_DATABASE_URL", f"sqlite:///{tmp_path / 'sub' / 'clinic.db'}")
    with pytest.raises(DatabaseError) as caught:
        open_database()
    assert str(caught.value).startswith("B12DX_DATABASE_URL: the folder")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize(
    ("bad_url", "says"),
    [
        ("mysql://u@localhost/db", "not supported"),
        ("postgresql://clinic:s3cret@/nodb?host=/nonexistent-b12dx", "cannot open"),
    ],
)
def test_a_database_that_cannot_be_used_is_a_database_error(bad_url: str, says: str) -> None:
    with pytest.raises(DatabaseError) as caught:
        open_database(bad_url)
    assert says in str(caught.value)
    assert "s3cret" not in str(caught.value)


# -- the store API ----------------------------------------------------------------------


def test_a_dose_is_checked_against_the_knowledge_bases_regimens_when_given_it(
    db: Database, kb: Knowledge
) -> None:
    """The amounts and the shortest interval are read from the regimens: change them and
    the check follows. Without a knowledge base (an import of history) nothing is asked."""
    pid = add_patient(db, kb)
    im = {"drug": "hydroxocobalamin", "route": "im"}
    regimens = {
        rid: r.model_copy(update={"dose": "2 mg"}) if r.drug == "hydroxocobalamin" else r
        for rid, r in kb.regimens.items()
    }
    twos = dataclasses.replace(kb, regimens=regimens)

    def add(day: dt.date, amount: str, knowledge: Knowledge | None, force: bool = False) -> Any:
        return lambda s: entries.add_dose(
            s, NURSE, NOW, patients.get(s, NURSE, pid), given_on=day, dose=amount,
            kb=knowledge, force=force, **im,
        )  # fmt: skip

    with db.transaction() as s:
        add(dt.date(2026, 8, 1), "2 mg", twos)(s)
    err = rejected(db, add(dt.date(2026, 8, 10), "1 mg", twos))
    assert isinstance(err, entries.UnusualDose)
    assert [(e.path, e.accepted) for e in err.errors] == [
        ("dose", "2 mg (im_neurological, im_standard)")
    ]
    err = rejected(db, add(dt.date(2026, 8, 2), "2 mg", twos))
    assert [e.path for e in err.errors] == ["date"] and "every 2 days" in err.errors[0].message
    with db.transaction() as s:
        add(dt.date(2026, 8, 2), "10 mg", None)(s)  # as an import stores history
        add(dt.date(2026, 8, 10), "1 mg", twos, force=True)(s)
    with db.transaction() as s:
        got = [(d.given_on.day, d.dose_mg) for d in patients.get(s, NURSE, pid).doses]
    assert got == [(1, 2.0), (2, 10.0), (10, 1.0)]


def test_every_change_is_stored_with_an_audit_row_naming_its_actor(
    db: Database, kb: Knowledge
) -> None:
    pid = add_patient(db, kb, conditions=["pernicious_anemia"])
    with db.transaction() as s:
        _lab(pid)(s)
        _rating(pid, rating="moderate")(s)
    dose(db, pid, dt.date(2026, 8, 2), Actor("cli:gp"), dose="1000 micrograms")
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        patients.update(s, kb, NURSE, NOW, p, diet="vegan", add_exposures=["nitrous_oxide"])
        snapshots.save(s, kb, NURSE, NOW, p, TODAY)
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        assert p.doses[0].dose_mg == 1.0 and p.doses[0].given_by == "cli:gp"
        assert p.diet == "vegan"
        log = [(e.actor, e.action, e.entity, e.patient_id) for e in audit.entries(s, 1, pid)]
    assert log == [
        ("nurse.jones", "create", "patient", pid),
        ("nurse.jones", "create", "lab_result", pid),
        ("nurse.jones", "create", "symptom_rating", pid),
        ("cli:gp", "create", "dose", pid),
        ("nurse.jones", "update", "patient", pid),
        ("nurse.jones", "assess", "assessment", pid),
    ]


def test_times_are_kept_as_the_same_moment_in_utc_on_every_backend(
    db: Database, kb: Knowledge
) -> None:
    # SQLite has no time zones: a time given at +02:00 must not come back two hours off.
    at = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with db.transaction() as s:
        pid = patients.add(
            s, kb, NURSE, at, name="Tz Person", birth_date=dt.date(1970, 1, 1), sex="male"
        ).id
    with db.transaction() as s:
        created = patients.get(s, NURSE, pid).created_at
        [entry] = audit.entries(s, 1, pid)
    assert created == at and created.tzinfo == dt.UTC and entry.at == at
    assert backup.dump(db)["tables"]["patients"][0]["created_at"] == "2026-09-01T10:00:00+00:00"


BAD_INPUT: list[tuple[str, Callable[[str], Callable[[Session], object]], str, str]] = [
    # (case, change, field named, text the message or accepted list holds)
    ("lab_wrong_unit", lambda p: _lab(p, unit="mg/dL"), "unit", "ng/L, pg/mL, pmol/L"),
    ("lab_future", lambda p: _lab(p, taken_on=TODAY + dt.timedelta(days=1)), "date", "future"),
    ("lab_unknown_test", lambda p: _lab(p, test="vitamin_q"), "test", "total_b12"),
    ("lab_text_value", lambda p: _lab(p, value="lots"), "value", "number"),
    ("lab_before_birth", lambda p: _lab(p, taken_on=dt.date(1950, 1, 1)), "date", "birth"),
    ("dose_future", lambda p: _dose(p, given_on=TODAY + dt.timedelta(days=1)), "date", "future"),
    ("dose_bad_text", lambda p: _dose(p, dose="a shot"), "dose", "mg or micrograms"),
    ("dose_too_big", lambda p: _dose(p, dose="50 mg"), "dose", "outside"),
    ("dose_unknown_drug", lambda p: _dose(p, drug="aspirin"), "drug", "hydroxocobalamin"),
    ("dose_unknown_route", lambda p: _dose(p, route="rectal"), "route", "im, oral"),
    ("rating_unknown_symptom", lambda p: _rating(p, symptom="hiccups"), "symptom", "paresthesia"),
    ("rating_unknown_value", lambda p: _rating(p, rating="awful"), "rating", "none, mild"),
    (
        "rating_future",
        lambda p: _rating(p, rated_on=TODAY + dt.timedelta(days=3)),
        "date",
        "future",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [pytest.param(c, f, t, id=case) for case, c, f, t in BAD_INPUT],
)
def test_bad_input_is_a_clear_error_naming_the_field_and_changes_nothing(
    populated: tuple[Database, str],
    change: Callable[[str], Callable[[Session], object]],
    field: str,
    says: str,
) -> None:
    db, pid = populated
    error = rejected(db, change(pid))
    [problem] = error.errors
    assert problem.path == field
    assert says in str(problem), str(problem)


def test_a_duplicate_entry_is_refused_and_changes_nothing(db: Database, kb: Knowledge) -> None:
    pid = add_patient(db, kb)
    day = dt.date(2026, 7, 1)
    dose(db, pid, day)
    assert "already recorded" in str(rejected(db, _dose(pid, given_on=day)))
    with db.transaction() as s:
        _lab(pid)(s)
        _rating(pid)(s)
    assert "already recorded" in str(rejected(db, _lab(pid)))
    assert "already rated" in str(rejected(db, _rating(pid)))


def test_an_unknown_patient_is_not_found_and_nothing_changes(
    populated: tuple[Database, str],
) -> None:
    db, _ = populated
    before = counts(db)
    with pytest.raises(NotFoundError, match="no patient 'ZZZZ9999'"), db.transaction() as s:
        _dose("ZZZZ9999")(s)
    assert counts(db) == before


def test_a_bad_new_patient_names_every_problem_and_changes_nothing(
    populated: tuple[Database, str], kb: Knowledge
) -> None:
    db, _ = populated
    error = rejected(
        db,
        lambda s: patients.add(
            s,
            kb,
            NURSE,
            NOW,
            name=" ",
            birth_date=TODAY + dt.timedelta(days=1),
            sex="x",
            conditions=["not_a_condition"],
        ),
    )
    assert [e.path for e in error.errors] == ["name", "birth_date", "sex", "condition"]


def test_a_failed_patient_update_changes_nothing(db: Database, kb: Knowledge) -> None:
    pid = add_patient(db, kb)
    # eGFR without chronic kidney disease is refused after the other changes were made in
    # the session: the transaction must take them all back.
    error = rejected(
        db,
        lambda s: patients.update(
            s,
            kb,
            NURSE,
            NOW,
            patients.get(s, NURSE, pid),
            diet="vegan",
            add_conditions=["pernicious_anemia"],
            egfr=40,
        ),
    )
    assert error.errors[0].path == "egfr"
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        assert p.diet == "omnivore" and p.conditions == []


def test_a_practice_sees_and_changes_only_its_own_patients(db: Database, kb: Knowledge) -> None:
    with db.transaction() as s:
        s.add(Practice(id=2, name="Other surgery", created_at=NOW))
    ours = add_patient(db, kb)
    dose(db, ours, dt.date(2026, 8, 1))
    theirs = add_patient(db, kb, OTHER_PRACTICE, name="Bob Other")
    before = counts(db)
    with pytest.raises(NotFoundError), db.transaction() as s:
        patients.get(s, OTHER_PRACTICE, ours)
    with pytest.raises(NotFoundError), db.transaction() as s:
        entries.add_dose(
            s,
            OTHER_PRACTICE,
            NOW,
            patients.get(s, OTHER_PRACTICE, ours),
            given_on=dt.date(2026, 8, 3),
            drug="hydroxocobalamin",
            dose="1 mg",
            route="im",
        )
    assert counts(db) == before
    with db.transaction() as s:
        assert [p.id for p in patients.all_in_practice(s, OTHER_PRACTICE)] == [theirs]
        assert [p.id for p in patients.all_in_practice(s, NURSE)] == [ours]
        assert {e.patient_id for e in audit.entries(s, 2)} == {theirs}
        assert {i.patient_id for i in due.due(s, kb, OTHER_PRACTICE, TODAY, 366)} <= {theirs}
        assert theirs not in {i.patient_id for i in due.due(s, kb, NURSE, TODAY, 366)}


def test_snapshots_and_the_audit_log_are_append_only(db: Database, kb: Knowledge) -> None:
    pid = add_patient(db, kb)
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        _rating(pid, rated_on=dt.date(2026, 8, 1), rating="moderate")(s)
        snap, _ = snapshots.save(s, kb, NURSE, NOW, p, TODAY)
        snap_id = snap.id
    stored = counts(db)
    assert stored["assessments"] == 1

    def edits(s: Session) -> list[Callable[[], object]]:
        snap = s.get(AssessmentSnapshot, snap_id)
        assert snap is not None
        planned = s.scalars(select(PlannedDose)).first()
        entry = s.scalars(select(AuditEntry)).first()
        assert entry is not None

        def set_(obj: object, attr: str, value: object) -> Callable[[], object]:
            return lambda: (setattr(obj, attr, value), s.flush())

        out = [
            set_(snap, "urgency", "routine"),
            set_(entry, "actor", "someone.else"),
            lambda: (s.delete(entry), s.flush()),
            lambda: s.execute(update(AssessmentSnapshot).values(urgency="routine")),
            lambda: s.execute(update(AuditEntry).values(actor="someone.else")),
            lambda: s.execute(delete(AuditEntry)),
        ]
        if planned is not None:
            out.append(set_(planned, "dose", "2 mg"))
        return out

    with db.transaction() as s:
        n = len(edits(s))
    for i in range(n):
        with pytest.raises(RuntimeError, match=r"immutable|never"), db.transaction() as s:
            edits(s)[i]()
    assert counts(db) == stored
    with db.transaction() as s:
        snap = s.get(AssessmentSnapshot, snap_id)
        assert snap is not None and snap.urgency != "routine"
        assert {e.actor for e in s.scalars(select(AuditEntry))} == {"nurse.jones"}


# -- history as of a date ---------------------------------------------------------------


def test_history_on_a_date_holds_only_what_was_recorded_by_then(
    tmp_path: Path, opened: Callable[[str], Database], kb: Knowledge
) -> None:
    db = opened(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    pid = add_patient(db, kb)
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        patients.update(
            s,
            kb,
            NURSE,
            NOW,
            p,
            start_medications=[("metformin", dt.date(2026, 3, 1)), ("proton_pump_inhibitor", None)],
        )
        patients.update(
            s, kb, NURSE, NOW, p, start_medications=[("colchicine", dt.date(2026, 6, 10))]
        )
        patients.update(
            s, kb, NURSE, NOW, p, stop_medications=[("colchicine", dt.date(2026, 7, 1))]
        )
        for day, value in ((dt.date(2026, 3, 1), 150), (dt.date(2026, 6, 20), 400)):
            entries.add_lab(
                s, kb, NURSE, NOW, p, test="total_b12", value=value, unit="ng/L", taken_on=day
            )
        for sid, day, rating in (
            ("paresthesia", dt.date(2026, 2, 1), "none"),
            ("paresthesia", dt.date(2026, 3, 1), "mild"),
            ("paresthesia", dt.date(2026, 4, 1), "moderate"),
            ("leg_weakness", dt.date(2026, 3, 1), "moderate"),
            ("leg_weakness", dt.date(2026, 5, 1), "none"),
            ("numbness", dt.date(2026, 6, 20), "severe"),
        ):
            entries.add_rating(s, kb, NURSE, NOW, p, symptom=sid, rating=rating, rated_on=day)
        for day in (dt.date(2026, 5, 1), dt.date(2026, 6, 20)):
            entries.add_dose(
                s, NURSE, NOW, p, given_on=day, drug="hydroxocobalamin", dose="1 mg", route="im"
            )
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        on = history.record_at(p, dt.date(2026, 6, 1))
        later = history.record_at(p, dt.date(2026, 7, 15))

    assert on.as_of == dt.date(2026, 6, 1) and on.age_years == 68
    assert [(lab.value, lab.date) for lab in on.labs] == [(150, dt.date(2026, 3, 1))]
    assert [d.date for d in on.b12_treatment] == [dt.date(2026, 5, 1)]
    # Durations count from the start date: 92 days = 3.0 months; unknown start, no duration.
    meds = {m.id: m.duration_months for m in on.medications}
    assert meds == {"metformin": 3.0, "proton_pump_inhibitor": None}
    # Paresthesia's latest rating is above none: present since its first rating above none
    # (13.1 weeks); leg weakness's latest is none: absent; numbness not rated yet.
    symptoms = {sy.id: (sy.severity, sy.duration_weeks) for sy in on.symptoms}
    assert symptoms == {"paresthesia": ("moderate", 13.1)}

    assert len(later.labs) == 2 and len(later.b12_treatment) == 2
    meds = {m.id: m.duration_months for m in later.medications}
    assert meds == {"metformin": round(136 / 30.4375, 1), "proton_pump_inhibitor": None}
    assert {sy.id for sy in later.symptoms} == {"paresthesia", "numbness"}


# -- what is due ------------------------------------------------------------------------


@pytest.fixture
def neuro_patient(db: Database, kb: Knowledge) -> str:
    """Pins and needles from 5 January 2026, alternate-day hydroxocobalamin 1 mg IM from
    then until the day before the first review (5 April): the last loading dose is on
    3 April, so 2-monthly maintenance is due on 3 June, and none is recorded."""
    pid = add_patient(db, kb)
    with db.transaction() as s:
        p = patients.get(s, NURSE, pid)
        _rating(pid, rating="moderate", rated_on=dt.date(2026, 1, 5))(s)
        for day in alternate_days(dt.date(2026, 1, 5), dt.date(2026, 4, 4)):
            entries.add_dose(
                s, NURSE, NOW, p, given_on=day, drug="hydroxocobalamin", dose="1 mg", route="im"
            )
    return pid


def _due(db: Database, kb: Knowledge, as_of: dt.date, within: int = 7) -> list[due.DueItem]:
    with db.transaction() as s:
        return due.due(s, kb, NURSE, as_of, within)


def test_a_missed_maintenance_dose_after_loading_is_overdue_since_its_due_date(
    db: Database, kb: Knowledge, neuro_patient: str
) -> None:
    items = _due(db, kb, dt.date(2026, 7, 1))
    overdue = [i for i in items if i.kind == "maintenance_overdue"]
    assert [(i.patient_id, i.date) for i in overdue] == [(neuro_patient, dt.date(2026, 6, 3))]
    assert "28 days ago" in overdue[0].text and overdue[0].overdue
    assert items[0].kind == "maintenance_overdue"  # late things first
    # Within the 14 days' grace it is not overdue yet.
    assert not [i for i in _due(db, kb, dt.date(2026, 6, 10)) if i.kind == "maintenance_overdue"]


def test_the_next_loading_dose_and_the_review_are_due_within_the_window(
    db: Database, kb: Knowledge, neuro_patient: str
) -> None:
    # On 30 January the doses given so far end on 29 January (a day later than the
    # schedule's 31st, which is what comes next).
    items = _due(db, kb, dt.date(2026, 1, 30))
    assert [(i.kind, i.date) for i in items if i.kind == "dose_due"][:1] == [
        ("dose_due", dt.date(2026, 1, 31))
    ]
    assert all(i.date <= dt.date(2026, 2, 6) for i in items)
    review = [i for i in _due(db, kb, dt.date(2026, 4, 1)) if i.kind == "review_due"]
    assert [(i.patient_id, i.date) for i in review] == [(neuro_patient, dt.date(2026, 4, 5))]


def test_a_record_the_engine_refuses_is_listed_first_and_hides_no_one_else(
    db: Database, kb: Knowledge, neuro_patient: str
) -> None:
    # Added at 119; by 2028 past the contract's 120 years, so the engine refuses the record.
    old = add_patient(db, kb, name="Edna Old", birth_date=dt.date(1907, 1, 2))
    items = _due(db, kb, dt.date(2028, 3, 1))
    assert (items[0].patient_id, items[0].kind) == (old, "cannot_assess")
    assert "age_years" in items[0].text and items[0].overdue
    assert [i.patient_id for i in items if i.kind == "maintenance_overdue"] == [neuro_patient]


# -- backup and restore -----------------------------------------------------------------


def without_restore_entry(data: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    log = out["tables"]["audit_log"]
    assert log[-1]["action"] == "restore"
    del log[-1]
    return out


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("sqlite", "sqlite"),
        ("postgresql", "postgresql"),
        ("sqlite", "postgresql"),
        ("postgresql", "sqlite"),
    ],
)
def test_backup_and_restore_round_trip_exactly(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    opened: Callable[[str], Database],
    kb: Knowledge,
    source: str,
    target: str,
) -> None:
    src = opened(new_url(request, tmp_path, source))
    pid = populate(src, kb)
    before = backup.dump(src)
    assert all(before["tables"][t] for t in before["tables"]), "every table has rows"
    path = tmp_path / "clinic.b12dx-backup.gz"
    written = backup.write(src, path)
    assert written == {name: len(rows) for name, rows in before["tables"].items()}
    assert path.stat().st_mode & 0o777 == 0o600

    dst = opened(new_url(request, tmp_path, target))
    backup.restore(dst, backup.read(path), NURSE, NOW, replace=False)
    after = backup.dump(dst)
    assert without_restore_entry(after) == before
    restore_entry = after["tables"]["audit_log"][-1]
    assert (restore_entry["actor"], restore_entry["action"]) == ("nurse.jones", "restore")

    # The restored database goes on working: new rows get new ids, the history reads back.
    dose(dst, pid, dt.date(2026, 8, 20))
    add_patient(dst, kb, name="New Person")
    with dst.transaction() as s:
        p = patients.get(s, NURSE, pid)
        assert [d.given_on for d in p.doses] == [dt.date(2026, 8, 2), dt.date(2026, 8, 20)]
        assert history.record_at(p, TODAY).labs[0].value == 123.4


def test_restoring_over_patients_needs_replace(db: Database, kb: Knowledge) -> None:
    populate(db, kb)
    data = backup.dump(db)
    add_patient(db, kb, name="Only Here")
    before = backup.dump(db)
    with pytest.raises(BackupError, match="already holds 3 patient"):
        backup.restore(db, data, NURSE, NOW, replace=False)
    assert backup.dump(db) == before
    backup.restore(db, data, NURSE, NOW, replace=True)
    assert without_restore_entry(backup.dump(db)) == data


def _gz(obj: object) -> bytes:
    return gzip.compress(json.dumps(obj).encode())


Backup = dict[str, Any]


def changed(change: Callable[[Backup], object]) -> Callable[[Backup], bytes]:
    def make(good: Backup) -> bytes:
        data = json.loads(json.dumps(good))
        change(data)
        return _gz(data)

    return make


def set_row(table: str, key: str, value: object) -> Callable[[Backup], bytes]:
    return changed(lambda d: d["tables"][table][0].__setitem__(key, value))


# Each makes a bad backup file from a good one.
BAD_BACKUPS: dict[str, Callable[[Backup], bytes]] = {
    "not_gzip": lambda _: b"PK\x03\x04 a zip file",
    "truncated": lambda good: _gz(good)[:200],
    "gzip_not_json": lambda _: gzip.compress(b"patient,dose\n1,2\n"),
    "json_list": lambda _: _gz([1, 2, 3]),
    "foreign_format": lambda _: _gz({"format": "something-else", "tables": {}}),
    "newer_format": changed(lambda d: d.__setitem__("version", 3)),
    "other_revision": changed(lambda d: d.__setitem__("schema_revision", "0001")),
    "tables_not_a_map": changed(lambda d: d.__setitem__("tables", [])),
    "rows_not_a_list": changed(lambda d: d["tables"].__setitem__("patients", "x")),
    "row_not_a_map": changed(lambda d: d["tables"].__setitem__("patients", [1])),
    "unknown_table": changed(lambda d: d["tables"].__setitem__("secrets", [{"a": 1}])),
    "unknown_column": set_row("patients", "shoe_size", 9),
    "bad_date": set_row("patients", "birth_date", "last tuesday"),
    "date_not_text": set_row("doses_given", "given_on", 20260802),
    "text_not_a_number": set_row("doses_given", "dose_mg", "one"),
    "missing_column": changed(lambda d: d["tables"]["patients"][0].pop("name")),
    "dangling_reference": set_row("doses_given", "patient_id", "NOBODY00"),
    "duplicate_id": changed(
        lambda d: d["tables"]["doses_given"].append(d["tables"]["doses_given"][0])
    ),
    # Rows each well formed but refused by the rules a normal write follows: restored,
    # the API answered 422 for the patient (and 400 for the whole due list).
    "unknown_profile": set_row("patients", "profile", "no-such-profile"),
    "future_birth_date": set_row("patients", "birth_date", "2999-01-01"),
    "unknown_sex": set_row("patients", "sex", "x"),
    "pregnant_male": changed(
        lambda d: d["tables"]["patients"][0].update(sex="male", pregnant=True)
    ),
    "invisible_name": set_row("patients", "name", "\u202e\u200b"),
    "nul_in_name": set_row("patients", "name", "Zo\u00eb\x00Nand\u00fa"),
    "unknown_condition": set_row("patient_conditions", "condition_id", "no_such_condition"),
    "unknown_medication": set_row("patient_medications", "medication_id", "snake_oil"),
    "unknown_test": set_row("lab_results", "test", "no_such_test"),
    "unknown_unit": set_row("lab_results", "unit", "furlongs"),
    "impossible_value": set_row("lab_results", "value_number", -5),
    "future_lab": set_row("lab_results", "taken_on", "2999-01-01"),
    "unknown_rating": set_row("symptom_ratings", "rating", "unbearable"),
    "unknown_symptom": set_row("symptom_ratings", "symptom_id", "no_such_symptom"),
    "unknown_drug": set_row("doses_given", "drug", "snake oil"),
    "unknown_route": set_row("doses_given", "route", "ear"),
    "broken_snapshot": set_row("assessments", "assessment", "{}"),
}

# What a message about a refused backup must never show: a patient's details.
PATIENT_DETAILS = ("Zo", "Ñandú", "Nand", "1958", "Bob Other")


@pytest.mark.parametrize("case", BAD_BACKUPS)
def test_a_bad_backup_file_is_a_backup_error_and_changes_nothing(
    populated: tuple[Database, str], tmp_path: Path, case: str
) -> None:
    db, _ = populated
    good = backup.dump(db)
    path = tmp_path / f"{case}.gz"
    path.write_bytes(BAD_BACKUPS[case](good))
    with pytest.raises(BackupError) as caught:
        backup.restore(db, backup.read(path), NURSE, NOW, replace=True)
    message = str(caught.value)
    assert message.startswith(("backup:", "restore:")), message
    assert not any(detail in message for detail in PATIENT_DETAILS), message
    assert backup.dump(db) == good


def _lines(*items: object) -> bytes:
    return gzip.compress(b"".join(json.dumps(i).encode() + b"\n" for i in items))


def test_a_backup_file_is_written_and_read_row_by_row(
    populated: tuple[Database, str], tmp_path: Path
) -> None:
    """A header line, a row a line, an end line with the counts: a file cut short, or
    with rows added or taken away, is refused whole."""
    db, _ = populated
    good = backup.dump(db)
    path = tmp_path / "b.gz"
    counts = backup.write(db, path)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    header, *rows, end = (json.loads(line) for line in lines)
    assert header["version"] == 2 and header["tables"] == list(good["tables"])
    assert len(rows) == sum(counts.values()) and end == {"end": True, "rows": counts}

    for name, data in {
        "cut_short": _lines(header, *rows),
        "a_row_less": _lines(header, *rows[:-1], end),
        "a_row_more": _lines(header, *rows, rows[-1], end),
        "not_a_row": _lines(header, {"patients": 1}, end),
    }.items():
        bad = tmp_path / f"{name}.gz"
        bad.write_bytes(data)
        with pytest.raises(BackupError):
            backup.restore(db, backup.read(bad), NURSE, NOW, replace=True)
        assert backup.dump(db) == good, name


def test_a_backup_that_unpacks_to_more_than_the_bound_is_refused_early(
    populated: tuple[Database, str], tmp_path: Path
) -> None:
    """A few MB of gzip can unpack to gigabytes: a 1.4 MB file took 2.9 GB to restore
    and a 2 MB one died of MemoryError. Now the rows are read as they come, a line is at
    most 1 MB, and the whole at most --max-size-mb."""
    import resource

    db, _ = populated
    good = backup.dump(db)
    header = json.dumps(
        {"format": "b12dx-backup", "version": 2, "schema_revision": good["schema_revision"]}
    ).encode()
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb") as out:
        out.write(header + b"\n")
        chunk = b" " * 2**20
        for _ in range(512):  # 512 MB of one line of spaces
            out.write(chunk)
    assert bomb.stat().st_size < 2 * 2**20
    rows = [
        json.dumps(
            ["practices", {"id": i, "name": f"P{i}", "created_at": NOW.isoformat()}]
        ).encode()
        for i in range(10, 200_000)
    ]
    many = tmp_path / "many.gz"
    with gzip.open(many, "wb") as out:
        out.write(header + b"\n" + b"\n".join(rows) + b"\n")

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(BackupError, match="over 1 MB"):
        backup.restore(db, backup.read(bomb), NURSE, NOW, replace=True)
    with pytest.raises(BackupError, match="over 1 MB, the most"):
        backup.restore(db, backup.read(many, max_bytes=2**20), NURSE, NOW, replace=True)
    took = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert took < 10, f"refusing took {took:.1f} s"
    assert grown_mb < 200, f"refusing grew the process by {grown_mb:.0f} MB"
    assert backup.dump(db) == good


def test_the_command_line_restore_names_no_patient_in_its_errors(
    populated: tuple[Database, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL restore of a name holding a NUL printed a traceback with every
    patient's name, birth date and calendar token."""
    from b12dx.cli.app import main

    db, _ = populated
    path = tmp_path / "nul.gz"
    path.write_bytes(BAD_BACKUPS["nul_in_name"](backup.dump(db)))
    with pytest.raises(SystemExit) as exited:
        main(["restore", str(path), "--replace", "--db", db.url])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "backup:" in err, err
    assert "Traceback" not in err and not any(d in err for d in PATIENT_DETAILS), err


def test_a_missing_backup_file_is_a_backup_error(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="does not exist"):
        backup.read(tmp_path / "nope.gz")


@pytest.mark.parametrize("text", ["Ann\x00Bell", "Ann\nBell"])
def test_control_characters_in_names_are_refused_on_every_backend(
    db: Database, kb: Knowledge, text: str
) -> None:
    err = rejected(
        db,
        lambda s: patients.add(
            s, kb, NURSE, NOW, name=text, birth_date=dt.date(1958, 3, 4), sex="female"
        ),
    )
    assert err.errors[0].path == "name"
    pid = add_patient(db, kb)
    err = rejected(
        db,
        _dose(pid, given_on=dt.date(2026, 1, 5), given_by=text),
    )
    assert err.errors[0].path == "given_by"


@pytest.mark.parametrize(
    "text", ["\u202e\u202d", "\u200b\u200c\u200d", "\u2066\u2069\ufeff", " \u200b "]
)
def test_a_name_of_only_invisible_characters_is_refused(
    db: Database, kb: Knowledge, text: str
) -> None:
    """Bidi overrides and zero-width characters show nothing: a patient list row with no
    name a clinician can read is refused, naming the field."""
    err = rejected(
        db,
        lambda s: patients.add(
            s, kb, NURSE, NOW, name=text, birth_date=dt.date(1958, 3, 4), sex="female"
        ),
    )
    assert err.errors[0].path == "name" and "invisible" in err.errors[0].message
    with db.transaction() as s:
        assert patients.add(
            s,
            kb,
            NURSE,
            NOW,
            name="Zoë \u200bO\u2019Neil",
            birth_date=dt.date(1958, 3, 4),
            sex="female",
        ).name.startswith("Zoë")


def test_a_practice_can_be_added_to_a_new_database(db: Database) -> None:
    """On PostgreSQL the local practice's explicit id 1 was not seen by the id sequence,
    so the first practice added to a new database failed on a duplicate id."""
    from b12dx.store import users

    with db.transaction() as s:
        assert users.create_practice(s, NURSE, NOW, "Riverside").id == 2


def test_a_backup_with_a_history_longer_than_a_record_holds_is_refused_in_bounded_memory(
    populated: tuple[Database, str], tmp_path: Path
) -> None:
    """A small file can hold one patient with hundreds of thousands of ratings; the check
    after the rows are in loaded whole histories 200 patients at a time, so memory grew
    with the file. Now histories are checked in chunks of at most MAX_HISTORY_ROWS rows,
    and a patient whose history alone is longer is refused, nothing changed."""
    import resource

    db, _ = populated
    good = backup.dump(db)
    path = tmp_path / "b.gz"
    backup.write(db, path)
    header, *rows, end = (json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines())
    rating = next(r for name, r in rows if name == "symptom_ratings")
    extra = backup.MAX_HISTORY_ROWS + 1
    start = max(r["id"] for name, r in rows if name == "symptom_ratings") + 1
    flood = [["symptom_ratings", rating | {"id": start + i}] for i in range(extra)]
    end["rows"]["symptom_ratings"] += extra
    bad = tmp_path / "long.gz"
    bad.write_bytes(_lines(header, *rows, *flood, end))
    assert bad.stat().st_size < 3 * 2**20

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BackupError, match=f"more than {backup.MAX_HISTORY_ROWS}"):
        backup.restore(db, backup.read(bad), NURSE, NOW, replace=True)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"refusing grew the process by {grown_mb:.0f} MB"
    assert backup.dump(db) == good


@pytest.mark.parametrize("token", ["", "a", "x" * 31, "ab cd" * 8, "é" * 40])
def test_a_backup_that_sets_a_guessable_calendar_token_is_refused(
    populated: tuple[Database, str], tmp_path: Path, token: str
) -> None:
    """The calendar address is the feed's only secret: a crafted backup setting it to ""
    or "a" would publish a patient's dose dates to anyone who guesses it."""
    db, _ = populated
    good = backup.dump(db)
    path = tmp_path / "b.gz"
    backup.write(db, path)
    header, *rows, end = (json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines())
    rows = [[n, r | {"calendar_token": token}] if n == "patients" else [n, r] for n, r in rows]
    bad = tmp_path / "token.gz"
    bad.write_bytes(_lines(header, *rows, end))
    with pytest.raises(BackupError, match="calendar_token"):
        backup.restore(db, backup.read(bad), NURSE, NOW, replace=True)
    assert backup.dump(db) == good
