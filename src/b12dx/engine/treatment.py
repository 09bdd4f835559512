"""Choose the regimen by neurological involvement and cause, and turn it into a dated plan
(clinical-reference §6)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.engine.schedule import (
    SCHEDULE_MONTHS,
    add_months,
    lay_out,
    maintenance_interval,
    next_after,
)
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Dose, Treatment
from b12dx.models.knowledge import Profile, Regimen

# Routes of a dose given by injection (models.patient.Route); a course of them is an
# injection course whatever the cause would choose.
INJECTION_ROUTES = frozenset({"im", "sc", "iv"})

# Which cause decides the regimen when several are present: the one that needs the most.
_CAUSE_ORDER = ("malabsorption", "genetic", "autoimmune", "exposure", "medication", "dietary")
_DURATION_ORDER = ("lifelong", "while_cause_persists", "until_replete")


@dataclass(frozen=True)
class TreatmentDecision:
    treatment: Treatment | None
    regimen: Regimen | None
    review: dt.date | None
    overdue_since: dt.date | None  # maintenance due date that has passed (with grace)
    start_now: bool  # neurological: start without waiting for results


def _cause(f: Findings, labs: LabSummary) -> tuple[str, list[str]]:
    """The regimen cause key and the risk factors behind it."""
    if labs.band("intrinsic_factor_antibody") == "positive":
        return "malabsorption", ["intrinsic_factor_antibody_positive"]
    causes: dict[str, list[str]] = {}
    for m in f.risk_factors:
        causes.setdefault(m.factor.cause, []).append(m.factor.id)
    behind = [rf for cause in _CAUSE_ORDER for rf in causes.get(cause, [])]
    for cause in _CAUSE_ORDER:
        if cause in causes:
            return {"genetic": "malabsorption", "autoimmune": "unknown"}.get(cause, cause), behind
    return "unknown", behind


def _duration(f: Findings, labs: LabSummary, cause: str) -> str:
    durations = [
        m.factor.duration
        for m in f.risk_factors
        if m.factor.cause not in ("age", "physiological", "autoimmune")
    ]
    if labs.band("intrinsic_factor_antibody") == "positive":
        durations.append("lifelong")
    if cause == "unknown" or not durations:
        return "lifelong"  # no reversible cause identified: the regimens are for life
    return min(durations, key=_DURATION_ORDER.index)


def _should_treat(f: Findings, status: StatusResult, s: SuspicionResult) -> tuple[bool, bool]:
    """(treat, start_now)."""
    if f.doses:
        return True, False
    if status.deficient:
        return True, f.neurological and not f.red_flags
    suspected = f.neurological and s.high and status.status not in ("unlikely",)
    return (suspected and not f.red_flags), (suspected and not f.red_flags)


def _stays_neurological(kb: Knowledge, f: Findings) -> str:
    """Why a course keeps its neurological regimen when no nerve symptom is present now."""
    rated = ", ".join(
        f"{kb.symptoms[sid].name.lower()} {f.baselines[sid].rating} on {f.baselines[sid].date}"
        for sid in f.course_neuro_symptoms
    )
    return (
        f"The course began with neurological involvement ({rated}). No nerve symptom is "
        "present now, but the course stays a neurological one: its regimen and maintenance "
        "interval continue rather than switching to those for deficiency without nerve "
        "involvement. The improvement came with treatment and does not change how the "
        "course began; failing to maintain treatment brings symptoms back with "
        "irreversible spinal cord damage."
    )


def decide(
    kb: Knowledge,
    profile: Profile,
    f: Findings,
    labs: LabSummary,
    status: StatusResult,
    s: SuspicionResult,
) -> TreatmentDecision:
    # Rule emergency.whole_plan: a red flag sends the person to emergency care, and that
    # is the whole plan: no B12 regimen, schedule or review beside it (the team that sees
    # them checks B12, next_steps.yaml emergency_assessment).
    if f.red_flags:
        return TreatmentDecision(None, None, None, None, False)
    treat, start_now = _should_treat(f, status, s)
    if not treat or f.under_16:
        return TreatmentDecision(None, None, None, None, False)

    cause, behind = _cause(f, labs)
    # Neurological now, or at the start of the course under way (findings decides).
    neuro = f.neurological_course
    key = "neurological" if neuro else cause
    regimen = kb.regimens[profile.regimen_by_cause[key]]
    rule = "treatment.neurological_course" if neuro and not f.neurological else "treatment.regimen"
    if set(regimen.contraindicated_conditions) & f.conditions:
        fallback = profile.contraindication_fallback
        regimen = kb.regimens[fallback["neurological" if neuro else "other"]]
        rule = "treatment.contraindication_fallback"
    oral_choice = None
    injected = bool(f.doses) and f.doses[-1].route in INJECTION_ROUTES
    if injected and regimen.route not in INJECTION_ROUTES:
        # Injections are under way: the course is continued and dated as an injection
        # course (the profile's injection regimen without nerve involvement), so that a
        # 3-monthly injection is not called overdue by a daily oral schedule.
        oral_choice = regimen
        regimen = kb.regimens[profile.regimen_by_cause["malabsorption"]]
        rule = "treatment.injection_course"
    duration = _duration(f, labs, cause)

    under_way = bool(f.doses)
    start = f.first_dose if f.first_dose is not None else f.as_of
    months = (
        profile.review_after_months_pregnancy
        if f.patient.pregnant or f.patient.breastfeeding
        else profile.review_after_months
    )
    assert months is not None
    review = add_months(start, months)
    horizon = add_months(f.as_of if under_way else start, SCHEDULE_MONTHS)
    plan = lay_out(regimen, start, review, horizon)
    schedule = list(plan.doses)
    overdue_since: dt.date | None = None
    if under_way:
        assert f.last_dose is not None
        if f.as_of <= plan.loading_end and any(d.phase == "loading" for d in plan.doses):
            schedule = [d for d in plan.doses if d.date >= f.as_of]
        else:
            phase = maintenance_interval(regimen)
            due = next_after(f.last_dose, phase)
            grace = dt.timedelta(days=profile.maintenance_grace_days or 0)
            if due + grace < f.as_of:
                overdue_since = due
            day = max(due, f.as_of)
            schedule = []
            while day <= horizon:
                schedule.append(Dose(date=day, dose=regimen.dose, phase="maintenance"))
                day = next_after(day, phase)

    why = f"Chosen for {'neurological involvement' if neuro else cause.replace('_', ' ')}"
    if neuro and not f.neurological:
        why += " at the start of the course"
    if behind:
        why += f" ({', '.join(behind).replace('_', ' ')})"
    if oral_choice is not None:
        why = f"Continued as the injection course under way; cause: {why[len('Chosen for ') :]}"
    text = f"{regimen.text} {why}; duration: {duration.replace('_', ' ')}."
    if under_way:
        text += f" Course under way since {start}."
    if neuro and not f.neurological:
        text += " " + _stays_neurological(kb, f)
    if oral_choice is not None:
        text += (
            f" For this cause {oral_choice.name.lower()} ({oral_choice.dose} daily by mouth) "
            "is an option to discuss at review."
        )
    treatment = explained(
        kb,
        Treatment,
        rule,
        text=text,
        sources=regimen.sources,
        regimen=regimen.id,
        name=regimen.name,
        drug=regimen.drug,
        route=regimen.route,
        dose=regimen.dose,
        duration=duration,
        causes=behind,
        start=start,
        under_way=under_way,
        schedule=schedule,
        review_dates=[review] if review >= f.as_of else [],
        overdue_since=overdue_since,
    )
    return TreatmentDecision(treatment, regimen, review, overdue_since, start_now and not under_way)
