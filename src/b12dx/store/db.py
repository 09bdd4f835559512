"""Opening the follow-up database: which one (``--db``, ``B12DX_DATABASE_URL``, else a
file in the user's data directory), how SQLite is set up, and migrations on open.

A new SQLite database is made only where it was clearly asked for: in the data directory
(made if need be), or as a new file in a folder that already exists. A mistyped folder is
an error rather than a new, empty database that seems to have lost every patient."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from b12dx.errors import B12dxError
from b12dx.private_files import create_file, data_file, make_folder
from b12dx.store import write_queue

ENV_URL = "B12DX_DATABASE_URL"
MIGRATIONS = Path(__file__).parent / "migrations"
# Seconds a writer waits for another writer's lock before giving up (SQLite); clinics run
# a CLI and a server on the same file, and a write takes milliseconds.
BUSY_TIMEOUT_S = 30
# Seconds a process opening the database waits for another one's migration.
MIGRATION_WAIT_S = 600
_ADVISORY_LOCK = 0x0B12D  # PostgreSQL advisory lock held while migrating


class DatabaseError(B12dxError):
    """The database cannot be opened or used as asked."""


def default_path() -> Path:
    return data_file("b12dx.sqlite3")


def resolve_url(explicit: str | None = None) -> str:
    """The database URL: the explicit one, else ``B12DX_DATABASE_URL``, else the default
    SQLite file. A bare path is read as a SQLite file."""
    url = explicit or os.environ.get(ENV_URL) or f"sqlite:///{default_path()}"
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"database URL {url!r} is not a URL (accepted: sqlite:///PATH, "
            "postgresql://USER@HOST/DB, or a file path)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"database {parsed.get_backend_name()!r} is not supported "
            "(accepted: sqlite, postgresql)"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(False))
    return url


def _sqlite_setup(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer work at once; FULL sync makes a committed write
    # survive a crash of the process or the machine; foreign keys are off by default.
    # isolation_level None: the driver leaves BEGIN to us (see _sqlite_begin).
    # The busy timeout comes first: setting the journal mode may itself wait for a lock.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


READ_ONLY = "b12dx_read_only"  # the execution option that marks a read transaction


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes the write lock when it starts, so two writers queue on
    # busy_timeout instead of one failing when it upgrades a read lock ("database is
    # locked"). A read takes none: in WAL mode it reads one snapshot while writers go on.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class WriteInReadError(B12dxError):
    """A read transaction tried to write: the caller should have opened a write one."""


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise WriteInReadError("a read transaction tried to write (use Database.transaction)")


def _refuse_dml(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise WriteInReadError("a read transaction tried to write (use Database.transaction)")


def later_if_reading(session: Session, change: Callable[[Session], object]) -> None:
    """Apply ``change`` now in a write transaction; in a read one, just after it ends (in
    a short write transaction of its own), so that a read that finds something to tidy
    (an expired sign-in, an idle deadline to move) need not hold the write lock."""
    if session.info.get(READ_ONLY):
        session.info.setdefault("after_read", []).append(change)
    else:
        change(session)


@dataclass
class Database:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    created: bool = False  # the schema was set up by this open: a new database

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.engine.url.database or "") if self.is_sqlite else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed whole at the end or rolled back whole. On SQLite,
        writers take turns in the order they came (see :mod:`write_queue`); one that waits
        longer than the bound is a :class:`DatabaseError` (the server answers 503)."""
        path = self.sqlite_path
        try:
            with contextlib.ExitStack() as stack:
                if path is not None and path.name not in ("", ":memory:"):
                    stack.enter_context(write_queue.turn(path, BUSY_TIMEOUT_S))
                session = stack.enter_context(self.sessions.begin())
                yield session
        except write_queue.QueueTimeout as exc:
            raise DatabaseError(f"the database is busy: {exc}; try again") from None
        except OperationalError as exc:
            if "locked" not in str(exc.orig):
                raise
            raise DatabaseError(
                f"the database is busy: another program held it for more than "
                f"{BUSY_TIMEOUT_S} s; try again"
            ) from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read: one consistent snapshot of the database, holding no write lock, so the
        clinic's writers carry on while it runs (SQLite: a deferred BEGIN in WAL mode;
        PostgreSQL: REPEATABLE READ, READ ONLY). A write inside it raises
        :class:`WriteInReadError`; see :func:`later_if_reading` for tidying up."""
        with self.read_sessions.begin() as session:
            session.info[READ_ONLY] = True
            yield session
            after: list[Callable[[Session], object]] = session.info.pop("after_read", [])
        if after:
            with self.transaction() as s:
                for change in after:
                    change(s)

    @property
    def where(self) -> str:
        """The file, or the URL without its password: what to tell the user was opened."""
        path = self.sqlite_path
        return str(path) if path is not None else _redact(self.url)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def _refuse_unknown(found: str | None) -> None:
    """A revision this b12dx has no migration for was written by a newer b12dx: say so,
    rather than Alembic's "Can't locate revision", and leave the database alone."""
    if found is not None and found not in {s.revision for s in _scripts().walk_revisions()}:
        raise DatabaseError(
            f"the database schema is at revision {found!r}, which this b12dx does not know "
            f"(it knows up to {head_revision()!r}): a newer b12dx made or upgraded it. "
            "Open it with that newer version"
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _connect(url: str) -> Engine:
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_setup)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Two server workers and a CLI may open a new database at the same moment: only one
    of them migrates, the others wait and then find it done."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        if path.name in ("", ":memory:"):  # nobody else can open it
            yield
            return
        try:
            with write_queue.turn(path, MIGRATION_WAIT_S):
                yield
        except write_queue.QueueTimeout as exc:
            raise DatabaseError(f"another process is migrating the database: {exc}") from None
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK})
                conn.commit()


def migrate(url: str, revision: str = "head") -> str | None:
    """Bring the schema to ``revision`` (Alembic), under the migration lock. Returns the
    revision found before (None: the database was empty)."""
    engine = _connect(url)
    try:
        with _migration_lock(engine):
            found = current_revision(engine)
            if revision == "head" and found == head_revision():
                return found
            _refuse_unknown(found)
            with engine.begin() as conn:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
            return found
    finally:
        engine.dispose()


def _named(explicit: str | None) -> str:
    """How the user chose the database, to name it in an error."""
    if explicit:
        return "--db"
    return ENV_URL if os.environ.get(ENV_URL) else "the default database"


def _sqlite_file(path: Path, named: str) -> None:
    """The default data directory is made on first use; any other folder must exist, so
    that a mistyped path is an error and not a new, empty database. A new file (and a new
    data directory) is readable by its owner only: it holds patient records."""
    folder = path.parent
    if not folder.is_dir():
        if path != default_path():
            raise DatabaseError(
                f"{named}: the folder {folder} does not exist (accepted: a database file in "
                "a folder that exists; b12dx makes folders only for its default database)"
            )
        make_folder(folder)
    create_file(path)


def open_database(url: str | None = None, *, upgrade: bool = True) -> Database:
    """Open the database, migrated to the current schema; a new one is created in the
    default data directory or as a new file in an existing folder (``created`` says so)."""
    resolved = resolve_url(url)
    parsed = make_url(resolved)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _sqlite_file(Path(parsed.database), _named(url))
        # Earlier versions left a lock file beside the database; the lock now lives in the
        # user's runtime folder (write_queue).
        Path(parsed.database + ".migrate-lock").unlink(missing_ok=True)
    created = False
    try:
        if upgrade:
            created = migrate(resolved) is None
        engine = _connect(resolved)
        found = current_revision(engine)
    except DatabaseError:
        raise
    except Exception as exc:  # the driver's own error says what is wrong (host, auth...)
        raise DatabaseError(f"cannot open the database: {_redact(resolved)}: {exc}") from exc
    if found != head_revision():
        engine.dispose()
        _refuse_unknown(found)
        raise DatabaseError(
            f"the database schema is at {found or 'nothing'}, this b12dx needs "
            f"{head_revision()}: open it without --no-migrate to upgrade it"
        )
    return Database(
        resolved,
        engine,
        sessionmaker(engine, expire_on_commit=False),
        _read_sessions(engine),
        created,
    )


def _read_sessions(engine: Engine) -> sessionmaker[Session]:
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        # One snapshot for the whole read (a backup's tables agree with each other), and
        # read only, so that a write by mistake fails rather than takes locks.
        options |= {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    maker = sessionmaker(engine.execution_options(**options), expire_on_commit=False)
    event.listen(maker, "before_flush", _refuse_flush)
    event.listen(maker, "do_orm_execute", _refuse_dml)
    return maker


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
