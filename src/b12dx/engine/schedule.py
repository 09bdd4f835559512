"""Lay a regimen out as dated doses (pure date arithmetic, no clinical choices here:
the phases come from regimens.yaml)."""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from dataclasses import dataclass

from b12dx.models.assessment import Dose
from b12dx.models.knowledge import Regimen, RegimenPhase


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
    doses: tuple[Dose, ...]
    loading_end: dt.date  # the last loading dose, or the start when there is no loading


def _phase_dates(
    phase: RegimenPhase, first: dt.date, first_review: dt.date, until: dt.date, limited: bool
) -> list[dt.date]:
    """The dates of one interval phase starting at ``first``."""
    end = until
    if phase.until == "first_review":
        end = min(end, first_review - dt.timedelta(days=1))
    if phase.every_days is not None:
        # Day intervals are plain arithmetic (a year of daily oral doses is 366 dates).
        count = (end - first).days // phase.every_days + 1 if end >= first else 0
        if phase.doses is not None and limited:
            count = min(count, phase.doses)
        step = dt.timedelta(days=phase.every_days)
        return [first + step * i for i in range(count)]
    dates: list[dt.date] = []
    day = first
    while day <= end and not (limited and phase.doses is not None and len(dates) >= phase.doses):
        dates.append(day)
        day = _step(day, phase)
    return dates


def lay_out(regimen: Regimen, start: dt.date, first_review: dt.date, until: dt.date) -> Plan:
    """Every planned dose from ``start`` up to and including ``until``. Phases with
    ``day_offsets`` are anchored at the start; the last phase repeats to ``until``."""
    return lay_out_phases(tuple(regimen.phases), regimen.dose, start, first_review, until)


@functools.lru_cache(maxsize=128)
def lay_out_phases(
    phases: tuple[RegimenPhase, ...],
    dose: str,
    start: dt.date,
    first_review: dt.date,
    until: dt.date,
) -> Plan:
    """``lay_out`` of the phases given: a whole regimen's, or the rest of a course from
    where it stands (engine.course.remaining_phases), the first dose on ``start``."""
    # A plan depends only on the regimen and the dates, and everyone who starts a regimen
    # on the same day shares it; a year of daily oral doses is 366 objects, so plans are
    # reused (they are immutable).
    doses: list[Dose] = []
    last: dt.date | None = None
    loading_end = start
    for index, phase in enumerate(phases):
        if phase.day_offsets is not None:
            dates = [start + dt.timedelta(days=d) for d in phase.day_offsets]
            dates = [d for d in dates if d <= until]
        else:
            first = start if last is None else _step(last, phase)
            limited = index < len(phases) - 1
            dates = _phase_dates(phase, first, first_review, until, limited)
        doses.extend([Dose(date=d, dose=dose, phase=phase.phase) for d in dates])
        if dates:
            last = dates[-1]
            if phase.phase == "loading":
                loading_end = last
    return Plan(tuple(doses), loading_end)


def maintenance_interval(regimen: Regimen) -> RegimenPhase:
    return regimen.phases[-1]


def next_after(day: dt.date, phase: RegimenPhase) -> dt.date:
    return _step(day, phase)


def _interval(a: dt.date, b: dt.date) -> tuple[str, int]:
    """The interval from one dose to the next: calendar months when it is one, else days."""
    months = (b.year - a.year) * 12 + b.month - a.month
    if months >= 1 and add_months(a, months) == b:
        return "months", months
    return "days", (b - a).days


def dose_runs(doses: list[Dose]) -> list[tuple[str, dt.date, dt.date, str, int, str]]:
    """Consecutive doses with the same phase and interval, one row each."""
    rows: list[tuple[str, dt.date, dt.date, str, int, str]] = []
    i = 0
    while i < len(doses):
        first, j, interval = doses[i], i, "once"
        if i + 1 < len(doses) and doses[i + 1].phase == first.phase:
            step = _interval(first.date, doses[i + 1].date)
            while (
                j + 1 < len(doses)
                and doses[j + 1].phase == first.phase
                and _interval(doses[j].date, doses[j + 1].date) == step
            ):
                j += 1
            unit, n = step
            if unit == "months":
                interval = "monthly" if n == 1 else f"every {n} months"
            else:
                interval = "daily" if n == 1 else f"every {n} days"
        rows.append((first.phase, first.date, doses[j].date, interval, j - i + 1, first.dose))
        i = j + 1
    return rows
