"""Time and peak memory of ``b12dx synth``: python benchmarks/bench_synth.py [N] [FORMAT]."""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from b12dx.synth.generate import generate


def main() -> None:
    patients = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    fmt = sys.argv[2] if len(sys.argv) > 2 else "parquet"
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate(patients, Path(folder), fmt)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"synth {patients:,} patients ({fmt}): {seconds:.1f} s, "
        f"{patients / seconds:,.0f} patients/s, peak RSS {peak_mb:.0f} MB, "
        f"output {size / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
