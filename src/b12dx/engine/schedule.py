"""Lay a regimen out as dated doses (pure date arithmetic, no clinical choices here:
the phases come from regimens.yaml)."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from b12dx.models.assessment import Dose
from b12dx.models.knowledge import Regimen, RegimenPhase

SCHEDULE_MONTHS = 12  # the contract asks for at least the first 12 months


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day of the month ``months`` later, clamped to the month's last day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _step(day: dt.date, phase: RegimenPhase) -> dt.date:
    if phase.every_months is not None:
        return add_months(day, phase.every_months)
    assert phase.every_days is not None
    return day + dt.timedelta(days=phase.every_days)


@dataclass(frozen=True)
class Plan:
    doses: list[Dose]
    loading_end: dt.date  # the last loading dose, or the start when there is no loading


def lay_out(regimen: Regimen, start: dt.date, first_review: dt.date, until: dt.date) -> Plan:
    """Every planned dose from ``start`` up to and including ``until``."""
    doses: list[Dose] = []
    last: dt.date | None = None
    loading_end = start
    for index, phase in enumerate(regimen.phases):
        repeating = index == len(regimen.phases) - 1
        if phase.day_offsets is not None:
            dates = (
                [start + dt.timedelta(days=d) for d in phase.day_offsets]
                if last is None
                else [last + dt.timedelta(days=d or 1) for d in phase.day_offsets]
            )
        else:
            dates = []
            day = start if last is None else _step(last, phase)
            count = 0
            while day <= until:
                if phase.until == "first_review" and day >= first_review:
                    break
                if phase.doses is not None and count >= phase.doses and not repeating:
                    break
                dates.append(day)
                count += 1
                day = _step(day, phase)
        dates = [d for d in dates if d <= until]
        doses.extend(Dose(date=d, dose=regimen.dose, phase=phase.phase) for d in dates)
        if dates:
            last = dates[-1]
            if phase.phase == "loading":
                loading_end = last
    return Plan(doses, loading_end)


def maintenance_interval(regimen: Regimen) -> RegimenPhase:
    return regimen.phases[-1]


def next_after(day: dt.date, phase: RegimenPhase) -> dt.date:
    return _step(day, phase)
