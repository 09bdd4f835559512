"""How far ahead the due list looks, as people write it: a number of days (``14``), or
``Nd``, ``Nw``, ``Nm`` (a month counted as 30 days). One reading for every door: the
command line's ``--within``, the clinic page's and the API's ``within``."""

from __future__ import annotations

import re

from b12dx.errors import InputError

_PERIOD = re.compile(r"^\s*(\d{1,4})\s*([dwm]?)\s*$", re.IGNORECASE)
DAYS_PER = {"": 1, "d": 1, "w": 7, "m": 30}  # a month counts as 30 days
MAX_DAYS = 366
ACCEPTED = (
    f"a number of days, or Nd, Nw or Nm (a month counts as 30 days), e.g. 7d, 2w, 1m; "
    f"at most {MAX_DAYS} days"
)


def parse_days(value: str, field: str = "within") -> int:
    """The days in ``value``, or an InputError naming ``field`` and what is accepted."""
    m = _PERIOD.match(value)
    if m is None:
        raise InputError.single(field, f"{value!r} is not a period", ACCEPTED)
    days = int(m[1]) * DAYS_PER[m[2].lower()]
    if days > MAX_DAYS:
        raise InputError.single(field, f"{value!r} is {days} days", ACCEPTED)
    return days
