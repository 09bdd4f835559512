"""Engine speed: assessments per second in-process over the vignettes, p50 and p99 latency,
and the wall time of one `b12dx assess` process (warm and cold knowledge cache).

    .venv/bin/python benchmarks/bench_engine.py [--rounds 5] [--processes 15]

A benchmark, not a test: it prints figures (medians of several rounds, because the
machine is shared and noisy) for docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from b12dx import assess, load_knowledge
from vignettes import assessable  # benchmarks/vignettes.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "src" / "b12dx" / "examples" / "metformin_neuropathy.json"


def in_process(rounds: int, repeat: int) -> list[dict[str, float]]:
    cases = assessable()
    kb = load_knowledge()
    results = []
    for _ in range(rounds):
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(repeat):
            for case in cases:
                t0 = time.perf_counter_ns()
                assess(case["patient"], profile=case.get("profile"), knowledge=kb)
                latencies.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        latencies.sort()
        results.append(
            {
                "per_second": len(latencies) / elapsed,
                "p50_ms": latencies[len(latencies) // 2],
                "p99_ms": latencies[int(len(latencies) * 0.99)],
            }
        )
    return results


def one_process(runs: int, cold: bool) -> list[float]:
    exe = Path(sys.executable).parent / "b12dx"
    times = []
    for _ in range(runs):
        env = dict(os.environ)
        if cold:
            env["B12DX_CACHE_DIR"] = tempfile.mkdtemp()
        t0 = time.perf_counter()
        subprocess.run(
            [str(exe), "assess", str(EXAMPLE), "--json", "--as-of", dt.date.today().isoformat()],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=40, help="passes over the vignettes per round"
    )
    parser.add_argument("--processes", type=int, default=15)
    args = parser.parse_args()

    rounds = in_process(args.rounds, args.repeat)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    n = len(assessable()) * args.repeat
    print(
        f"in-process, {len(assessable())} valid vignettes x {args.repeat} per round, "
        f"{args.rounds} rounds (median of rounds):"
    )
    print(
        f"  assessments/s {med['per_second']:.0f}   p50 {med['p50_ms']:.3f} ms   "
        f"p99 {med['p99_ms']:.3f} ms   ({n} assessments a round)"
    )
    one_process(1, cold=False)  # make sure the cache exists
    warm = one_process(args.processes, cold=False)
    cold = one_process(max(3, args.processes // 3), cold=True)
    print(
        f"one `b12dx assess --json` process, median of {len(warm)}: "
        f"{statistics.median(warm):.3f} s (min {min(warm):.3f}, max {max(warm):.3f})"
    )
    print(
        f"  first run with an empty knowledge cache, median of {len(cold)}: "
        f"{statistics.median(cold):.3f} s"
    )


if __name__ == "__main__":
    main()
