"""The vignettes a benchmark sends: every worked case whose record is valid.

A vignette that expects ``input_errors`` (tests/test_vignettes.py) is a record the engine
must refuse; it measures nothing and would stop a benchmark, so it is left out here, in
one place for every benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "tests" / "vignettes"


def assessable() -> list[dict[str, Any]]:
    """Each valid vignette: ``{"patient", "profile"?, ...}`` as in its file, by file name."""
    cases = []
    for path in sorted(FOLDER.glob("*.json")):
        case = json.loads(path.read_text())
        if "input_errors" not in case.get("expect", {}):
            cases.append(case)
    return cases
