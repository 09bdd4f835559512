"""Every JSON b12dx is sent, read by one set of functions: a clear error (line, column)
instead of a traceback, no NaN or Infinity, and a bound on nesting. JSON nested hundreds
deep is valid, small (10 kB holds 1,000 levels) and exhausts Python's recursion in the
parser or in whatever walks it next; no record b12dx reads is nested more than about 15
deep (a FHIR Bundle's entry, resource, contained, coding, extension...), so anything
deeper than ``MAX_DEPTH`` is refused before anything else sees it."""

from __future__ import annotations

import json
from typing import Any

import orjson

from b12dx.errors import InputError

MAX_DEPTH = 64


class TooDeep(ValueError):
    """JSON nested more than MAX_DEPTH deep."""

    def __init__(self) -> None:
        super().__init__(f"nested more than {MAX_DEPTH} levels deep")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> Any:
    """``value``, or TooDeep when its arrays and objects nest deeper than ``limit``
    (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    raise TooDeep()
                stack.append((child, depth + 1))
    return value


def loads(data: str | bytes, large: bool = False) -> Any:
    """Decode JSON: ValueError (json.JSONDecodeError, TooDeep, or a NaN or Infinity) when
    it is not JSON b12dx reads. ``large``: orjson, several times faster on
    multi-megabyte bodies (a CDS Hooks prefetch of a long record)."""
    try:
        value = orjson.loads(data) if large else json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise TooDeep() from None
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise TooDeep() from None
        raise
    return check_depth(value) if isinstance(value, dict | list) else value


def parse_json(text: str | bytes, source: str, large: bool = False) -> Any:
    """``loads`` with an InputError naming ``source`` and what went wrong."""
    try:
        return loads(text, large)
    except TooDeep as exc:
        raise InputError.single("", f"{source} is {exc}", "a JSON object") from None
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
    """The same contract for multi-megabyte bodies: orjson reads them several times
    faster, and refuses NaN and over-deep nesting too."""
    return parse_json(data, source, large=True)
