"""Read a patient record from a file or standard input, with clear errors."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from b12dx.errors import InputError
from b12dx.jsonio import parse_json


def read_record(path: str) -> Any:
    """The JSON in ``path`` ('-' for standard input)."""
    if path == "-":
        return parse_json(sys.stdin.read(), "standard input")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single("", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.single("", f"cannot read {path}: {exc}") from None
    return parse_json(text, path)


def parse_date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError.single(option, f"{value!r} is not a date", "YYYY-MM-DD") from None
