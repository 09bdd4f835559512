"""Where OMOP tables are read from: a folder of CSV or Parquet files, a CDM in
PostgreSQL (attached to DuckDB, ``cdm_database``), or a database of the Spark catalog.
Each names, for one table, the SQL that reads it, how its values are cast, and the name
a message gives it; ``load_omop`` maps them all the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from b12dx.errors import FieldError, InputError
from b12dx.screen.cdm_database import (
    CdmDatabase,
    SparkCatalog,
    attach,
    scan,
    schemas_holding,
    vocabulary_filter,
)
from b12dx.screen.sql_engines import SparkSql, quoted

# The tables whose rows carry codes: (table, its concept column's stem, its source
# columns' stem).
CODED = (
    ("drug_exposure", "drug", "drug"),
    ("condition_occurrence", "condition", "condition"),
    ("procedure_occurrence", "procedure", "procedure"),
    ("observation", "observation", "observation"),
    ("measurement", "measurement", "measurement"),
)


@dataclass(frozen=True)
class Reader:
    """DuckDB SQL that reads one OMOP table, how its values are cast, and the name a
    message gives it."""

    sql: str
    cast: str
    label: str
    url: str | None = None  # a database's, whose passwords a message must not show


class Folder:
    """The OMOP tables as files in a folder."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.label = str(source)

    def find(self, table: str) -> Reader | None:
        # OHDSI ships its CDM tables in upper case (PERSON.csv, as in Eunomia); ETLs
        # often write them in lower case.
        for name in (table, table.upper()):
            for ext in ("parquet", "csv"):
                path = self.source / f"{name}.{ext}"
                if path.exists() and ext == "csv":
                    # Read as text and cast here, so an all-empty column (DuckDB would
                    # guess VARCHAR) or a stray value never fails the load.
                    sql = f"read_csv({quoted(str(path))}, header = true, all_varchar = true)"
                    return Reader(sql, "TRY_CAST", str(path))
                if path.exists():
                    return Reader(f"read_parquet({quoted(str(path))})", "CAST", str(path))
        return None

    def missing(self, table: str) -> FieldError:
        return FieldError(self.label, f"has no {table} table ({table}.csv or {table}.parquet)")


class Database:
    """The OMOP tables in a PostgreSQL database, attached read-only (cdm_database)."""

    def __init__(self, db: CdmDatabase, con: duckdb.DuckDBPyConnection) -> None:
        self.db = db
        self.label = db.label
        self.tables = attach(con, db)
        if "concept" not in self.tables:
            # A CDM always has its vocabulary; without it the codes would be read from
            # the source values alone, which a database's own ETL seldom fills.
            holding = schemas_holding(con, "concept")
            hint = (
                f"add --vocabulary-schema {holding[0]} (it has one)"
                if holding
                else "name the schema holding the OMOP vocabulary (concept, "
                "concept_relationship, concept_ancestor) with --vocabulary-schema"
            )
            raise InputError.single(
                "--vocabulary-schema",
                f"{db.schema_of('concept')} in {db.label} has no concept table: {hint}",
            )

    def find(self, table: str) -> Reader | None:
        if table not in self.tables:
            return None
        label = f"{self.db.schema_of(table)}.{table} in {self.label}"
        if table in _VOCABULARY_FILTERED:
            # Of a full vocabulary's hundreds of millions of rows, PostgreSQL sends only
            # those of the concepts the records name.
            key = _VOCABULARY_FILTERED[table]
            used = vocabulary_filter(self.db, CODED, self.tables)
            query = f"SELECT * FROM {self.db.query_text(table)} WHERE {key} IN ({used})"
            return Reader(scan(self.db, query), "CAST", label, self.db.url)
        return Reader(self.db.reader(table), "CAST", label, self.db.url)

    def missing(self, table: str) -> FieldError:
        return FieldError(
            "--cdm-schema", f"{self.db.schema_of(table)} in {self.label} has no {table} table"
        )


class Catalog:
    """The OMOP tables of a database in the Spark catalog (a Hive metastore, Databricks'
    Unity Catalog): read by Spark where they are."""

    def __init__(self, catalog: SparkCatalog, engine: SparkSql) -> None:
        self.catalog = catalog
        self.label = catalog.label
        self.tables = catalog.tables(engine.spark)

    def find(self, table: str) -> Reader | None:
        if table not in self.tables:
            return None
        return Reader(
            self.catalog.reader(table), "CAST", f"{self.catalog.schema_of(table)}.{table}"
        )

    def missing(self, table: str) -> FieldError:
        return FieldError(
            "--cdm-schema",
            f"the Spark catalog's {self.catalog.schema_of(table)} has no {table} table",
        )


_VOCABULARY_FILTERED = {
    "concept_relationship": "concept_id_1",
    "concept_ancestor": "descendant_concept_id",
}
