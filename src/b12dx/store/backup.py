"""Backup and restore of the whole follow-up database as one file: every table's rows,
read from one snapshot that takes no write lock (the clinic keeps working), written as
gzipped JSON Lines with the schema revision, row by row. The same file restores into
SQLite or PostgreSQL, read row by row within a bound on its uncompressed size, each
patient checked as a normal write would check it, all in one transaction. Signed-in
sessions are not kept: a restored database starts with everyone signed out. No error
quotes a patient's details."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    TypeDecorator,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from b12dx.errors import B12dxError, InputError
from b12dx.jsonio import loads
from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.models.patient import PatientRecord
from b12dx.store import audit, patients, snapshots
from b12dx.store.audit import Actor
from b12dx.store.db import Database, head_revision
from b12dx.store.tables import (
    AssessmentSnapshot,
    Base,
    DoseEntry,
    LabEntry,
    Patient,
    SymptomRatingEntry,
)

FORMAT = "b12dx-backup"
# Version 2: JSON Lines (a header, a row a line, an end line with the counts), written
# and restored row by row. Version 1 (one JSON document) is still restored.
FORMAT_VERSION = 2
SKIPPED = {"login_sessions"}
# What a restore reads at most, uncompressed: a gzip of a few MB can unpack to gigabytes.
# A practice's backup is some hundred bytes a row; 2 GB is millions of rows.
MAX_RESTORE_BYTES = 2 * 2**30
MAX_LINE_BYTES = 2**20  # one row; a saved assessment is tens of kB
V1_MAX_BYTES = 256 * 2**20  # a version 1 file is parsed whole
BATCH_ROWS = 1000
CHECK_CHUNK = 200

# The most results, doses and ratings one patient's history may hold in a restore, and
# the most the check holds in memory at once (weekly ratings of every symptom for 20
# years are about 60,000).
MAX_HISTORY_ROWS = 100_000


class BackupError(B12dxError):
    """A backup file that cannot be read or restored here."""


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED]


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # SQLite hands back the UTC value without its zone
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _value(table: Table, name: str, value: Any, where: str) -> Any:
    """The column's value from its JSON form, or a BackupError saying what is wrong. The
    types are checked here because SQLite would store a word in a number column."""
    column = table.c[name]
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if value is None:
        if not column.nullable:
            raise BackupError(f"backup: {where}: {name} is empty")
        return None
    try:
        if isinstance(kind, DateTime):
            return dt.datetime.fromisoformat(value)
        if isinstance(kind, Date):
            return dt.date.fromisoformat(value)
        if isinstance(kind, Boolean):
            ok = isinstance(value, bool)
        elif isinstance(kind, Integer):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(kind, Float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif isinstance(kind, String):
            # No NUL: PostgreSQL cannot store one (and no b12dx write makes one).
            ok = (
                isinstance(value, str)
                and (kind.length is None or len(value) <= kind.length)
                and "\x00" not in value
            )
        else:  # JSON
            ok = True
    except (TypeError, ValueError):
        # Not the parser's words: they quote the value (a birth date).
        kind_name = "a time" if isinstance(kind, DateTime) else "a date (YYYY-MM-DD)"
        raise BackupError(f"backup: {where}: {name} is not {kind_name}") from None
    if not ok:
        # The value itself is not quoted: it may be a patient's name.
        raise BackupError(f"backup: {where}: {name} is not a valid {kind}")
    return value


def _decode(table: Table, index: int, row: Any) -> dict[str, Any]:
    where = f"table {table.name}, row {index + 1}"
    if not isinstance(row, dict):
        raise BackupError(f"backup: {where} is not a row")
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise BackupError(f"backup: table {table.name} has no column {unknown[0]!r}")
    missing = [c.key for c in table.c if c.key not in row]
    if missing:
        raise BackupError(f"backup: {where} lacks {', '.join(missing)}")
    return {name: _value(table, name, value, where) for name, value in row.items()}


def _rows(db: Database) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of every kept table, as JSON-ready values, from one consistent snapshot
    that holds no write lock (the clinic keeps writing while a backup runs)."""
    with db.reading() as session:
        for t in _tables():
            query = select(t).order_by(*t.primary_key.columns)
            for row in session.execute(query.execution_options(yield_per=1000)):
                yield t.name, {k: _encode(v) for k, v in row._mapping.items()}


def dump(db: Database) -> dict[str, Any]:
    """The whole database in memory, as one document (version 1's shape): for tests and
    small tools; a backup file is written by :func:`write`, row by row."""
    tables: dict[str, list[dict[str, Any]]] = {t.name: [] for t in _tables()}
    for name, row in _rows(db):
        tables[name].append(row)
    return {
        "format": FORMAT,
        "version": 1,
        "schema_revision": head_revision(),
        "tables": tables,
    }


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def write(db: Database, path: Path) -> dict[str, int]:
    """Write a backup to ``path`` (atomically, readable by the owner only), one row at a
    time: a header line, a line per row, an end line with the counts (so a cut-short
    file is found out). Returns the row count per table."""
    path = path.expanduser()
    counts = {t.name: 0 for t in _tables()}
    fd, tmp = tempfile.mkstemp(prefix=".b12dx-backup-", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                out.write(
                    _line(
                        {
                            "format": FORMAT,
                            "version": FORMAT_VERSION,
                            "schema_revision": head_revision(),
                            "tables": list(counts),
                        }
                    )
                )
                for name, row in _rows(db):
                    out.write(_line([name, row]))
                    counts[name] += 1
                out.write(_line({"end": True, "rows": counts}))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts


@dataclass
class BackupFile:
    """A backup file whose header was read and checked; its rows are read as they are
    restored, never all at once (a version 1 file is one document, read whole within
    ``V1_MAX_BYTES``)."""

    path: Path
    version: int
    max_bytes: int

    def rows(self) -> Iterator[tuple[str, Any]]:
        if self.version == 1:
            yield from _v1_rows(_read_v1(self.path, self.max_bytes), self.path)
            return
        with _bounded_lines(self.path, self.max_bytes) as lines:
            next(lines)  # the header, checked by read()
            for number, line in enumerate(lines, start=2):
                item = _json_line(line, number)
                if isinstance(item, dict) and item.get("end") is True:
                    yield _END, item.get("rows")
                    return
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise BackupError(f"backup: line {number} is not a row")
                yield item[0], item[1]
        raise BackupError("backup: the file ends before its last line (cut short?)")


_END = "\x00end"  # the end marker in the row stream (no table has this name)


def _json_line(line: bytes, number: int) -> Any:
    try:
        return loads(line)
    except ValueError:
        raise BackupError(f"backup: line {number} is not JSON") from None


@contextlib.contextmanager
def _bounded_lines(path: Path, max_bytes: int) -> Iterator[Iterator[bytes]]:
    """The file's lines, uncompressed as they are read; more than ``max_bytes`` in all or
    a line over ``MAX_LINE_BYTES`` is an error (a small gzip can hold gigabytes)."""

    def lines(stream: gzip.GzipFile) -> Iterator[bytes]:
        total = 0
        while True:
            try:
                line = stream.readline(MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as exc:
                raise BackupError(f"backup: {path} is not a b12dx backup ({exc})") from None
            if not line:
                return
            total += len(line)
            if len(line) > MAX_LINE_BYTES:
                raise BackupError(
                    f"backup: a line is over {MAX_LINE_BYTES // 2**20} MB (not a b12dx backup)"
                )
            if total > max_bytes:
                raise BackupError(_too_large(max_bytes))
            yield line

    if not path.expanduser().is_file():
        raise BackupError(f"backup: {path} does not exist")
    try:
        with gzip.open(path.expanduser(), "rb") as stream:
            yield lines(stream)
    except PermissionError as exc:
        raise BackupError(f"backup: {path} cannot be read ({exc.strerror})") from None


def _too_large(max_bytes: int) -> str:
    return (
        f"backup: uncompressed, the file is over {max_bytes // 2**20} MB, the most a "
        "restore reads (--max-size-mb raises it for a backup you made yourself)"
    )


def _read_v1(path: Path, max_bytes: int) -> dict[str, Any]:
    limit = min(max_bytes, V1_MAX_BYTES)
    try:
        with gzip.open(path.expanduser(), "rb") as stream:
            raw = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"backup: {path} is not a b12dx backup ({exc})") from None
    if len(raw) > limit:
        raise BackupError(_too_large(limit))
    try:
        data = loads(raw)
    except ValueError as exc:
        raise BackupError(f"backup: {path} is not a b12dx backup ({exc})") from None
    if not isinstance(data, dict):
        raise BackupError(f"backup: {path} is not a b12dx backup")
    return data


def _v1_rows(data: Mapping[str, Any], path: Path | str) -> Iterator[tuple[str, Any]]:
    tables = data.get("tables")
    if not isinstance(tables, dict):
        raise BackupError("backup: no tables in the file")
    known = [t.name for t in _tables()]
    for name, rows in tables.items():
        if name not in known:
            raise BackupError(f"backup: unknown table {name!r} (not a table of this schema)")
        if not isinstance(rows, list):
            raise BackupError(f"backup: table {name} is not a list of rows")
    for name in known:
        for row in tables.get(name, []):
            yield name, row
    yield _END, {name: len(tables.get(name, [])) for name in known}


def read(path: Path, max_bytes: int = MAX_RESTORE_BYTES) -> BackupFile:
    """Open a backup and check its header (format, version, schema); the rows are read
    by :func:`restore`."""
    path = path.expanduser()
    try:
        with gzip.open(path, "rb") as stream:
            first = stream.readline(MAX_LINE_BYTES + 1)
    except FileNotFoundError:
        raise BackupError(f"backup: {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"backup: {path} is not a b12dx backup ({exc})") from None
    try:
        header = loads(first) if first.endswith(b"\n") else None
    except ValueError:
        header = None
    if isinstance(header, dict) and header.get("version") == FORMAT_VERSION:
        data = header
    else:  # version 1: one JSON document (on one line), or not a backup at all
        data = _read_v1(path, max_bytes)
    if data.get("format") != FORMAT:
        raise BackupError(f"backup: {path} is not a b12dx backup")
    version = data.get("version")
    if version != 1 and data is not header:
        raise BackupError(f"backup: format version {version!r} is not supported")
    if data.get("schema_revision") != head_revision():
        raise BackupError(
            f"backup: made with schema {data.get('schema_revision')!r}; this b12dx has "
            f"{head_revision()!r}. Restore it with the b12dx version that made it."
        )
    if version == 1:
        list(_v1_rows(data, path))  # the tables' shape, checked before any change
    return BackupFile(path, 1 if version == 1 else FORMAT_VERSION, max_bytes)


def restore(
    db: Database,
    source: BackupFile | Mapping[str, Any],
    actor: Actor,
    now: dt.datetime,
    *,
    replace: bool,
    kb: Knowledge | None = None,
) -> dict[str, int]:
    """Replace the database's contents with the backup's, in one transaction: on any
    error nothing changes. Refuses a database with patients unless ``replace``. Every
    row is checked as a normal write checks it (``_check_patients``) before the commit.
    No error names a patient's details: only tables, row numbers, columns and ids."""
    rows = source.rows() if isinstance(source, BackupFile) else _v1_rows(source, "the backup")
    try:
        return _replace_all(db, rows, actor, now, replace=replace, kb=kb or load_knowledge())
    except IntegrityError as exc:
        # Rows that are each well formed but do not fit together (an id twice, a dose of a
        # patient not in the file): the transaction was rolled back.
        raise BackupError(
            f"restore: the backup's rows do not fit together ({_first_line(exc.orig)}); "
            "nothing was changed"
        ) from None
    except DBAPIError as exc:
        # The driver's own first line, never the statement or its parameters (patient data).
        raise BackupError(
            f"restore: the database refused the backup ({_first_line(exc.orig)}); "
            "nothing was changed"
        ) from None


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None else "constraint violated"


def _replace_all(
    db: Database,
    rows: Iterator[tuple[str, Any]],
    actor: Actor,
    now: dt.datetime,
    *,
    replace: bool,
    kb: Knowledge,
) -> dict[str, int]:
    tables = _tables()
    by_name = {t.name: t for t in tables}
    counts = {t.name: 0 for t in tables}
    with db.transaction() as session:
        existing = session.scalar(select(func.count()).select_from(Patient))
        if existing and not replace:
            raise BackupError(
                f"restore: the database already holds {existing} patient(s); "
                "use --replace to overwrite them with the backup"
            )
        session.execute(delete(Base.metadata.tables["login_sessions"]))
        for t in reversed(tables):
            session.execute(delete(t))
        batch: list[dict[str, Any]] = []
        batch_table: Table | None = None
        ended: Any = None
        for name, raw in rows:
            if name == _END:
                ended = raw
                break
            table = by_name.get(name)
            if table is None:
                raise BackupError(f"backup: unknown table {name!r} (not a table of this schema)")
            if batch and table is not batch_table:
                session.execute(insert(batch_table), batch)  # type: ignore[arg-type]
                batch = []
            batch_table = table
            batch.append(_decode(table, counts[name], raw))
            counts[name] += 1
            if len(batch) >= BATCH_ROWS:
                session.execute(insert(table), batch)
                batch = []
        if batch and batch_table is not None:
            session.execute(insert(batch_table), batch)
        if ended != counts:
            raise BackupError(
                "backup: the file's row counts do not match its rows (cut short or edited)"
            )
        session.flush()
        _check_rows(session, kb, now.date())
        if not db.is_sqlite:
            _reset_sequences(session, tables)
        audit.record(
            session,
            actor,
            now,
            "restore",
            "database",
            None,
            None,
            {"rows": counts, "replaced": existing or 0},
        )
    return counts


def _check_rows(session: Session, kb: Knowledge, today: dt.date) -> None:
    """What a normal write refuses, refused here too: otherwise a restored patient the
    engine cannot read would answer 422 on every page, and the practice's due list with
    it. Patients are read in chunks with their history, so memory stays bounded."""
    for ids in _chunks_by_history(session):
        chunk = session.scalars(
            select(Patient)
            .where(Patient.id.in_(ids))
            .order_by(Patient.id)
            .options(*patients.history_loads())
        )
        for p in chunk:
            _check_patient_row(kb, p, today)
        session.expunge_all()
    # Streamed in chunks (a server-side cursor on PostgreSQL), never the whole table at once.
    for snapshot_id, record, assessment in session.execute(
        select(
            AssessmentSnapshot.id, AssessmentSnapshot.record, AssessmentSnapshot.assessment
        ).execution_options(yield_per=CHECK_CHUNK)
    ):
        try:
            PatientRecord.model_validate_json(record)
            Assessment.model_validate_json(assessment)
        except ValueError:
            raise BackupError(
                f"restore: saved assessment {snapshot_id} is not a b12dx assessment; "
                "nothing was changed"
            ) from None


def _chunks_by_history(session: Session) -> Iterator[list[str]]:
    """Patient ids in chunks whose histories hold at most MAX_HISTORY_ROWS rows together
    (and at most CHECK_CHUNK patients), so that the check's memory is bounded whatever
    the file: a small backup can hold one patient with millions of ratings. A patient
    whose history alone is longer is refused."""
    sizes: dict[str, int] = {}
    for model in (LabEntry, SymptomRatingEntry, DoseEntry):
        counted = select(model.patient_id, func.count()).group_by(model.patient_id)
        for pid, n in session.execute(counted):
            sizes[pid] = sizes.get(pid, 0) + int(n)
    chunk: list[str] = []
    held = 0
    for (pid,) in session.execute(
        select(Patient.id).order_by(Patient.id).execution_options(yield_per=CHECK_CHUNK)
    ):
        rows = sizes.get(pid, 0)
        if rows > MAX_HISTORY_ROWS:
            raise BackupError(
                f"restore: a patient has {rows} results, doses and ratings, more than "
                f"{MAX_HISTORY_ROWS} (not a b12dx record); nothing was changed"
            )
        if chunk and (held + rows > MAX_HISTORY_ROWS or len(chunk) >= CHECK_CHUNK):
            yield chunk
            chunk, held = [], 0
        chunk.append(pid)
        held += rows
    if chunk:
        yield chunk


# Detail fields whose messages would quote the patient (a name, a birth date).
_PRIVATE_FIELDS = {"name", "birth_date"}


def _check_patient_row(kb: Knowledge, p: Patient, today: dt.date) -> None:
    # The calendar address is the patient's only secret for the feed: a crafted backup
    # must not set one anyone can guess ("" or "a"). As patients.py makes them: at least
    # 32 URL-safe characters.
    token = p.calendar_token or ""
    if len(token) < patients.CALENDAR_TOKEN_MIN or not set(token) <= patients.CALENDAR_TOKEN_CHARS:
        raise BackupError(
            f"restore: patient {p.id}: calendar_token is not a token b12dx makes (at least "
            f"{patients.CALENDAR_TOKEN_MIN} URL-safe characters); nothing was changed"
        )
    try:
        patients.check_details(
            kb,
            today,
            name=p.name,
            birth_date=p.birth_date,
            sex=p.sex,
            diet=p.diet,
            ethnicity=p.ethnicity,
            conditions=[c.condition_id for c in p.conditions],
            medications=[m.medication_id for m in p.medications],
            exposures=[e.exposure_id for e in p.exposures],
        )
        for what, days in (
            ("lab result date", [lab.taken_on for lab in p.labs]),
            ("dose date", [d.given_on for d in p.doses]),
            ("symptom rating date", [r.rated_on for r in p.ratings]),
        ):
            # The assessment reads only what is dated up to today: check the rest here.
            if any(day > today or day < p.birth_date for day in days):
                raise BackupError(
                    f"restore: patient {p.id}: a {what} is after today or before birth, "
                    "which b12dx would refuse to record. Nothing was changed"
                )
        snapshots.current(kb, p, today)
    except InputError as exc:
        first = exc.errors[0]
        what = "is not accepted" if first.path in _PRIVATE_FIELDS else first.message
        raise BackupError(
            f"restore: patient {p.id}: {first.path} {what}; a patient b12dx would refuse to "
            "record cannot be restored. Nothing was changed"
        ) from None
    except B12dxError as exc:  # an unknown profile, a dose no regimen reads
        raise BackupError(f"restore: patient {p.id}: {exc}; nothing was changed") from None


def _reset_sequences(session: Session, tables: list[Table]) -> None:
    # Rows came in with their ids; PostgreSQL's id sequences must move past them.
    for t in tables:
        pk = list(t.primary_key.columns)
        if len(pk) == 1 and pk[0].name == "id" and isinstance(pk[0].type, Integer):
            session.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {t.name}), 0) + 1, false)"
                )
            )
