"""Files that hold patient data are their owner's only, whatever the umask: the follow-up
store (and so its WAL), and what the commands write with --out (screening results, a
synthetic population, an import's records)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from b12dx.cli.app import app; app()"]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    def loose_umask() -> None:
        os.umask(0o022)  # the common default: files 0644, folders 0755

    # The default store under B12DX_DATA_DIR, whatever database another test points at.
    base = {k: v for k, v in os.environ.items() if k != "B12DX_DATABASE_URL"}
    done = subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        preexec_fn=loose_umask,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
    }


def test_outputs_and_the_store_are_owner_only_under_a_loose_umask(tmp_path: Path) -> None:
    _run(["synth", "--patients", "50", "--out", "population"], tmp_path)
    _run(["screen", "population", "--out", "results"], tmp_path)
    _run(
        ["patient", "add", "--name", "Ann Test", "--birth-date", "1950-01-01", "--sex", "female"],
        tmp_path,
        {"B12DX_DATA_DIR": str(tmp_path / "data")},
    )
    for folder in ("population", "results", "data"):
        modes = _modes(tmp_path / folder)
        assert len(modes) >= 2, modes  # the folder and what was written in it
        for path, mode in modes.items():
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}, readable by others"
