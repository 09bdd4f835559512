"""An OMOP CDM read where it is kept: in PostgreSQL, or in the Spark catalog.

``b12dx screen postgresql://user@host/db --cdm-schema cdm`` attaches the database to the
embedded DuckDB with DuckDB's PostgreSQL scanner (the ``duckdb-ext-postgres`` package,
installed by the ``screen-postgres`` extra), READ_ONLY, and the OMOP mapping of
``load_omop`` reads its tables as it reads a folder's: only the columns the mapping names
(the scanner sends PostgreSQL the column list), and of the vocabulary only the rows of
concepts the records use (``vocabulary_filter``, a query PostgreSQL itself runs). Nothing
is written to the CDM; with ``--results-schema`` the gaps are also written there, as
OHDSI tools keep cohorts in a results schema (``write_gaps``).

Credentials are libpq's own: the URL, the ``PG*`` environment variables, ``~/.pgpass``.
A password is never printed: every message names the database by ``redacted``.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import duckdb
import pyarrow as pa

from b12dx.errors import B12dxError, InputError
from b12dx.screen.sql_engines import quoted

SCHEMES = ("postgresql", "postgres")
CDM_ALIAS = "cdm_db"
RESULTS_ALIAS = "results_db"
GAPS_TABLE = "b12dx_gaps"
# A schema name as OHDSI's DDL and the ETLs write them: no quoting games.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
EXTRA = "screen-postgres"
_VOCABULARY = {"concept", "concept_relationship", "concept_ancestor"}


def is_database_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in SCHEMES


def redacted(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        out = url
    else:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        out = urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", out)


def scrub(message: str, url: str) -> str:
    """``message`` with every password ``url`` holds (its user part, a password=
    parameter, however many) masked."""
    parts = urlsplit(url)
    secrets = [parts.password or "", unquote(parts.password or "")]
    secrets += [unquote(v) for v in re.findall(r"(?i)password=([^&\s]*)", parts.query)]
    secrets += re.findall(r"(?i)password=([^&\s]*)", parts.query)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message.replace(url, redacted(url))


class _Schemas:
    """Which schema holds an OMOP table: the vocabulary's its own when named, else the
    CDM's."""

    cdm_schema: str
    vocabulary_schema: str | None

    def schema_of(self, table: str) -> str:
        if table in _VOCABULARY and self.vocabulary_schema:
            return self.vocabulary_schema
        return self.cdm_schema


@dataclass(frozen=True)
class CdmDatabase(_Schemas):
    """Where the CDM is: a PostgreSQL URL and its schemas (``vocabulary_schema`` defaults
    to the CDM's own)."""

    url: str
    cdm_schema: str
    vocabulary_schema: str | None = None
    results_schema: str | None = None

    def __post_init__(self) -> None:
        for option, value in (
            ("--cdm-schema", self.cdm_schema),
            ("--vocabulary-schema", self.vocabulary_schema),
            ("--results-schema", self.results_schema),
        ):
            if value is not None and not _IDENTIFIER.fullmatch(value):
                raise InputError.single(
                    option,
                    f"{value!r} is not a schema name",
                    "letters, digits and _ (a PostgreSQL identifier, up to 63 characters)",
                )

    @property
    def label(self) -> str:
        return redacted(self.url)

    def reader(self, table: str) -> str:
        return f'{CDM_ALIAS}."{self.schema_of(table)}"."{table}"'

    def query_text(self, table: str) -> str:
        """The table as PostgreSQL names it, for a query PostgreSQL runs itself."""
        return f'"{self.schema_of(table)}"."{table}"'


@dataclass(frozen=True)
class SparkCatalog(_Schemas):
    """OMOP tables in a database of the Spark catalog (``catalog.database`` where the
    catalog has three levels, as Databricks' Unity Catalog)."""

    cdm_schema: str
    vocabulary_schema: str | None = None

    def __post_init__(self) -> None:
        for option, value in (
            ("--cdm-schema", self.cdm_schema),
            ("--vocabulary-schema", self.vocabulary_schema),
        ):
            parts = (value or "x").split(".")
            if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
                raise InputError.single(
                    option,
                    f"{value!r} is not a database of the Spark catalog",
                    "a name of letters, digits and _, or catalog.database",
                )

    @property
    def label(self) -> str:
        return f"the Spark catalog's {self.cdm_schema}"

    def reader(self, table: str) -> str:
        parts = [*self.schema_of(table).split("."), table]
        return ".".join(f'"{p}"' for p in parts)

    def tables(self, spark: Any) -> set[str]:
        """The tables of the CDM and vocabulary databases that Spark can read."""
        found: set[str] = set()
        for option, schema in (
            ("--cdm-schema", self.cdm_schema),
            ("--vocabulary-schema", self.vocabulary_schema),
        ):
            if schema is None:
                continue
            if not spark.catalog.databaseExists(schema):
                names = sorted(d.name for d in spark.catalog.listDatabases())
                raise InputError.single(
                    option,
                    f"the Spark catalog has no database {schema!r}",
                    f"one of: {', '.join(names) or '(none)'}",
                )
            found |= {
                t.name.lower()
                for t in spark.catalog.listTables(schema)
                if self.schema_of(t.name.lower()) == schema
            }
        return found


def _extension_directory() -> Path | None:
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "extensions"
        if folder.is_dir():
            return folder
    return None


def load_scanner(con: duckdb.DuckDBPyConnection) -> None:
    """Load DuckDB's PostgreSQL scanner from the installed package, never the network."""
    folder = _extension_directory()
    if folder is None:
        raise B12dxError(
            f"screening a PostgreSQL database needs DuckDB's PostgreSQL scanner: install "
            f"b12dx with its {EXTRA} extra (pip install 'b12dx[{EXTRA}]')"
        )
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET extension_directory = ?", [str(folder)])
    try:
        con.execute("LOAD postgres")
    except duckdb.Error as exc:
        raise B12dxError(
            f"DuckDB {duckdb.__version__} could not load its PostgreSQL scanner from "
            f"{folder} ({exc}); install the duckdb-ext-postgres release made for this "
            f"DuckDB (pip install 'b12dx[{EXTRA}]')"
        ) from exc


def attach(con: duckdb.DuckDBPyConnection, db: CdmDatabase) -> dict[str, set[str]]:
    """Attach the CDM read-only; the tables its CDM and vocabulary schemas hold, each with
    its columns."""
    load_scanner(con)
    try:
        con.execute(f"ATTACH {quoted(db.url)} AS {CDM_ALIAS} (TYPE postgres, READ_ONLY)")
    except duckdb.Error as exc:
        raise InputError.single(
            "INPUT", f"cannot connect to {db.label}: {scrub(str(exc), db.url)}"
        ) from None
    schemas = {db.cdm_schema, db.vocabulary_schema or db.cdm_schema}
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ?",
        [CDM_ALIAS, CDM_ALIAS],
    ).fetchall()
    found = {str(s) for s, _ in rows} - {"information_schema", "pg_catalog", "pg_toast"}
    for option, schema in (
        ("--cdm-schema", db.cdm_schema),
        ("--vocabulary-schema", db.vocabulary_schema),
    ):
        if schema is not None and schema not in found:
            raise InputError.single(
                option,
                f"{db.label} has no schema {schema!r} that this login can read",
                f"one of: {', '.join(sorted(found)) or '(none)'}",
            )
    tables = {str(t).lower() for s, t in rows if s in schemas and db.schema_of(str(t)) == s}
    columns: dict[str, set[str]] = {t: set() for t in tables}
    for schema, table, column in con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE database_name = ?",
        [CDM_ALIAS],
    ).fetchall():
        name = str(table).lower()
        if name in columns and db.schema_of(name) == schema:
            columns[name].add(str(column).lower())
    return columns


def schemas_holding(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The attached CDM database's schemas that have ``table``."""
    rows = con.execute(
        "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = ? "
        "AND lower(table_name) = ? ORDER BY 1",
        [CDM_ALIAS, table],
    ).fetchall()
    return [str(r[0]) for r in rows]


def vocabulary_filter(
    db: CdmDatabase, coded: tuple[tuple[str, str, str], ...], columns: dict[str, set[str]]
) -> str:
    """A PostgreSQL query for the concept ids the records name (each coded table's concept
    and source concept, where the table has the column), so that only their vocabulary
    rows leave the database."""
    return " UNION ".join(
        f"SELECT {column} AS id FROM {db.query_text(table)}"
        for table, concept, source in coded
        for column in (f"{concept}_concept_id", f"{source}_source_concept_id")
        if column in columns.get(table, set())
    )


def scan(db: CdmDatabase, query: str) -> str:
    """DuckDB SQL reading the result of ``query``, run by PostgreSQL."""
    return f"postgres_query('{CDM_ALIAS}', {quoted(query)})"


# The results table, typed for joins to the CDM: person_id as the CDM's own bigint.
GAPS_COLUMNS = (
    ("person_id", "bigint"),
    ("gap", "text"),
    ("rule_id", "text"),
    ("sources", "text[]"),
    ("reasons", "text"),
    ("since", "date"),
    ("as_of", "date"),
    ("age_band", "text"),
    ("care_site", "text"),
    ("risk_factors", "text[]"),
)


@contextmanager
def _results_database(
    db: CdmDatabase, read_only: bool, failure: Callable[[str], Exception]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """DuckDB with the database attached as RESULTS_ALIAS; a DuckDB error inside is
    raised as ``failure`` of its message, the passwords masked."""
    con = duckdb.connect()
    try:
        load_scanner(con)
        mode = ", READ_ONLY" if read_only else ""
        con.execute(f"ATTACH {quoted(db.url)} AS {RESULTS_ALIAS} (TYPE postgres{mode})")
        yield con
    except duckdb.Error as exc:
        raise failure(scrub(str(exc), db.url)) from None
    finally:
        con.close()


def _ask(con: duckdb.DuckDBPyConnection, query: str) -> tuple[Any, ...] | None:
    """The first row of ``query``, run by PostgreSQL itself."""
    return con.execute(
        f"SELECT * FROM postgres_query('{RESULTS_ALIAS}', {quoted(query)})"
    ).fetchone()


def check_results(db: CdmDatabase) -> None:
    """Before any screening: the login may write the results table (create it in the
    schema, or delete and insert in the one there), so that a run never fails at its end."""
    assert db.results_schema is not None
    schema = db.results_schema
    table = f'"{schema}".{GAPS_TABLE}'  # quoted: a schema name keeps its case

    def unchecked(message: str) -> Exception:
        return InputError.single("--results-schema", f"cannot be checked in {db.label}: {message}")

    with _results_database(db, True, unchecked) as con:
        user, schema_exists, table_exists = _ask(
            con,
            "SELECT current_user::text, "
            f"EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {quoted(schema)}), "
            f"to_regclass({quoted(table)}) IS NOT NULL",
        ) or ("?", False, False)
        if not schema_exists:
            raise InputError.single("--results-schema", f"{db.label} has no schema {schema!r}")
        if table_exists:
            rights = (
                f"SELECT has_table_privilege({quoted(table)}, 'INSERT') "
                f"AND has_table_privilege({quoted(table)}, 'DELETE')"
            )
            grant = f"GRANT INSERT, DELETE ON {table} TO {user}"
        else:
            rights = (
                f"SELECT has_schema_privilege({quoted(schema)}, 'CREATE') "
                f"AND has_schema_privilege({quoted(schema)}, 'USAGE')"
            )
            grant = f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO {user}'
        allowed = _ask(con, rights)
        if not allowed or not allowed[0]:
            raise InputError.single(
                "--results-schema",
                f"{user} may not write {table} in {db.label}; as its owner: {grant}",
            )


def write_gaps(db: CdmDatabase, gaps: pa.Table, note: str) -> str:
    """Replace the rows of ``<results schema>.b12dx_gaps`` with ``gaps`` in one
    transaction (a reader sees the last whole run, never half of one), creating the table
    the first time; the table itself stays, with its grants and the views on it. ``note``
    (the run: version, profile, date) becomes its comment. The table's name."""
    assert db.results_schema is not None
    schema = db.results_schema
    target = f'{RESULTS_ALIAS}."{schema}".{GAPS_TABLE}'
    columns = ", ".join(f"{name} {kind}" for name, kind in GAPS_COLUMNS)
    table = f'"{schema}".{GAPS_TABLE}'
    index = f'"{schema}".{GAPS_TABLE}_person_id'
    # Made once; indexed on person_id (the table is joined to the CDM's person by it)
    # whenever the login owns it, so a table an earlier version made gains the index too.
    # The block is an ordinary quoted string: a schema name may hold a dollar sign.
    create = "DO " + quoted(
        f"BEGIN IF to_regclass({quoted(table)}) IS NULL THEN "
        f"CREATE TABLE {table} ({columns}); END IF; "
        f"IF to_regclass({quoted(index)}) IS NULL AND pg_has_role((SELECT relowner "
        f"FROM pg_class WHERE oid = to_regclass({quoted(table)})), 'USAGE') THEN "
        f"CREATE INDEX {GAPS_TABLE}_person_id ON {table} (person_id); END IF; END"
    )
    comment = f"COMMENT ON TABLE {table} IS {quoted(note)}"
    selected = ", ".join(
        "CAST(person_id AS BIGINT) AS person_id" if name == "person_id" else name
        for name, _ in GAPS_COLUMNS
    )

    def unwritten(message: str) -> Exception:
        return B12dxError(
            f"--results-schema: cannot write {schema}.{GAPS_TABLE} in {db.label}: {message}"
        )

    with _results_database(db, False, unwritten) as con:
        con.execute(f"CALL postgres_execute('{RESULTS_ALIAS}', {quoted(create)})")
        con.register("gaps_arrow", gaps)
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {target}")
        con.execute(f"INSERT INTO {target} SELECT {selected} FROM gaps_arrow")
        con.execute("COMMIT")
        con.execute(f"CALL postgres_execute('{RESULTS_ALIAS}', {quoted(comment)})")
    return f"{schema}.{GAPS_TABLE}"
