"""Backup and restore of the whole follow-up database as one file: every table's rows,
read in one transaction (a consistent copy while the clinic keeps working), written as
gzipped JSON with the schema revision. The same file restores into SQLite or PostgreSQL.
Signed-in sessions are not kept: a restored database starts with everyone signed out."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import tempfile
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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from b12dx.errors import B12dxError
from b12dx.store import audit
from b12dx.store.audit import Actor
from b12dx.store.db import Database, head_revision
from b12dx.store.tables import Base, Patient

FORMAT = "b12dx-backup"
FORMAT_VERSION = 1
SKIPPED = {"login_sessions"}


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
            ok = isinstance(value, str) and (kind.length is None or len(value) <= kind.length)
        else:  # JSON
            ok = True
    except (TypeError, ValueError) as exc:
        raise BackupError(f"backup: {where}: {name}: {exc}") from None
    if not ok:
        raise BackupError(f"backup: {where}: {name} {value!r} is not a valid {kind}")
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


def dump(db: Database) -> dict[str, Any]:
    """Every row of every kept table, as JSON-ready values, from one consistent read."""
    with db.transaction() as session:
        if not db.is_sqlite:
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        tables = {
            t.name: [
                {k: _encode(v) for k, v in row._mapping.items()}
                for row in session.execute(select(t).order_by(*t.primary_key.columns))
            ]
            for t in _tables()
        }
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_revision": head_revision(),
        "tables": tables,
    }


def write(db: Database, path: Path) -> dict[str, int]:
    """Write a backup to ``path`` (atomically, readable by the owner only); returns the
    row count per table."""
    data = dump(db)
    payload = gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0)
    path = path.expanduser()
    fd, tmp = tempfile.mkstemp(prefix=".b12dx-backup-", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {name: len(rows) for name, rows in data["tables"].items()}


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(gzip.decompress(path.expanduser().read_bytes()))
    except FileNotFoundError:
        raise BackupError(f"backup: {path} does not exist") from None
    except (OSError, EOFError, ValueError) as exc:
        raise BackupError(f"backup: {path} is not a b12dx backup ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"backup: {path} is not a b12dx backup")
    if data.get("version") != FORMAT_VERSION:
        raise BackupError(f"backup: format version {data.get('version')!r} is not supported")
    if data.get("schema_revision") != head_revision():
        raise BackupError(
            f"backup: made with schema {data.get('schema_revision')!r}; this b12dx has "
            f"{head_revision()!r}. Restore it with the b12dx version that made it."
        )
    tables = data.get("tables")
    if not isinstance(tables, dict):
        raise BackupError("backup: no tables in the file")
    known = {t.name for t in _tables()}
    for name, rows in tables.items():
        if name not in known:
            raise BackupError(f"backup: unknown table {name!r} (not a table of this schema)")
        if not isinstance(rows, list):
            raise BackupError(f"backup: table {name} is not a list of rows")
    return data


def restore(
    db: Database, data: dict[str, Any], actor: Actor, now: dt.datetime, *, replace: bool
) -> dict[str, int]:
    """Replace the database's contents with the backup's, in one transaction: on any
    error nothing changes. Refuses a database with patients unless ``replace``."""
    tables = _tables()
    rows = {
        t.name: [_decode(t, i, r) for i, r in enumerate(data["tables"].get(t.name, []))]
        for t in tables
    }
    try:
        _replace_all(db, tables, rows, actor, now, replace=replace)
    except IntegrityError as exc:
        # Rows that are each well formed but do not fit together (an id twice, a dose of a
        # patient not in the file): the transaction was rolled back.
        raise BackupError(
            f"restore: the backup's rows do not fit together ({_first_line(exc.orig)}); "
            "nothing was changed"
        ) from exc
    return {name: len(r) for name, r in rows.items()}


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None else "constraint violated"


def _replace_all(
    db: Database,
    tables: list[Table],
    rows: dict[str, list[dict[str, Any]]],
    actor: Actor,
    now: dt.datetime,
    *,
    replace: bool,
) -> None:
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
        for t in tables:
            if rows[t.name]:
                session.execute(insert(t), rows[t.name])
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
            {"rows": {name: len(r) for name, r in rows.items()}, "replaced": existing or 0},
        )


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
