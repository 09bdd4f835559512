"""The gap rules give the same rows on DuckDB and on Spark (local mode), on the same
2,500 synthetic people: same columns, same values, reasons and sources included, and the
same counts per gap, age band and risk factor. Both go through ``screen.run``, the path
``b12dx screen --engine`` takes."""

from __future__ import annotations

import pytest

from b12dx.errors import B12dxError
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.load_fhir import load_fhir
from b12dx.screen.model import ScreeningTables
from b12dx.screen.rules import GAPS
from b12dx.screen.run import screen_tables
from b12dx.screen.synth import DEFAULT_AS_OF, generate

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")

KB = load_knowledge()
PATIENTS = 2_500


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> ScreeningTables:
    folder = tmp_path_factory.mktemp("spark")
    (folder / "export").mkdir()
    generate(PATIENTS, folder / "export", "ndjson", seed=0, kb=KB)
    screening, _ = load_fhir(KB, folder / "export", folder / "tables")
    return screening


@pytest.mark.slow
def test_duckdb_and_spark_find_identical_gap_rows_and_counts(tables: ScreeningTables) -> None:
    duck = screen_tables(tables, KB, KB.default_profile, DEFAULT_AS_OF, engine="duckdb")
    spark = screen_tables(
        tables, KB, KB.default_profile, DEFAULT_AS_OF, engine="spark", spark_master="local[2]"
    )
    assert set(duck.gaps.column("gap").to_pylist()) == set(GAPS)  # every rule is exercised
    assert spark.gaps.schema == duck.gaps.schema
    key = [("gap", "ascending"), ("person_id", "ascending")]
    expected = duck.gaps.sort_by(key).to_pylist()
    got = spark.gaps.sort_by(key).to_pylist()
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        assert a == b  # reasons, sources, age band and risk factors included
    assert spark.summary.to_pylist() == duck.summary.to_pylist()
    assert spark.population.to_pylist() == duck.population.to_pylist()
    assert (spark.people, spark.records) == (duck.people, duck.records) == (PATIENTS, PATIENTS)


def test_a_bad_spark_master_is_a_clear_error(tables: ScreeningTables) -> None:
    with pytest.raises(B12dxError, match="Spark did not start with master 'nonsense://x'"):
        screen_tables(
            tables,
            KB,
            KB.default_profile,
            DEFAULT_AS_OF,
            engine="spark",
            spark_master="nonsense://x",
        )
