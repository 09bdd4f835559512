"""Where the OMOP mapping's SQL runs: embedded DuckDB, or Spark.

``load_omop`` writes its SQL once, in DuckDB's dialect, as named steps: a view, a table
kept for the steps after it, a small knowledge table, a screening table written to
Parquet. ``DuckDbSql`` runs the steps as they are; ``SparkSql`` translates each with
sqlglot (the SQL translator Ibis itself uses) and runs it in Spark, where a view is a
temporary view, a kept table is cached on the executors and a screening table is written
by the executors: no row of the CDM goes through the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class SqlEngine(Protocol):
    def columns(self, source: str) -> set[str]:
        """The column names (lower case) of ``SELECT * FROM source``."""

    def view(self, name: str, select: str) -> None:
        """``name`` is ``select``, read each time it is used."""

    def keep(self, name: str, select: str) -> None:
        """``name`` is ``select``'s rows, computed once (later steps read it often)."""

    def register(self, name: str, table: pa.Table) -> None:
        """A small table of the knowledge base as ``name``."""

    def write(self, select: str, path: Path) -> None:
        """``select``'s rows as Parquet at ``path``."""


class DuckDbSql:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def columns(self, source: str) -> set[str]:
        rows = self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        return {str(row[0]).lower() for row in rows}

    def view(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE VIEW {name} AS {select}")

    def keep(self, name: str, select: str) -> None:
        self.con.execute(f"CREATE TABLE {name} AS {select}")

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(f"{name}_arrow", table)
        self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")

    def write(self, select: str, path: Path) -> None:
        self.con.execute(f"COPY ({select}) TO {quoted(str(path))} (FORMAT parquet)")


class SparkSql:
    """The steps on a SparkSession (its temporary views live as long as the session;
    ``close`` drops the ones made here and frees what was cached)."""

    def __init__(self, session: Any) -> None:
        self.spark = session
        self.made: list[str] = []

    def _sql(self, select: str) -> Any:
        import sqlglot

        return self.spark.sql(sqlglot.transpile(select, read="duckdb", write="spark")[0])

    def columns(self, source: str) -> set[str]:
        return {c.lower() for c in self._sql(f"SELECT * FROM {source}").columns}

    def view(self, name: str, select: str) -> None:
        self._sql(select).createOrReplaceTempView(name)
        self.made.append(name)

    def keep(self, name: str, select: str) -> None:
        frame = self._sql(select).cache()
        frame.createOrReplaceTempView(name)
        self.made.append(name)

    def register(self, name: str, table: pa.Table) -> None:
        # A few hundred rows of codes and units: built on the driver, then broadcast.
        frame = self.spark.createDataFrame(table.to_pandas(), schema=_spark_schema(table))
        frame.cache().createOrReplaceTempView(name)
        self.made.append(name)

    def write(self, select: str, path: Path) -> None:
        # A folder of part files, written by the executors (Parquet readers take it as
        # one table).
        self._sql(select).write.mode("overwrite").parquet(str(path))

    def close(self) -> None:
        for name in self.made:
            self.spark.catalog.dropTempView(name)
        self.made.clear()


def _spark_schema(table: pa.Table) -> Any:
    from pyspark.sql import types as T

    kinds = {
        pa.string(): T.StringType(),
        pa.large_string(): T.StringType(),
        pa.int64(): T.LongType(),
        pa.int32(): T.IntegerType(),
        pa.float64(): T.DoubleType(),
        pa.bool_(): T.BooleanType(),
    }
    return T.StructType([T.StructField(f.name, kinds[f.type], True) for f in table.schema])
