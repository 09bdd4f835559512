"""The gap rules give the same rows on DuckDB and on Spark (local mode), on the same
2,500 synthetic people: same columns, same values, reasons and sources included, and the
same counts per gap, age band and risk factor. Both go through ``screen.run``, the path
``b12dx screen --engine`` takes; Spark is the run's one session (tests/spark.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from b12dx.errors import B12dxError
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.load_fhir import load_fhir
from b12dx.screen.model import ScreeningTables
from b12dx.screen.rules import GAPS
from b12dx.screen.run import screen_tables
from b12dx.synth.generate import DEFAULT_AS_OF, generate

pyspark = pytest.importorskip("pyspark", reason="the spark extra is not installed")

KB = load_knowledge()
SYNTHEA = Path(__file__).parent / "fixtures" / "synthea-bulk-10"
PATIENTS = 2_500


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> ScreeningTables:
    folder = tmp_path_factory.mktemp("spark")
    (folder / "export").mkdir()
    generate(PATIENTS, folder / "export", "ndjson", seed=0, kb=KB)
    screening, _ = load_fhir(KB, folder / "export", folder / "tables")
    return screening


@pytest.mark.slow
def test_duckdb_and_spark_find_identical_gap_rows_and_counts(
    spark: Any, tables: ScreeningTables
) -> None:
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


def test_a_bad_spark_master_is_a_clear_error(tmp_path: Path) -> None:
    # In a process of its own: this one holds the run's Spark session.
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "b12dx.cli.app", "screen", str(SYNTHEA), "--out", str(out)]
    proc = subprocess.run(
        [*cli, "--engine", "spark", "--spark-master", "nonsense://x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Spark did not start with master 'nonsense://x'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "gaps.parquet").exists()


def test_spark_keeps_its_own_log_to_warnings(tmp_path: Path) -> None:
    """An analyst's console shows b12dx's progress, not Spark's INFO lines and start-up
    notices (there were dozens: log4j, NativeCodeLoader, the log-level hint)."""
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "b12dx.cli.app", "screen", str(SYNTHEA), "--out", str(out)]
    proc = subprocess.run([*cli, "--engine", "spark"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and not line.startswith("b12dx") and "WARN" not in line
    ]
    assert not noise, "\n".join(noise[:20])
    assert " INFO " not in proc.stderr and "Setting default log level" not in proc.stderr


def test_a_second_master_beside_a_running_session_is_a_clear_error(
    spark: Any, tables: ScreeningTables
) -> None:
    with pytest.raises(B12dxError, match="already running with master 'local\\[2\\]'"):
        screen_tables(
            tables,
            KB,
            KB.default_profile,
            DEFAULT_AS_OF,
            engine="spark",
            spark_master="spark://elsewhere:7077",
        )


def test_local_spark_listens_on_loopback_only(spark: Any) -> None:
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    # And the driver's port really listens there (/proc/net/tcp: hex address:port, state
    # 0A is LISTEN), on no other address.
    port = int(conf.get("spark.driver.port"))
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                listening.append(address)
    # 127.0.0.1 (little-endian hex), or the same as an IPv4-mapped IPv6 address.
    assert listening
    assert set(listening) <= {"0100007F", "0000000000000000FFFF00000100007F"}, listening
