"""OMOP tables in the Spark catalog, screened in Spark where they are: `b12dx screen
--engine spark --cdm-schema DATABASE` with no INPUT maps and screens tables saved to a
local Spark warehouse, with the same gaps, reasons and counts as the same tables
screened from their folder (OHDSI's Eunomia sample and the hand-built OHDSI folder's
hidden concepts). Spark is the run's one session (tests/spark.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from omop_tables import cdm_type, screened, unzip_eunomia
from test_screen_eunomia import AS_OF, _ohdsi_folder, _untested
from test_screen_postgres import EUNOMIA_AS_OF, VOCABULARY

pytest.importorskip("pyspark", reason="the spark extra is not installed")
pytestmark = pytest.mark.slow


def _save(spark: Any, folder: Path, warehouse: Path, cdm: str, vocab: str) -> None:
    """Each CSV of ``folder`` as a table of database ``cdm`` (the vocabulary in ``vocab``),
    typed as the CDM's DDL types them, stored in ``warehouse``."""
    for database in {cdm, vocab}:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} LOCATION '{warehouse / database}'")
    for path in sorted(folder.glob("*.csv")):
        table = path.stem.lower()
        database = vocab if table in VOCABULARY else cdm
        frame = spark.read.csv(str(path), header=True)
        types = {"VARCHAR": "STRING", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE", "DATE": "DATE",
                 "TIMESTAMP": "TIMESTAMP"}  # fmt: skip
        frame = frame.selectExpr(
            *(
                f"CAST(`{c}` AS {types[cdm_type(c.lower())]}) AS `{c.lower()}`"
                for c in frame.columns
            )
        )
        frame.write.mode("overwrite").saveAsTable(f"{database}.{table}")


def _screen(out: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    result = CliRunner().invoke(app, ["screen", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return screened(out)


def test_eunomia_in_the_spark_catalog_gives_the_gaps_of_its_csv_folder(
    spark: Any, tmp_path: Path
) -> None:
    folder = unzip_eunomia(tmp_path / "eunomia")
    _save(spark, folder, tmp_path / "warehouse", "eunomia_cdm", "eunomia_vocab")
    day = ("--as-of", EUNOMIA_AS_OF.isoformat())
    from_files = _screen(tmp_path / "files", str(folder), *day)
    in_spark = _screen(
        tmp_path / "spark", "--engine", "spark", "--cdm-schema", "eunomia_cdm",
        "--vocabulary-schema", "eunomia_vocab", *day,
    )  # fmt: skip
    assert in_spark == from_files
    assert sum(int(r["people"]) for r in in_spark["population"]) > 10


def test_the_hidden_concepts_hold_in_spark(spark: Any, tmp_path: Path) -> None:
    folder = _ohdsi_folder(tmp_path / "ohdsi")
    _save(spark, folder, tmp_path / "warehouse", "ohdsi_cdm", "ohdsi_vocab")
    for extra in ((), ("--omop-type-concepts", "32817")):
        day = ("--as-of", AS_OF.isoformat(), *extra)
        from_files = _screen(tmp_path / f"files{len(extra)}", str(folder), *day)
        in_spark = _screen(
            tmp_path / f"spark{len(extra)}", "--engine", "spark", "--cdm-schema", "ohdsi_cdm",
            "--vocabulary-schema", "ohdsi_vocab", *day,
        )  # fmt: skip
        assert in_spark == from_files
    assert _untested(in_spark["gaps"]) == {"1", "3", "4"}


def test_a_database_the_catalog_lacks_is_named(spark: Any, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["screen", "--engine", "spark", "--cdm-schema", "nope", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "the Spark catalog has no database 'nope'" in result.output
    without = CliRunner().invoke(app, ["screen", "--cdm-schema", "x", "--out", str(tmp_path)])
    assert without.exit_code == 2 and "INPUT: required" in without.output
