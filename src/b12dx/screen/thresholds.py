"""The numbers the screening rules use, resolved once from the knowledge base and the
profile for an as-of date (``Thresholds``), and the screening tables' type."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import ibis.expr.types as ir

from b12dx.engine.schedule import add_months, maintenance_interval
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile, Regimen
from b12dx.numbers import DAYS_PER_MONTH

Tables = Mapping[str, ir.Table]


@dataclass(frozen=True)
class Interval:
    """A regimen's maintenance interval: calendar months, or days."""

    regimen: str
    months: int | None
    days: int | None


@dataclass(frozen=True)
class Thresholds:
    """The numbers the rules use, resolved from the knowledge base and profile."""

    as_of: dt.date
    min_age: int
    lookback_start: dt.date  # a B12 test on or after this date is "in the last 12 months"
    symptom_start: dt.date
    follow_up_days: int
    treatment_days: int
    gap_days: int  # orders at most this far apart are one course
    maintenance: tuple[Interval, Interval]  # (neurological, other) injection regimens
    regimens: tuple[Regimen, Regimen]  # the same two regimens, for their loading phases
    grace_days: int
    loading_grace_days: int
    review_months: int


def thresholds(kb: Knowledge, profile: Profile, as_of: dt.date) -> Thresholds:
    sc = kb.screening
    w = sc.windows

    def interval(regimen_id: str) -> Interval:
        phase = maintenance_interval(kb.regimens[regimen_id])
        days = phase.every_days if phase.every_months is None else None
        return Interval(regimen_id, phase.every_months, days)

    def length(i: Interval) -> float:
        return i.months * DAYS_PER_MONTH if i.months is not None else float(i.days or 0)

    # The engine chooses the neurological regimen for neurological involvement, otherwise
    # by cause; a cause whose regimen is oral is not a course of injections, so among the
    # injection regimens the longest is taken (nobody is flagged whom the engine's choice
    # of injections would not yet call due).
    by_cause = profile.regimen_by_cause
    others = [
        interval(r)
        for cause, r in by_cause.items()
        if cause != "neurological" and kb.regimens[r].route in sc.maintenance.routes
    ]
    neuro = by_cause["neurological"]
    if kb.regimens[neuro].route not in sc.maintenance.routes:
        raise ValueError(f"profile {profile.id}: the neurological regimen is not an injection")
    other = max(others, key=length) if others else interval(neuro)
    assert profile.review_after_months is not None
    return Thresholds(
        as_of=as_of,
        min_age=kb.triage.adult_from_years,
        lookback_start=add_months(as_of, -w.test_lookback_months),
        symptom_start=add_months(as_of, -w.symptom_months),
        follow_up_days=w.follow_up_days,
        treatment_days=w.treatment_start_days,
        gap_days=kb.fhir.medication_runs.gap_days,
        maintenance=(interval(neuro), other),
        regimens=(kb.regimens[neuro], kb.regimens[other.regimen]),
        grace_days=profile.maintenance_grace_days or 0,
        loading_grace_days=profile.loading_grace_days or 0,
        review_months=profile.review_after_months,
    )


def latest_start(th: Thresholds, min_months: float) -> dt.date:
    """The latest start date of a course at least ``min_months`` long on as_of (a month
    is DAYS_PER_MONTH days, rounded up to whole days, as the engine counts it)."""
    return th.as_of - dt.timedelta(days=math.ceil(min_months * DAYS_PER_MONTH))
