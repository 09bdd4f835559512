"""Parse JSON text from a user with a clear error (line, column) instead of a traceback."""

from __future__ import annotations

import json
from typing import Any

import orjson

from b12dx.errors import InputError


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError.single(
            "",
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "a JSON object as described by the input schema",
        ) from None
    except UnicodeDecodeError:
        raise InputError.single("", f"{source} is not UTF-8 text") from None
    except ValueError as exc:
        raise InputError.single("", f"{source}: {exc}") from None


def parse_large_json(data: bytes, source: str) -> Any:
    """The same contract for multi-megabyte bodies (a CDS Hooks prefetch of a long record):
    orjson reads them several times faster, and refuses NaN and over-deep nesting too."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError.single(
            "",
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "a JSON object",
        ) from None
