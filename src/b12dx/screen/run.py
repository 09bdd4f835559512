"""Execute the gap expressions on a backend and write the results.

DuckDB (embedded, in memory) is the default; ``engine="spark"`` runs the very same
expressions through ``ibis.pyspark`` on a SparkSession: local mode on this machine by
default, or any cluster named by ``spark_master`` (a spark:// , yarn or k8s:// URL; the
screening tables must then be on storage every executor reads). The backend only reads
the screening tables and executes: the rules are all in ``b12dx.screen.rules``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from b12dx.errors import InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile
from b12dx.network import LOOPBACK
from b12dx.screen.cdm_database import CdmDatabase, SparkCatalog
from b12dx.screen.coverage import Coverage, coverage
from b12dx.screen.facts import care_site_expr, population_expr
from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.screen.rules import CompiledGaps, build_gaps, compile_gaps, summary_expr
from b12dx.spreadsheet import FORMULA_PATTERN

ENGINES = ("duckdb", "spark")
# The steps ``screen`` announces through ``step`` (for a progress bar).
STEPS = 5
# Spark's master when none is given: every core of this machine.
DEFAULT_SPARK_MASTER = "local[*]"
SPARK_MASTER_ENV = "B12DX_SPARK_MASTER"
# Where a local Spark listens: this machine only.

Step = Callable[[str], None]


@dataclass(frozen=True)
class ScreenResult:
    gaps: pa.Table
    summary: pa.Table
    as_of: dt.date
    profile: str
    engine: str
    people: int  # screened: alive and adult on as_of
    records: int  # every person in the input
    population: pa.Table  # age_band, people (screened)
    # FHIR resources the loader did not use, per reason (OMOP rows are not counted yet).
    left_out: dict[str, int] = field(default_factory=dict)
    # care_site, people (screened); one null row when the input names no sites.
    care_sites: pa.Table | None = None
    # Who was left out and why, and a date that would screen more (``coverage``).
    coverage: Coverage | None = None


@contextmanager
def backend(engine: str, spark_master: str | None = None) -> Iterator[Any]:
    if engine == "duckdb":
        con = ibis.duckdb.connect()
        try:
            yield con
        finally:
            con.disconnect()
    elif engine == "spark":
        with spark_session(spark_master) as session:
            yield ibis.pyspark.connect(session)
    else:
        raise ValueError(f"unknown engine {engine!r} (accepted: {', '.join(ENGINES)})")


@contextmanager
def spark_session(spark_master: str | None = None) -> Iterator[Any]:
    """The process's active SparkSession (inside spark-submit, a notebook or a test run),
    else one started on ``spark_master`` and stopped at the end."""
    from b12dx.errors import B12dxError

    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise B12dxError(
            "--engine spark needs PySpark: install b12dx with its spark extra "
            "(pip install 'b12dx[spark]') and Java 17 or later"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        running = active.sparkContext.master
        if spark_master and spark_master != running:
            raise B12dxError(
                f"a Spark session is already running with master {running!r} in this "
                f"process; it is used, so --spark-master {spark_master!r} cannot be"
            )
        active.conf.set("spark.sql.session.timeZone", "UTC")  # dates are calendar days
        yield active
        return
    master = spark_master or os.environ.get(SPARK_MASTER_ENV) or DEFAULT_SPARK_MASTER
    session = start_spark(master)
    try:
        yield session
    finally:
        session.stop()


LOG4J = Path(__file__).with_name("spark-log4j2.properties")


def start_spark(master: str) -> Any:
    """A SparkSession on ``master``, set up as screening needs it.

    In local mode the driver binds to 127.0.0.1 (Spark otherwise picks the machine's
    network interface and listens there), unless the user named an address with
    SPARK_LOCAL_IP or ``spark.driver.host`` in spark-defaults."""
    from pyspark.sql import SparkSession

    from b12dx.errors import B12dxError

    builder = (
        SparkSession.builder.master(master)
        .appName("b12dx-screen")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        # Spark's own log at warnings only (its INFO lines flooded the console), and no
        # stage progress bars: b12dx says what it is doing.
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{LOG4J}")
    )
    local = master.startswith("local") and not os.environ.get("SPARK_LOCAL_IP")
    if local:
        builder = builder.config("spark.driver.host", LOOPBACK).config(
            "spark.driver.bindAddress", LOOPBACK
        )
        # Read by the JVM as it starts (it inherits this environment): without it Spark
        # resolves the host name to the network interface first.
        os.environ["SPARK_LOCAL_IP"] = LOOPBACK
    try:
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("WARN")
        return session
    except Exception as exc:  # Spark reports a missing Java or bad master many ways
        raise B12dxError(
            f"Spark did not start with master {master!r} ({type(exc).__name__}): check "
            "that Java 17 or later is installed (JAVA_HOME) and the master URL "
            f"(--spark-master or {SPARK_MASTER_ENV})"
        ) from exc
    finally:
        if local:
            del os.environ["SPARK_LOCAL_IP"]


def screen_tables(
    tables: ScreeningTables,
    kb: Knowledge,
    profile: Profile,
    as_of: dt.date,
    engine: str = "duckdb",
    step: Step | None = None,
    spark_master: str | None = None,
    compiled: Future[CompiledGaps] | None = None,
) -> ScreenResult:
    """Run the gap rules over the screening tables on ``engine``. DuckDB runs them as
    ``compiled`` (``compile_gaps``, begun while the tables loaded) when given."""
    say = step or (lambda _name: None)
    # Waited for first: Ibis is not used from two threads at once.
    plan = compiled.result() if compiled else None
    with backend(engine, spark_master) as con:
        say("reading the screening tables")
        t = {
            name: con.read_parquet(str(tables.path(name)), table_name=f"screen_{name}")
            for name in SCHEMAS
        }
        say("finding the gaps")
        if engine == "duckdb":
            plan = plan or compile_gaps(kb, profile, as_of)
            gaps = plan.run(con)
        else:
            gaps = build_gaps(t, kb, profile, as_of).to_pyarrow()
        say("counting per gap, age band and risk factor")
        population = population_expr(t, kb, profile, as_of).to_pyarrow()
        care_sites = care_site_expr(t, kb, profile, as_of).to_pyarrow()
        summary = con.to_pyarrow(summary_expr(ibis.memtable(gaps)))
    people = sum(population.column("people").to_pylist())
    left_out = coverage(tables, as_of, kb.triage.adult_from_years, people)
    return ScreenResult(
        gaps, summary, as_of, profile.id, engine, people, left_out.records, population,
        care_sites=care_sites, coverage=left_out,
    )  # fmt: skip


def csv_ready(table: pa.Table) -> pa.Table:
    """Lists joined with ';' so the CSV has one value per cell, and a text a spreadsheet
    would run as a formula written with a leading apostrophe (b12dx.spreadsheet)."""
    cols = {}
    for name in table.column_names:
        col = table[name]
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(col, ";")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            quoted = pc.binary_join_element_wise("'", col, "")
            col = pc.if_else(pc.match_substring_regex(col, FORMULA_PATTERN), quoted, col)
        cols[name] = col
    return pa.table(cols)


def write_outputs(result: ScreenResult, out: Path) -> dict[str, Path]:
    """gaps.parquet, gaps.csv, summary.csv, population.csv and care_sites.csv in ``out``.
    Each is written under a temporary name and renamed into place, so a file never holds
    half a result."""
    out.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[Path], None]] = {
        "gaps.parquet": lambda p: pq.write_table(result.gaps, p),
        "gaps.csv": lambda p: pacsv.write_csv(csv_ready(result.gaps), p),
        "summary.csv": lambda p: pacsv.write_csv(csv_ready(result.summary), p),
        "population.csv": lambda p: pacsv.write_csv(csv_ready(result.population), p),
    }
    if result.care_sites is not None:  # people screened per care site: the sites' denominators
        sites = result.care_sites
        writers["care_sites.csv"] = lambda p: pacsv.write_csv(csv_ready(sites), p)
    paths = {}
    for name, write in writers.items():
        paths[name] = out / name
        partial = out / f".{name}.partial"
        write(partial)
        partial.replace(paths[name])
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
    if names & {"person.csv", "person.parquet", "PERSON.csv", "PERSON.parquet"}:
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


def _load_and_screen(
    source: Path | CdmDatabase,
    kind: str,
    work: Path,
    kb: Knowledge,
    profile: Profile,
    as_of: dt.date,
    engine: str,
    say: Step,
    spark_master: str | None,
    omop_type_concepts: tuple[int, ...],
) -> ScreenResult:
    """A folder or a CDM in PostgreSQL loaded into screening tables in ``work`` and
    screened; the rules compile from the knowledge base and the date alone, while the
    tables load."""
    with ThreadPoolExecutor(1, thread_name_prefix="b12dx-compile") as pool:
        compiled = pool.submit(compile_gaps, kb, profile, as_of) if engine == "duckdb" else None
        skipped: dict[str, int] = {}
        if kind == "fhir":
            from b12dx.screen.load_fhir import load_fhir

            assert isinstance(source, Path)
            tables, skipped = load_fhir(kb, source, work)
        else:
            from b12dx.screen.load_omop import load_omop

            tables = load_omop(kb, source, work, type_concepts=omop_type_concepts)
        result = screen_tables(tables, kb, profile, as_of, engine, say, spark_master, compiled)
    return replace(result, left_out=dict(sorted(skipped.items(), key=lambda kv: -kv[1])))


def screen(
    source: Path | CdmDatabase | SparkCatalog,
    out: Path,
    kb: Knowledge,
    profile: Profile,
    as_of: dt.date,
    engine: str = "duckdb",
    step: Step | None = None,
    spark_master: str | None = None,
    omop_type_concepts: tuple[int, ...] = (),
) -> tuple[ScreenResult, dict[str, Path]]:
    """Load ``source`` (a folder, an OMOP CDM in PostgreSQL, or OMOP tables in the Spark
    catalog) into screening tables (in ``out/tables``), find the gaps, write them (and, for
    a CDM in PostgreSQL with a results schema, the gaps there too).
    ``omop_type_concepts``: OMOP only, keep drug exposures and measurements of these
    provenances (``*_type_concept_id``)."""
    say = step or (lambda _name: None)
    kind = detect_input(source) if isinstance(source, Path) else "omop"
    if omop_type_concepts and kind != "omop":
        raise InputError.single(
            "--omop-type-concepts", "applies to OMOP tables only; INPUT is a FHIR export"
        )
    if isinstance(source, CdmDatabase) and source.results_schema:
        from b12dx.screen.cdm_database import check_results

        check_results(source)  # before the work, not after it
    work = out / "tables"
    say(f"loading the {'FHIR export' if kind == 'fhir' else 'OMOP tables'}")
    if isinstance(source, SparkCatalog):
        from b12dx.screen.load_omop import load_omop

        if engine != "spark":
            raise InputError.single("--engine", "the Spark catalog is read with --engine spark")
        # One session for the mapping and the rules: the tables never leave Spark.
        with spark_session(spark_master) as session:
            tables = load_omop(kb, source, work, type_concepts=omop_type_concepts, spark=session)
            result = screen_tables(tables, kb, profile, as_of, engine, say, spark_master)
    else:
        result = _load_and_screen(
            source, kind, work, kb, profile, as_of, engine, say, spark_master, omop_type_concepts
        )
    # The database's table first: if it cannot be written, no file claims a finished run.
    if isinstance(source, CdmDatabase) and source.results_schema and result.people:
        from b12dx.screen.cdm_database import write_gaps
        from b12dx.version import package_version

        say(f"writing the gaps to {source.results_schema} in the database")
        note = (
            f"b12dx {package_version()} care gaps: profile {profile.id}, as of {as_of}, "
            f"{result.people} people screened, written {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%MZ}"
        )
        write_gaps(source, result.gaps, note)
    say("writing gaps.parquet, gaps.csv, summary.csv, population.csv")
    return result, write_outputs(result, out)
