"""The gap rules give the same rows on DuckDB and on Spark (local mode), on the same
2,500 synthetic people: same columns, same values, reasons and sources included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ibis
import pyarrow as pa
import pytest

from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.load_fhir import load_fhir
from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.screen.rules import GAPS, build_gaps
from b12dx.screen.synth import DEFAULT_AS_OF, generate

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")

KB = load_knowledge()
PATIENTS = 2_500


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("b12dx-screen-test")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        yield ibis.pyspark.connect(session)
    finally:
        session.stop()


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> ScreeningTables:
    folder = tmp_path_factory.mktemp("spark")
    (folder / "export").mkdir()
    generate(PATIENTS, folder / "export", "ndjson", seed=0, kb=KB)
    screening, _ = load_fhir(KB, folder / "export", folder / "tables")
    return screening


def _gaps(con: Any, tables: ScreeningTables) -> list[dict[str, Any]]:
    t = {
        name: con.read_parquet(str(tables.path(name)), table_name=f"screen_{name}")
        for name in SCHEMAS
    }
    rows: pa.Table = build_gaps(t, KB, KB.default_profile, DEFAULT_AS_OF).to_pyarrow()
    return sorted(rows.to_pylist(), key=lambda r: (r["gap"], r["person_id"]))


@pytest.mark.slow
def test_duckdb_and_spark_find_identical_gap_rows(spark: Any, tables: ScreeningTables) -> None:
    duck = ibis.duckdb.connect()
    try:
        expected = _gaps(duck, tables)
    finally:
        duck.disconnect()
    got = _gaps(spark, tables)
    assert {r["gap"] for r in expected} == set(GAPS)  # every rule is exercised
    assert [list(r) for r in got[:1]] == [list(r) for r in expected[:1]]
    for a, b in zip(expected, got, strict=True):
        assert a == b
