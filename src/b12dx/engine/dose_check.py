"""Whether a dose about to be recorded as given looks like a slip: an amount that none of
the knowledge base's regimens for that drug and route gives, or a dose sooner after (or
before) another recorded dose of it than any of those regimens gives two doses.

It is a question for the person recording, not a rule that refuses: a clinician may have
had a reason, so the adapters ask for a confirmation (``--force``, ``"force": true``,
*Record anyway*) and the store records the dose once it is given (``b12dx.store.entries``).
A drug and route no regimen uses has nothing to be compared with, and passes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from b12dx.engine.course import TOLERANCE_MG, route_name
from b12dx.errors import FieldError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Regimen

__all__ = ["dose_concerns", "regimens_for", "route_name"]


def regimens_for(kb: Knowledge, drug: str, route: str) -> list[Regimen]:
    return [r for r in kb.regimens.values() if (r.drug, r.route) == (drug, route)]


def dose_concerns(
    kb: Knowledge,
    *,
    drug: str,
    route: str,
    dose_mg: float,
    given_on: dt.date,
    other_days: Iterable[dt.date],
) -> list[FieldError]:
    """Why the dose looks wrong, one FieldError per reason (``dose``, ``date``); none when
    it fits a regimen. ``other_days``: the days of the other recorded doses of this drug
    and route."""
    regimens = regimens_for(kb, drug, route)
    if not regimens:
        return []
    what = f"{drug} {route_name(route)}"
    concerns: list[FieldError] = []
    fits = [r for r in regimens if _within(dose_mg, r.dose_range_mg)]
    if not fits:
        by_dose: dict[str, list[str]] = {}
        for r in regimens:
            by_dose.setdefault(r.dose, []).append(r.id)
        accepted = "; ".join(f"{d} ({', '.join(ids)})" for d, ids in by_dose.items())
        concerns.append(
            FieldError(
                "dose",
                f"{dose_mg:g} mg is not a dose of {what} in any of the knowledge base's regimens",
                accepted,
            )
        )
    shortest = min(r.shortest_interval_days for r in regimens)
    days = sorted(set(other_days) - {given_on})
    before = max((d for d in days if d < given_on), default=None)
    after = min((d for d in days if d > given_on), default=None)
    for other, side in ((before, "after the previous"), (after, "before the next")):
        if other is not None and abs((given_on - other).days) < shortest:
            n = abs((given_on - other).days)
            concerns.append(
                FieldError(
                    "date",
                    f"{given_on} is {n} day{'s' if n != 1 else ''} {side} {what} dose "
                    f"({other}); no regimen in the knowledge base gives {what} more often "
                    f"than every {shortest} days",
                    f"a date {shortest} days or more from another {what} dose",
                )
            )
    return concerns


def _within(mg: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - TOLERANCE_MG <= mg <= bounds[1] + TOLERANCE_MG
