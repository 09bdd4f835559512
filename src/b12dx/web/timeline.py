"""What the timeline page shows for one patient, gathered from the store and the engine:
the current assessment (not saved until asked), lab trends, symptom ratings, doses given
against the plan, recovery milestones against what was observed, and the audit trail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment
from b12dx.store import audit, patients, snapshots
from b12dx.store.audit import Actor
from b12dx.store.history import age_years, nothing_recorded
from b12dx.store.tables import AuditEntry, Patient
from b12dx.web.charts import TimeAxis, day_label, lab_charts, symptom_chart
from b12dx.web.plan import Given, Planned, compare

AUDIT_SHOWN = 200


@dataclass(frozen=True)
class MilestoneRow:
    id: str
    name: str
    expected_by: dt.date
    text: str
    status: str  # pending / improved / not_improved / not_rated, or "" when not judged
    observed: list[str]  # "Pins and needles: moderate (3 Jan 2026) → mild (2 Apr 2026)"
    x: float


@dataclass(frozen=True)
class AuditRow:
    at: dt.datetime
    actor: str
    action: str
    entity: str
    detail: str


def _detail(detail: dict[str, Any]) -> str:
    parts = []
    for key, value in detail.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def _audit_rows(entries: Sequence[AuditEntry]) -> list[AuditRow]:
    return [
        AuditRow(e.at, e.actor, e.action, e.entity.replace("_", " "), _detail(e.detail))
        for e in reversed(entries[-AUDIT_SHOWN:])
    ]


def _milestones(a: Assessment, kb: Knowledge, today: dt.date) -> tuple[list[MilestoneRow], Any]:
    progress = {p.id: p for p in getattr(a, "recovery_progress", None) or []}
    if not a.recovery_milestones or a.treatment is None:
        return [], None
    days = [a.treatment.start, today, *(m.expected_by for m in a.recovery_milestones)]
    axis = TimeAxis(min(days), max(days), 20, 620)
    rows = []
    for m in a.recovery_milestones:
        p = progress.get(m.id)
        observed = []
        if p is not None:
            for x in p.symptoms:
                text = f"{x.name}: {x.baseline_rating} ({day_label(x.baseline_date)})"
                if x.latest_rating and x.latest_date:
                    text += f" → {x.latest_rating} ({day_label(x.latest_date)})"
                else:
                    text += " → not rated since"
                observed.append(text)
        status = p.status if p is not None else ("pending" if m.expected_by > today else "")
        rows.append(
            MilestoneRow(
                m.id, m.name, m.expected_by, m.text, status, observed, axis.x(m.expected_by)
            )
        )
    chart = {"ticks": axis.ticks(), "today_x": axis.x(today), "start_x": axis.x(axis.first)}
    return rows, chart


def _glance(p: Patient, plan: Any) -> dict[str, Any]:
    """The nurse's card: the next injection, the last given, loading and missed doses."""
    rows = [*plan.past, *plan.upcoming]
    loading = [r for r in rows if r.planned.phase == "loading"]
    given = [r for r in loading if r.status in ("given", "late")]
    last = max(p.doses, key=lambda d: (d.given_on, d.id), default=None)
    return {
        "show": bool(p.doses or rows),
        "next": plan.upcoming[0] if plan.upcoming else None,
        "last": last,
        "loading_given": len(given),
        "loading_planned": len(loading)
        + (
            plan.later
            if loading and plan.upcoming and plan.upcoming[-1].planned.phase == "loading"
            else 0
        ),
        "loading_done": bool(loading) and len(given) == len(loading) and not plan.later,
        "missed": plan.counts.get("missed", 0),
    }


def timeline_context(
    s: Session, kb: Knowledge, actor: Actor, pid: str, today: dt.date
) -> dict[str, Any]:
    p: Patient = patients.get(s, actor, pid)
    assessment: Assessment | None = None
    assess_errors: list[FieldError] = []
    record = None
    try:
        current = snapshots.current(kb, p, today)
        assessment, record = current.assessment, current.record
    except InputError as exc:
        assess_errors = exc.errors
    history = sorted(snapshots.history(s, p), key=lambda x: (x.as_of, x.id))
    saved = [
        (
            snap.as_of,
            [
                Planned(d.due_on, d.dose, d.phase, f"saved assessment of {snap.as_of}")
                for d in snapshots.planned(s, snap)
            ],
        )
        for snap in history
    ]
    given = [
        Given(d.id, d.given_on, f"{d.drug} {d.dose_mg:g} mg {d.route.upper()}", d.given_by)
        for d in p.doses
    ]
    profile = kb.profile(assessment.profile if assessment else p.profile)
    dose_plan = compare(
        saved,
        assessment.treatment if assessment else None,
        given,
        today,
        profile.maintenance_grace_days or 0,
        profile.loading_grace_days or 0,
    )
    charts = (
        lab_charts(kb, profile, record, p.labs, assessment.labs)
        if assessment is not None and record is not None
        else []
    )
    milestones, milestone_chart = _milestones(assessment, kb, today) if assessment else ([], None)
    charted = {c.test for c in charts}
    return {
        "patient": p,
        "summary": _glance(p, dose_plan),
        "age": age_years(p.birth_date, today),
        "today": today,
        "a": assessment,
        "nothing_recorded": nothing_recorded(p),
        "assess_errors": assess_errors,
        "history": list(reversed(history)),
        "lab_charts": charts,
        "other_labs": [lab for lab in p.labs if lab.test not in charted],
        "symptoms": symptom_chart(kb, p.ratings),
        "plan": dose_plan,
        "milestones": milestones,
        "milestone_chart": milestone_chart,
        "audit": _audit_rows(audit.entries(s, actor.practice_id, p.id)),
        "conditions": [
            kb.conditions[c.condition_id].name
            if c.condition_id in kb.conditions
            else c.condition_id
            for c in p.conditions
        ],
        "lab_tests": list(kb.labs.values()),
        "symptom_groups": kb.symptom_groups,
        "rated": list(dict.fromkeys(r.symptom_id for r in p.ratings)),
    }
