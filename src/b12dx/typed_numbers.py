"""How a number a person typed is read, on every door (web forms, the JSON API's strings,
the command line, FHIR ``valueString``): one reading, or a refusal that says why.

"1,600" is 1600 to a British reader and 1.6 to a German one; a laboratory report can use
either. Reading it either way silently turns a normal B12 into a deficient one (or back),
so a comma, a space inside the digits, or any other character is refused, naming the
readings the user could have meant ("write 1600 or 1.6"). Only plain decimals are read:
digits with at most one point, and a leading minus where the caller allows it.
"""

from __future__ import annotations

import math
import re

from b12dx.errors import FieldError, InputError

ACCEPTED = "digits with a point for decimals and no separators, for example 1600 or 1.6"
_PLAIN = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
_LEADING = re.compile(r"\d+(\.\d+)?")
_GROUPED = re.compile(r"\d{1,3}([,. \u00a0\u202f]\d{3})+([.,]\d+)?")


def readings(text: str) -> list[str]:
    """What a number written with separators could mean, as plain decimals, each once
    ("1,600" -> ["1600", "1.6"], "1.600,5" -> ["1600.5"], "1,6" -> ["1.6"])."""
    digits = text.strip()
    out: list[str] = []

    def add(candidate: str) -> None:
        if _PLAIN.fullmatch(candidate) and candidate not in out:
            out.append(candidate.rstrip("0").rstrip(".") if "." in candidate else candidate)

    separators = [c for c in digits if not c.isdigit()]
    if _GROUPED.fullmatch(digits):
        # Digits in groups of three: the first separator groups thousands; a different
        # last one, if any, is the decimal point.
        group, last = separators[0], separators[-1]
        whole, point, fraction = digits.rpartition(last) if last != group else (digits, "", "")
        add(whole.replace(group, "") + ("." + fraction if point else ""))
    if digits.count(",") == 1 and "." not in digits and " " not in digits:
        add(digits.replace(",", "."))
    return out


def read_number(text: str, field: str, *, negative: bool = False) -> float | None:
    """The number typed in ``field``; None when nothing was typed. Anything that is not a
    plain decimal is an :class:`InputError` naming the field and what is accepted."""
    raw = text.strip()
    if not raw:
        return None
    if _PLAIN.fullmatch(raw) and (negative or not raw.startswith("-")):
        value = float(raw)
        if math.isfinite(value):
            return value
    raise InputError([refusal(raw, field)])


def refusal(raw: str, field: str) -> FieldError:
    """Why ``raw`` is not read as a number, with the readings it could have meant."""
    options = readings(raw)
    if len(options) > 1:
        message = f"{raw!r} could be read more than one way: write {' or '.join(options)}"
    elif options:
        message = f"{raw!r} uses a separator b12dx does not read: write {options[0]}"
    elif raw.startswith("-"):
        message = f"{raw!r} is below zero"
    elif _LEADING.match(raw) and not _LEADING.fullmatch(raw):
        message = f"{raw!r} is not a number alone: enter the number, and the unit where asked"
    elif raw[:1] in "<>" and _LEADING.fullmatch(raw[1:].strip()):
        # The limit is not the result: entered as one, a "<200" B12 would read as
        # indeterminate although it may be far lower.
        message = (
            f"{raw!r} is a result beyond what the laboratory measured, not a number "
            "b12dx can band: leave it out and show the report to a doctor"
        )
    else:
        message = f"{raw!r} is not a number"
    return FieldError(field, message, ACCEPTED)
