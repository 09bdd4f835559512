"""Screening an OMOP CDM where it is kept: python benchmarks/bench_screen_postgres.py [N] [RUNS].

Generates N synthetic patients (default 1,000,000, seed 0) as OMOP Parquet once (cached
as benchmarks/bench_screen.py caches it), starts a throwaway PostgreSQL server (the
suite's own recipe, tests/pg.py), loads the tables into schema ``cdm`` (timed, once), then
RUNS times (default 3), side by side:

(a) ``b12dx screen`` end to end from the Parquet folder on DuckDB: wall time, peak RSS;
(e) ``b12dx screen postgresql://... --cdm-schema cdm`` end to end: wall time, peak RSS;
(f) a bare read of the columns the mapping reads from the same PostgreSQL tables, through
    the same scanner into Arrow: (e) / (f) is what screening costs beyond reading.

Medians are printed last.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_screen import _data, _run_cli  # noqa: E402

from b12dx.screen.cdm_database import load_scanner  # noqa: E402
from b12dx.screen.load_omop import OPTIONAL_SOURCES, SOURCES  # noqa: E402
from b12dx.synth.generate import DEFAULT_AS_OF  # noqa: E402
from pg import _start, _stop  # noqa: E402


def _load(url: str, source: Path) -> float:
    start = time.perf_counter()
    con = duckdb.connect()
    load_scanner(con)
    con.execute(f"ATTACH '{url}' AS pg (TYPE postgres)")
    con.execute("CREATE SCHEMA pg.cdm")
    for path in sorted(source.glob("*.parquet")):
        con.execute(f"CREATE TABLE pg.cdm.{path.stem} AS SELECT * FROM read_parquet('{path}')")
    con.close()
    return time.perf_counter() - start


def _bare_read(url: str) -> float:
    """Every column the mapping reads, of every table it reads, into Arrow."""
    con = duckdb.connect()
    load_scanner(con)
    con.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
    present = {
        (str(t), str(c))
        for t, c in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'pg'"
        ).fetchall()
    }
    start = time.perf_counter()
    for table, spec in {**SOURCES, **OPTIONAL_SOURCES}.items():
        columns = [c for c, _ in (*spec.required, *spec.optional) if (table, c) in present]
        if columns:
            con.execute(f"SELECT {', '.join(columns)} FROM pg.cdm.{table}").fetch_arrow_table()
    took = time.perf_counter() - start
    con.close()
    return took


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    patients = int(args[0]) if args else 1_000_000
    runs = int(args[1]) if len(args) > 1 else 3
    source = _data(patients, "parquet")
    base = Path(tempfile.mkdtemp(prefix="b12dx-bench-pg-"))
    base.chmod(0o755)
    (base / "pg").mkdir()
    server = _start(base / "pg")
    if "error" in server:
        sys.exit(f"PostgreSQL did not start: {server['error']}")
    try:
        import psycopg

        owner = f"postgresql://{server['user']}@/postgres?host={base / 'pg'}"
        with psycopg.connect(owner, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        url = owner.replace("/postgres?", "/bench?")
        loaded = _load(url, source)
        print(f"loaded {patients:,} patients into PostgreSQL in {loaded:.1f} s", flush=True)
        out = Path(tempfile.mkdtemp(prefix="b12dx-bench-pg-out-"))
        common = ["screen", "--as-of", DEFAULT_AS_OF.isoformat(), "--force"]
        a_wall, a_rss, e_wall, e_rss, f_read = [], [], [], [], []
        for run in range(1, runs + 1):
            wall, rss = _run_cli([*common, str(source), "--out", str(out / "files")])
            a_wall.append(wall)
            a_rss.append(rss)
            pg_wall, pg_rss = _run_cli(
                [*common, url, "--cdm-schema", "cdm", "--out", str(out / "pg")]
            )
            e_wall.append(pg_wall)
            e_rss.append(pg_rss)
            f_read.append(_bare_read(url))
            print(
                f"run {run}: (a) from Parquet {wall:.1f} s, {rss:,.0f} MB; (e) from PostgreSQL "
                f"{pg_wall:.1f} s, {pg_rss:,.0f} MB; (f) bare read {f_read[-1]:.2f} s = "
                f"{pg_wall / f_read[-1]:.1f}x",
                flush=True,
            )
        median = statistics.median
        print(
            f"medians of {runs}: (a) {median(a_wall):.1f} s, {median(a_rss):,.0f} MB; "
            f"(e) {median(e_wall):.1f} s, {median(e_rss):,.0f} MB; (f) {median(f_read):.2f} s; "
            f"(e)/(f) {median(w / r for w, r in zip(e_wall, f_read, strict=True)):.1f}x"
        )
        shutil.rmtree(out, ignore_errors=True)
    finally:
        _stop(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
