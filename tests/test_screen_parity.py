"""One population, five places it can live, the same gap rows from each: OMOP tables in a
folder, the same OMOP CDM in PostgreSQL and in the Spark catalog, the same people as a
FHIR Bulk export in a folder and exported from a FHIR server. Every column of every gap
row (reasons, sources and dates included), the counts per gap and the people screened
must agree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.rules import GAPS
from b12dx.synth.generate import generate
from bulk_standin import standin
from omop_tables import screened
from pg import PostgresServer
from test_screen_postgres import _load
from test_screen_spark_catalog import _save

pytest.importorskip("pyspark", reason="the spark extra is not installed")
pytestmark = pytest.mark.slow
AS_OF = dt.date(2025, 6, 30)
PEOPLE = 1_500


def _screen(out: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    result = CliRunner().invoke(
        app, ["screen", *args, "--out", str(out), "--as-of", AS_OF.isoformat()]
    )
    assert result.exit_code == 0, result.output
    return screened(out)


def test_files_postgres_spark_and_a_bulk_export_give_identical_gaps(
    pg_server: PostgresServer, spark: Any, tmp_path: Path
) -> None:
    kb = load_knowledge()
    omop, fhir = tmp_path / "omop", tmp_path / "fhir"
    for folder, form in ((omop, "omop"), (fhir, "ndjson")):
        folder.mkdir()
        generate(PEOPLE, folder, form, seed=29, as_of=AS_OF, kb=kb)
    url = _load(pg_server.new_database(), omop)
    _save(spark, omop, tmp_path / "warehouse", "parity_cdm", "parity_vocab")
    results = {
        "OMOP folder": _screen(tmp_path / "a", str(omop)),
        "FHIR folder": _screen(tmp_path / "b", str(fhir)),
        "PostgreSQL": _screen(
            tmp_path / "c", url, "--cdm-schema", "cdm", "--vocabulary-schema", "vocab"
        ),
        "Spark catalog": _screen(
            tmp_path / "d",
            "--engine",
            "spark",
            "--cdm-schema",
            "parity_cdm",
            "--vocabulary-schema",
            "parity_vocab",
        ),
    }
    with standin(fhir) as server:
        results["Bulk export"] = _screen(tmp_path / "e", f"{server.fhir}/Group/everyone")
    reference = results["OMOP folder"]
    assert {r["gap"] for r in reference["gaps"]} == set(GAPS), "every rule is exercised"
    for where, got in results.items():
        assert got == reference, f"{where} differs from the OMOP folder"
