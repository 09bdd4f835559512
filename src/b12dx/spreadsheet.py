"""Cells written to a CSV that a person opens in a spreadsheet: a text beginning with =,
+, -, @, a tab or a carriage return is read there as a formula (OWASP "CSV injection"),
so such a text is written with a leading apostrophe, which the spreadsheet shows as
text. A patient's name, a practice's site or a reason can hold anything typed."""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# The same test as a regular expression, for tables written column by column.
FORMULA_PATTERN = r"^[=+\-@\t\r]"


def safe_cell(value: Any) -> Any:
    """``value``, with a leading apostrophe when it is text a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_row(values: list[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]
