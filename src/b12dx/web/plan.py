"""Doses given against doses planned, for the timeline page.

What was planned: each saved assessment's schedule (``planned_doses``) for the days from
its date until the next saved assessment replaced it, up to today; after today (and today
when no saved plan has a dose then), the current assessment's schedule. What was given:
the doses recorded (a dose given today counts today).

Each given dose counts for the planned dose nearest to it (so a dose given a few days
early or late still counts for its own date, not for the next one). A planned dose in
the past is then:

  given    a dose counts for it, given by its date plus the allowance
  late     a dose counts for it, given after that (``late_days`` after the date)
  missed   no dose counts for it and the next planned dose's turn has come
  overdue  no dose yet, the allowance has passed, and it is still its turn
  due      no dose yet, within the allowance

The allowance is the profile's ``maintenance_grace_days`` for maintenance doses and its
``loading_grace_days`` for loading doses (the engine's own measures of when a dose is
overdue, engine.course).
Daily plans (oral tablets) are summarised, not checked dose by dose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from b12dx.models.assessment import Treatment
from b12dx.web.charts import Tick, TimeAxis, day_label, time_axis

Status = Literal["given", "late", "missed", "overdue", "due", "upcoming", "daily"]
UPCOMING_SHOWN = 6


@dataclass(frozen=True)
class Planned:
    due: dt.date
    dose: str
    phase: str
    source: str  # "saved assessment of 2026-01-03" / "current assessment"


@dataclass(frozen=True)
class Given:
    id: int
    day: dt.date
    what: str  # "hydroxocobalamin 1 mg IM"
    given_by: str


@dataclass
class PlanRow:
    planned: Planned
    status: Status
    given: Given | None = None
    late_days: int = 0


@dataclass
class PlanRun:
    """Consecutive planned doses with the same outcome and no dose given (a run of missed
    loading doses), shown as one row; a run of one is a plain row."""

    rows: list[PlanRow]

    @property
    def first(self) -> PlanRow:
        return self.rows[0]

    @property
    def last(self) -> PlanRow:
        return self.rows[-1]


def runs(rows: Sequence[PlanRow]) -> list[PlanRun]:
    out: list[PlanRun] = []
    for row in rows:
        prev = out[-1].last if out else None
        if (
            prev is not None
            and row.given is None
            and prev.given is None
            and (row.status, row.planned.phase, row.planned.dose, row.planned.source)
            == (prev.status, prev.planned.phase, prev.planned.dose, prev.planned.source)
        ):
            out[-1].rows.append(row)
        else:
            out.append(PlanRun([row]))
    return out


@dataclass(frozen=True)
class DoseMark:
    x: float
    kind: str  # planned-<status> | given
    title: str


@dataclass
class DosePlan:
    past: list[PlanRow]
    upcoming: list[PlanRow]
    later: int  # upcoming planned doses not listed
    unplanned: list[Given]  # given doses that no planned dose accounts for
    overdue_since: dt.date | None
    daily_runs: list[tuple[dt.date, dt.date, str]] = field(default_factory=list)
    marks: list[DoseMark] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    today_x: float | None = None
    width: int = 640
    height: int = 96

    @property
    def past_runs(self) -> list[PlanRun]:
        return runs(self.past)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.past:
            out[row.status] = out.get(row.status, 0) + 1
        return out


def _is_daily(doses: Sequence[Planned], i: int) -> bool:
    near = [doses[j].due for j in (i - 1, i + 1) if 0 <= j < len(doses)]
    return any(abs((d - doses[i].due).days) <= 1 for d in near)


def _runs(days: list[Planned]) -> list[tuple[dt.date, dt.date, str]]:
    runs: list[tuple[dt.date, dt.date, str]] = []
    for p in days:
        if runs and (p.due - runs[-1][1]).days <= 1 and runs[-1][2] == p.dose:
            runs[-1] = (runs[-1][0], p.due, p.dose)
        else:
            runs.append((p.due, p.due, p.dose))
    return runs


def compare(
    saved: Sequence[tuple[dt.date, Sequence[Planned]]],
    treatment: Treatment | None,
    given: Sequence[Given],
    today: dt.date,
    grace_days: int,
    loading_grace_days: int = 0,
) -> DosePlan:
    """``saved``: each saved assessment's date and plan, oldest first."""
    plan: list[Planned] = []
    since = treatment.overdue_since if treatment is not None else None
    tomorrow = today + dt.timedelta(days=1)
    for i, (as_of, doses) in enumerate(saved):
        until = saved[i + 1][0] if i + 1 < len(saved) else tomorrow
        plan += [p for p in doses if as_of <= p.due < min(until, tomorrow)]
    if treatment is not None:
        # Today's dose comes from the saved plan when it has one: once today's dose is
        # given, the current assessment's schedule starts at the next dose, and today's
        # dose must still count for the day it was planned.
        planned_today = any(p.due == today for p in plan)
        plan += [
            Planned(d.date, d.dose, d.phase, "current assessment")
            for d in treatment.schedule
            if d.date > today or (d.date == today and not planned_today)
        ]
        if since is not None and not any(p.due == since for p in plan):
            plan.append(
                Planned(since, treatment.dose, "maintenance", "current assessment (overdue)")
            )
    plan.sort(key=lambda p: p.due)
    daily = [p for i, p in enumerate(plan) if _is_daily(plan, i)]
    checked = [p for i, p in enumerate(plan) if not _is_daily(plan, i)]

    # Each given dose counts for the nearest planned dose (the earlier one on a tie); a
    # planned dose keeps the nearest of the doses that chose it.
    chosen: dict[int, Given] = {}
    unplanned: list[Given] = []
    for g in sorted(given, key=lambda g: (g.day, g.id)):
        if not checked:
            unplanned.append(g)
            continue
        k = min(range(len(checked)), key=lambda j: (abs((checked[j].due - g.day).days), j))
        lo, hi = _window(checked, k, grace_days, loading_grace_days)
        if not lo <= g.day <= hi:
            unplanned.append(g)
            continue
        old = chosen.get(k)
        if old is None or abs((g.day - checked[k].due).days) < abs((old.day - checked[k].due).days):
            if old is not None:
                unplanned.append(old)
            chosen[k] = g
        else:
            unplanned.append(g)

    past: list[PlanRow] = []
    upcoming: list[PlanRow] = []
    for k, p in enumerate(checked):
        allowance = grace_days if p.phase == "maintenance" else loading_grace_days
        match = chosen.get(k)
        if match is not None:
            late = (match.day - p.due).days
            row = PlanRow(p, "late" if late > allowance else "given", match, max(late, 0))
        elif p.due >= today:
            row = PlanRow(p, "due" if p.due == today else "upcoming")
        else:
            _, hi = _window(checked, k, grace_days, loading_grace_days)
            if p.due == since:  # the engine's own finding: maintenance overdue since then
                row = PlanRow(p, "overdue", late_days=(today - p.due).days)
            elif hi < today and k + 1 < len(checked) and checked[k + 1].due <= today:
                row = PlanRow(p, "missed")
            elif (today - p.due).days > allowance:
                row = PlanRow(p, "overdue", late_days=(today - p.due).days)
            else:
                row = PlanRow(p, "due")
        (past if p.due < today else upcoming).append(row)
    out = DosePlan(
        past=past,
        upcoming=upcoming[:UPCOMING_SHOWN],
        later=max(len(upcoming) - UPCOMING_SHOWN, 0),
        unplanned=sorted(unplanned, key=lambda g: g.day),
        overdue_since=treatment.overdue_since if treatment else None,
        daily_runs=_runs(daily),
    )
    _draw(out, given, today)
    return out


def _window(
    plan: Sequence[Planned], k: int, grace_days: int, loading_grace_days: int = 0
) -> tuple[dt.date, dt.date]:
    """The days whose doses count for planned dose ``k``: halfway to its neighbours (the
    gap on the other side where it has none; the allowance when it has neither)."""
    due = plan[k].due
    before = (due - plan[k - 1].due).days if k > 0 else None
    after = (plan[k + 1].due - due).days if k + 1 < len(plan) else None
    before = before if before is not None else after
    after = after if after is not None else before
    lo = (before - 1) // 2 if before is not None else grace_days
    hi = after // 2 if after is not None else grace_days
    allowance = grace_days if plan[k].phase == "maintenance" else loading_grace_days
    return due - dt.timedelta(days=lo), due + dt.timedelta(days=max(hi, allowance))


# Chart: the last year and the next four months.
CHART_PAST = dt.timedelta(days=365)
CHART_AHEAD = dt.timedelta(days=122)


def _draw(out: DosePlan, given: Sequence[Given], today: dt.date) -> None:
    start, end = today - CHART_PAST, today + CHART_AHEAD
    rows = [r for r in [*out.past, *out.upcoming] if start <= r.planned.due <= end]
    days = [r.planned.due for r in rows] + [g.day for g in given if start <= g.day <= end]
    if not days:
        return
    axis: TimeAxis = time_axis([*days, today], 64, out.width - 30)
    for r in rows:
        title = f"Planned {day_label(r.planned.due)} ({r.planned.phase}): {r.status}"
        if r.status == "late":
            title += f", {r.late_days} days late"
        out.marks.append(DoseMark(axis.x(r.planned.due), f"planned-{r.status}", title))
    for g in given:
        if start <= g.day <= end:
            title = f"Given {day_label(g.day)}: {g.what}, by {g.given_by}"
            out.marks.append(DoseMark(axis.x(g.day), "given", title))
    out.ticks = axis.ticks()
    out.today_x = axis.x(today)
