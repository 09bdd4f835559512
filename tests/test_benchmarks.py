"""Every benchmark script runs: each is started as docs/performance.md says to start it,
at a tiny size, and must finish and print its figures. The figures themselves are not
judged here (timed tests on a shared machine would be noise); that a benchmark can be
run at all is, so none can rot unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))

# Each script with the arguments of a smoke run, and a line its output must hold.
SMOKE: dict[str, tuple[list[str], str]] = {
    "bench_engine.py": (["--rounds", "1", "--repeat", "1", "--processes", "1"], "assessments/s"),
    "bench_api.py": (
        [
            "--duration",
            "1",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--connections",
            "2",
            "--workers",
            "1",
            "--client",
            "httpx",
        ],
        "median:",
    ),
    "bench_cds.py": (["--requests", "3", "--runs", "1"], "median"),
    "bench_screen.py": (["300", "1"], "medians of 1:"),
    "bench_screen_postgres.py": (["300", "1"], "medians of 1:"),
    "bench_synth.py": (["300"], "synth 300 patients"),
    "bench_serve_attacks.py": (
        [
            "--assessments",
            "20",
            "--resources",
            "1000",
            "--cds-calls",
            "1",
            "--half-sent",
            "20",
            "--line-mb",
            "1",
        ],
        "stalls over 1 s",
    ),
    "bench_store_contention.py": (
        ["--runs", "1", "--seconds", "0.5", "--audit-rows", "1000"],
        "sign-ins",
    ),
}


def test_every_benchmark_script_has_a_smoke_run() -> None:
    assert sorted(SMOKE) == SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_runs_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    args, expected = SMOKE[script]
    env = dict(os.environ, B12DX_BENCH_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert expected in proc.stdout, proc.stdout[-2000:]
