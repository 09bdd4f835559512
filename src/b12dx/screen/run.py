"""Execute the gap expressions on a backend and write the results.

DuckDB (embedded, in memory) is the default; ``engine="spark"`` runs the very same
expressions through ``ibis.pyspark`` on a local SparkSession. The backend only reads the
screening tables and executes: the rules are all in ``b12dx.screen.rules``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile
from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.screen.rules import build_gaps, summary_expr

ENGINES = ("duckdb", "spark")

Step = Callable[[str], None]


@dataclass(frozen=True)
class ScreenResult:
    gaps: pa.Table
    summary: pa.Table
    as_of: dt.date
    profile: str
    engine: str
    people: int


@contextmanager
def backend(engine: str) -> Iterator[Any]:
    if engine == "duckdb":
        con = ibis.duckdb.connect()
        try:
            yield con
        finally:
            con.disconnect()
    elif engine == "spark":
        from pyspark.sql import SparkSession

        session = (
            SparkSession.builder.master("local[2]")
            .appName("b12dx-screen")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        yield ibis.pyspark.connect(session)
    else:
        raise ValueError(f"unknown engine {engine!r} (accepted: {', '.join(ENGINES)})")


def screen_tables(
    tables: ScreeningTables,
    kb: Knowledge,
    profile: Profile,
    as_of: dt.date,
    engine: str = "duckdb",
    step: Step | None = None,
) -> ScreenResult:
    """Run the six gap rules over the screening tables on ``engine``."""
    say = step or (lambda _name: None)
    with backend(engine) as con:
        say("reading the screening tables")
        t = {
            name: con.read_parquet(str(tables.path(name)), table_name=f"screen_{name}")
            for name in SCHEMAS
        }
        say("building the gap rules")
        gaps_expr = build_gaps(t, kb, profile, as_of)
        say("finding the gaps")
        gaps = gaps_expr.to_pyarrow()
        people = int(t["person"].count().to_pyarrow().as_py())
        say("counting per gap, age band and risk factor")
        summary = con.to_pyarrow(summary_expr(ibis.memtable(gaps)))
    return ScreenResult(gaps, summary, as_of, profile.id, engine, people)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Lists joined with ';' so the CSV has one value per cell."""
    cols = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(col, ";")
        cols[name] = col
    return pa.table(cols)


def write_outputs(result: ScreenResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "gaps.parquet": out / "gaps.parquet",
        "gaps.csv": out / "gaps.csv",
        "summary.csv": out / "summary.csv",
    }
    pq.write_table(result.gaps, paths["gaps.parquet"])
    pacsv.write_csv(_csv_ready(result.gaps), paths["gaps.csv"])
    pacsv.write_csv(result.summary, paths["summary.csv"])
    return paths


OMOP_TABLES = (
    "person",
    "drug_exposure",
    "measurement",
    "condition_occurrence",
    "procedure_occurrence",
    "observation",
)


def detect_input(source: Path) -> str:
    """ "fhir" (NDJSON files) or "omop" (person.csv or person.parquet), else an InputError."""
    from b12dx.errors import FieldError, InputError

    if not source.is_dir():
        raise InputError([FieldError("INPUT", f"{source} is not a folder")])
    names = {p.name for p in source.iterdir()}
    if any(n.endswith((".ndjson", ".ndjson.gz")) for n in names):
        return "fhir"
    if names & {"person.csv", "person.parquet"}:
        return "omop"
    raise InputError(
        [
            FieldError(
                "INPUT",
                f"{source} holds neither NDJSON files nor an OMOP person table",
                "a FHIR Bulk Data export (*.ndjson) or OMOP CDM 5.4 tables "
                f"({', '.join(OMOP_TABLES)} as .csv or .parquet)",
            )
        ]
    )


def screen(
    source: Path,
    out: Path,
    kb: Knowledge,
    profile: Profile,
    as_of: dt.date,
    engine: str = "duckdb",
    step: Step | None = None,
) -> tuple[ScreenResult, dict[str, Path]]:
    """Load ``source`` into screening tables (in ``out/tables``), find the gaps, write them."""
    say = step or (lambda _name: None)
    kind = detect_input(source)
    work = out / "tables"
    say(f"loading the {'FHIR export' if kind == 'fhir' else 'OMOP tables'}")
    if kind == "fhir":
        from b12dx.screen.load_fhir import load_fhir

        tables, _skipped = load_fhir(kb, source, work)
    else:
        from b12dx.screen.load_omop import load_omop

        tables = load_omop(kb, source, work)
    result = screen_tables(tables, kb, profile, as_of, engine, say)
    say("writing gaps.parquet, gaps.csv, summary.csv")
    return result, write_outputs(result, out)
