"""Population screening at scale: python benchmarks/bench_screen.py [N] [RUNS] [--no-spark]
[--postgres].

Generates N synthetic patients (default 1,000,000, seed 0) as OMOP Parquet once, cached in
``$B12DX_BENCH_DIR`` (default: the temp folder), then, RUNS times (default 3):

(a) ``b12dx screen`` end to end on DuckDB in a subprocess: wall time and the peak RSS of
    that process (``os.wait4``);
(b) the gap rules alone on the loaded screening tables against a bare DuckDB scan of the
    columns they read (materialised to Arrow), both in this process one after the other:
    the ratio is the rules' own cost. The rules run as ``screen`` runs them: SQL compiled
    from the knowledge base and the date (fixed, whatever the number of patients, and
    done while the tables load: timed apart) executed by DuckDB;
(d) ``b12dx screen --engine spark`` (Spark local mode) in a subprocess: wall time.

Once: (c) the single-patient path (FHIR record + ``engine.assess``) looped over the first
2,000 of the same patients, extrapolated to N. Medians are printed last.

With ``--postgres``: the same N loaded into a throwaway PostgreSQL server and screened
from there, beside (a) from Parquet and a bare read (``bench_screen_postgres.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.synth.generate import DEFAULT_AS_OF, generate

SAMPLE = 2_000
CLI = "from b12dx.cli.app import app; app()"


def _data(patients: int, fmt: str) -> Path:
    root = Path(os.environ.get("B12DX_BENCH_DIR", tempfile.gettempdir()))
    folder = root / f"b12dx-bench-screen-{fmt}-{patients}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(patients, folder, fmt)  # type: ignore[arg-type]
        done.touch()
        print(f"generated {patients:,} patients ({fmt}) in {time.perf_counter() - start:.1f} s")
    return folder


def _run_cli(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one ``b12dx`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"b12dx {' '.join(args)} failed: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def _rules_vs_scan(tables: ScreeningTables) -> tuple[float, float, float]:
    """(rules seconds, compile seconds, scan seconds). The rules as ``screen`` runs them:
    their SQL, compiled from the knowledge base and the date (``compile_gaps``, which
    ``screen`` runs while the tables load), executed on the loaded tables."""
    import ibis

    from b12dx.screen.rules import compile_gaps

    kb = load_knowledge()
    con = ibis.duckdb.connect()
    try:
        t = {n: con.read_parquet(str(tables.path(n)), table_name=f"screen_{n}") for n in SCHEMAS}
        scans = []
        for _ in range(2):  # the first pays for DuckDB's and Ibis's first use: not timed
            start = time.perf_counter()
            for name in SCHEMAS:  # every column of the six tables is read by some rule
                t[name].select(*SCHEMAS[name].names).to_pyarrow()
            scans.append(time.perf_counter() - start)
        scan = scans[-1]
        start = time.perf_counter()
        plan = compile_gaps(kb, kb.default_profile, DEFAULT_AS_OF)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        plan.run(con)  # as screen_tables runs it
        rules = time.perf_counter() - start
    finally:
        con.disconnect()
    return rules, compile_s, scan


def _single_patient(patients: int) -> tuple[float, int]:
    """Seconds for SAMPLE patients (or all, when fewer) through record_from_resources +
    assess."""
    from b12dx.engine.assess import assess
    from b12dx.errors import InputError
    from b12dx.fhir.read import patient_reference, reference_id
    from b12dx.fhir.record import record_from_resources

    kb = load_knowledge()
    folder = _data(min(SAMPLE, patients), "ndjson")
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            r = orjson.loads(line)
            ref = patient_reference(r)
            pid = r["id"] if r["resourceType"] == "Patient" else reference_id(ref or "")
            by_patient[pid].append(r)
    as_of: dt.date = DEFAULT_AS_OF
    assessed = 0
    start = time.perf_counter()
    for resources in by_patient.values():
        try:
            imported = record_from_resources(resources, as_of, kb)
            assess(imported.record, as_of=as_of, knowledge=kb)
            assessed += 1
        except InputError:
            pass  # died before as_of: the population rules leave them out too
    return time.perf_counter() - start, assessed


def main() -> None:
    if "--postgres" in sys.argv:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_screen_postgres import main as in_database

        in_database()
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    patients = int(args[0]) if args else 1_000_000
    runs = int(args[1]) if len(args) > 1 else 3
    spark = "--no-spark" not in sys.argv
    source = _data(patients, "parquet")
    out = Path(tempfile.mkdtemp(prefix="b12dx-bench-screen-out-"))
    common = ["screen", str(source), "--as-of", DEFAULT_AS_OF.isoformat(), "--force"]
    a_wall, a_rss, ratios, rules_s, scans, spark_wall = [], [], [], [], [], []
    compiles, serial_ratios = [], []
    for run in range(1, runs + 1):
        wall, rss = _run_cli([*common, "--out", str(out / "duckdb")])
        a_wall.append(wall)
        a_rss.append(rss)
        rules, compile_s, scan = _rules_vs_scan(ScreeningTables(out / "duckdb" / "tables"))
        rules_s.append(rules)
        compiles.append(compile_s)
        scans.append(scan)
        ratios.append(rules / scan)
        serial_ratios.append((rules + compile_s) / scan)
        line = (
            f"run {run}: (a) screen duckdb {wall:.1f} s, peak RSS {rss:,.0f} MB; "
            f"(b) rules {rules:.2f} s vs scan {scan:.2f} s = {rules / scan:.1f}x "
            f"(compiled beforehand in {compile_s:.2f} s; {(rules + compile_s) / scan:.1f}x "
            "were it compiled after the load)"
        )
        if spark:
            s_wall, _ = _run_cli([*common, "--out", str(out / "spark"), "--engine", "spark"])
            spark_wall.append(s_wall)
            line += f"; (d) screen spark {s_wall:.1f} s"
        print(line, flush=True)
    single, assessed = _single_patient(patients)
    per_patient = single / assessed
    median = statistics.median
    print(
        f"(c) single-patient engine: {assessed:,} patients in {single:.1f} s "
        f"({per_patient * 1000:.2f} ms each); {patients:,} would take "
        f"{per_patient * patients / 60:.0f} min, {per_patient * patients / median(a_wall):.0f}x "
        f"the set-wise screen"
    )
    print(
        f"medians of {runs}: (a) {median(a_wall):.1f} s, {median(a_rss):,.0f} MB; "
        f"(b) rules {median(rules_s):.2f} s, scan {median(scans):.2f} s, "
        f"ratio {median(ratios):.1f}x (compile {median(compiles):.2f} s beforehand; "
        f"{median(serial_ratios):.1f}x in series)"
        + (f"; (d) spark {median(spark_wall):.1f} s" if spark_wall else "")
    )


if __name__ == "__main__":
    main()
