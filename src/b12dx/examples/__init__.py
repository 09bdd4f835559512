"""Example patients shipped with b12dx (``b12dx example``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from b12dx.errors import LookupError_

_DIR = Path(__file__).parent


def catalogue() -> dict[str, str]:
    """Example name -> one-line description, default first."""
    with (_DIR / "index.yaml").open(encoding="utf-8") as f:
        return {str(k): str(v) for k, v in yaml.safe_load(f).items()}


def load(name: str) -> dict[str, Any]:
    names = catalogue()
    if name not in names:
        raise LookupError_(f"unknown example {name!r} (accepted: {', '.join(names)})")
    data: dict[str, Any] = json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def text(name: str) -> str:
    load(name)  # raises for an unknown name
    return (_DIR / f"{name}.json").read_text(encoding="utf-8")
