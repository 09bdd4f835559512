"""The house rules (docs/architecture.md): each layer imports only from the layers below
it (adapters on top of the engine, knowledge and models at the bottom) and the clinical
core does no I/O. The contracts are in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "import-linter is a dev dependency (pyproject.toml)"
    return subprocess.run(
        [command, "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_no_layer_imports_one_above_it_and_the_core_does_no_io() -> None:
    done = _lint_imports(ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_the_check_fails_when_a_layer_is_imported_from_below(tmp_path: Path) -> None:
    """The same check with the engine placed above the web app: the web app's imports of
    the engine then run upward, and the contract must say so."""
    config = tmp_path / "upside-down.toml"
    config.write_text(
        """
[tool.importlinter]
root_package = "b12dx"

[[tool.importlinter.contracts]]
name = "upside down"
type = "layers"
layers = ["b12dx.engine", "b12dx.web"]
"""
    )
    done = _lint_imports(config)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "b12dx.web" in done.stdout
