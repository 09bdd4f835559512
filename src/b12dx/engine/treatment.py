"""Choose the regimen by neurological involvement and cause, and turn it into a dated plan
(clinical-reference §6)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from b12dx.engine import course as courses
from b12dx.engine.course import Course
from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings, factor_name
from b12dx.engine.labs import LabSummary
from b12dx.engine.schedule import add_months, lay_out, lay_out_phases
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Treatment
from b12dx.models.knowledge import Profile, Regimen

__all__ = ["Presentation", "TreatmentDecision", "decide", "presentation"]

# Which cause decides the regimen when several are present: the one that needs the most.
_CAUSE_ORDER = ("malabsorption", "genetic", "autoimmune", "exposure", "medication", "dietary")
_DURATION_ORDER = ("lifelong", "while_cause_persists", "until_replete")


@dataclass(frozen=True)
class Presentation:
    """The regimen this presentation calls for, and the course judged against it."""

    key: str  # the regimen_by_cause key: neurological or the cause
    cause: str
    behind: list[str]  # the risk factors behind the cause
    regimen: Regimen
    rule: str
    course: Course
    review_months: int
    adequate: list[Regimen]  # the regimens a course given may follow


@dataclass(frozen=True)
class TreatmentDecision:
    treatment: Treatment | None
    regimen: Regimen | None
    review: dt.date | None
    overdue_since: dt.date | None  # the next dose's due date, passed beyond its allowance
    start_now: bool  # neurological: start without waiting for results
    under_way: bool = False  # a course adequate for the presentation is being given
    reload: bool = False  # lapsed, or new or worse nerve symptoms: loading starts again
    worse_on_course: bool = False  # the reload is for nerve symptoms on an up-to-date course
    lapsed_phase: str | None = None  # loading / maintenance, when overdue
    phase: str | None = None  # the phase of the next dose of a course under way


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


def _should_treat(
    f: Findings, status: StatusResult, s: SuspicionResult, c: Course
) -> tuple[bool, bool]:
    """(treat, start_now)."""
    if c.under_way:
        return True, False
    if any(m.factor.establishes_need for m in f.risk_factors):
        # Rule treatment.prophylaxis: B12 for life whatever the level (total gastrectomy).
        return True, f.neurological and not f.red_flags
    if status.deficient:
        return True, f.neurological and not f.red_flags
    suspected = f.neurological and s.high and status.status not in ("unlikely",)
    return (suspected and not f.red_flags), (suspected and not f.red_flags)


def presentation(kb: Knowledge, profile: Profile, f: Findings, labs: LabSummary) -> Presentation:
    """The regimen for this presentation (neurological now or at the start of the course,
    else the cause) and the doses given judged against the regimens adequate for it."""
    cause, behind = _cause(f, labs)
    # Neurological now, or at the start of the course under way: by the ratings
    # (findings), or, when none were made, by how the course was given (course.loaded_as).
    loaded_neuro = courses.loaded_as(
        kb,
        profile,
        kb.regimens[profile.regimen_by_cause["neurological"]],
        kb.regimens[profile.regimen_by_cause["unknown"]],  # the injections without nerves
        f.doses,
    )
    neuro = f.neurological_course or loaded_neuro
    key = "neurological" if neuro else cause
    regimen = kb.regimens[profile.regimen_by_cause[key]]
    rule = "treatment.neurological_course" if neuro and not f.neurological else "treatment.regimen"
    if set(regimen.contraindicated_conditions) & f.conditions:
        fallback = profile.contraindication_fallback
        regimen = kb.regimens[fallback["neurological" if neuro else "other"]]
        rule = "treatment.contraindication_fallback"
    months = (
        profile.review_after_months_pregnancy
        if f.patient.pregnant or f.patient.breastfeeding
        else profile.review_after_months
    )
    assert months is not None
    adequate = courses.adequate_regimens(kb, profile, key, f.conditions)
    if regimen not in adequate:
        adequate.insert(0, regimen)
    # The course follows the presentation's regimen when its last dose is one of it, else
    # the first adequate regimen its last dose fits (injections under way for a cause
    # whose regimen is oral, rule treatment.injection_course).
    followed = regimen
    last = next(
        (d for d in reversed(f.doses) if any(courses.fits(kb, d, r) for r in adequate)), None
    )
    if last is not None and not courses.fits(kb, last, regimen):
        followed = next(r for r in adequate if courses.fits(kb, last, r))
    c = courses.judge(kb, profile, followed, adequate, f.doses, f.as_of, months)
    # Nerve symptoms new or worse on a maintenance course given for the cause alone (not
    # begun with nerve involvement): the course is judged as it was given (a 3-monthly
    # course is not overdue at 2 months); the new plan re-loads (rule
    # treatment.reload_on_treatment). During loading, loading goes on as the nerves need.
    given_for_cause = kb.regimens[profile.regimen_by_cause[cause]]
    if (
        key == "neurological"
        and f.worsening_neuro
        and not f.course_neuro_symptoms
        and not loaded_neuro
        and last is not None
        and courses.fits(kb, last, given_for_cause)
    ):
        as_given = courses.judge(kb, profile, given_for_cause, adequate, f.doses, f.as_of, months)
        if as_given.at is not None and as_given.at.phase(given_for_cause).phase != "loading":
            c = as_given
    return Presentation(key, cause, behind, regimen, rule, c, months, adequate)


def _stays_neurological(kb: Knowledge, f: Findings) -> str:
    """Why a course keeps its neurological regimen when no nerve symptom is present now."""
    rated = ", ".join(
        f"{kb.symptoms[sid].name.lower()} {f.baselines[sid].rating} on {f.baselines[sid].date}"
        for sid in f.course_neuro_symptoms
    )
    how = rated or "given as the neurological regimen: alternate-day loading or 2-monthly doses"
    return (
        f"The course began with neurological involvement ({how}). No nerve symptom is "
        "present now, but the course stays a neurological one: its regimen and maintenance "
        "interval continue rather than switching to those for deficiency without nerve "
        "involvement. The improvement came with treatment and does not change how the "
        "course began; failing to maintain treatment brings symptoms back with "
        "irreversible spinal cord damage."
    )


_PROVISIONAL = "to be decided when deficiency and its cause are established (continue until then)"


def _duration_settled(f: Findings, status: StatusResult, labs: LabSummary) -> bool:
    """Rule treatment.duration_settled: a duration is stated only when deficiency is
    established with its cause (a confirmed or likely status, or a recorded diagnosis,
    with no cause work-up pending; or positive intrinsic factor antibodies) or the cause
    alone justifies B12 for life whatever the level (total gastrectomy, pernicious
    anaemia); otherwise it is decided at review."""
    if any(m.factor.establishes_need for m in f.risk_factors):
        return True
    if labs.band("intrinsic_factor_antibody") == "positive":
        return True
    # Deficiency established, and its cause known: while the cause work-up is pending the
    # duration waits for it (a medicine's "while it continues" may turn out lifelong).
    return status.deficient and not status.need_cause_workup and not status.need_coeliac


def _not_counted_text(kb: Knowledge, p: Presentation) -> str:
    """Why doses given are not counted as the course (rule treatment.adequate_course)."""
    given = "; ".join(courses.describe(d) for d in p.course.not_counted)
    for_what = (
        "neurological involvement"
        if p.key == "neurological"
        else f"a {p.cause.replace('_', ' ')} cause"
    )
    adequate = {r.id: r for r in [p.regimen, *p.adequate]}
    wanted = "; ".join(
        dict.fromkeys(f"{r.drug} {r.dose} {courses.route_name(r.route)}" for r in adequate.values())
    )
    return (
        f"Not counted as treatment: {given}. For {for_what} a course is {wanted} "
        f"({kb.rules['treatment.adequate_course'].text})"
    )


def decide(
    kb: Knowledge,
    profile: Profile,
    f: Findings,
    labs: LabSummary,
    status: StatusResult,
    s: SuspicionResult,
    p: Presentation,
) -> TreatmentDecision:
    # Rule emergency.whole_plan: a red flag sends the person to emergency care, and that
    # is the whole plan: no B12 regimen, schedule or review beside it (the team that sees
    # them checks B12, next_steps.yaml emergency_assessment).
    if f.red_flags:
        return TreatmentDecision(None, None, None, None, False)
    c = p.course
    treat, start_now = _should_treat(f, status, s, c)
    # Under 16 the paediatric team chooses and doses B12 (no adult regimen is proposed);
    # a course it has started is followed as it is given: its next dose, or that it is
    # overdue.
    if not treat or (f.under_16 and not c.under_way):
        return TreatmentDecision(None, None, None, None, False)

    neuro = p.key == "neurological"
    # Rule treatment.reload: a course that lapsed while nerve symptoms are back (present
    # and not known to be getting better, findings.returning_neuro) starts again with
    # loading on the neurological regimen (BNF: alternate days until no further
    # improvement), dated from today, as a new course.
    # Rule treatment.reload_on_treatment: a nerve symptom new or worsening on a course
    # that is up to date, past its loading, starts loading again the same way (BNF/SPC:
    # 1 mg on alternate days until no further improvement), with specialist advice.
    in_loading = (
        c.at is not None and c.regimen is not None and c.at.phase(c.regimen).phase == "loading"
    )
    lapsed = c.lapsed and bool(f.returning_neuro) and not f.under_16
    worse_on_course = (
        c.under_way
        and not lapsed
        and neuro
        and bool(f.worsening_neuro)
        and not in_loading
        and not f.under_16  # the paediatric team re-loads a child (child rule: urgent)
    )
    reload = lapsed or worse_on_course
    under_way = c.under_way and not reload
    regimen = c.regimen if under_way and c.regimen is not None else p.regimen
    rule = p.rule
    if reload:
        rule = "treatment.reload_on_treatment" if worse_on_course else "treatment.reload"
    elif under_way and regimen is not p.regimen:
        rule = "treatment.injection_course"
    elif not under_way and not status.deficient and not neuro:
        rule = "treatment.prophylaxis"  # _should_treat: the cause alone needs B12
    duration = _duration(f, labs, p.cause)
    settled = _duration_settled(f, status, labs)

    start = c.start if under_way and c.start is not None else f.as_of
    review = add_months(start, p.review_months)
    # Rule treatment.loading_to_review: loading runs to the review that judges it (the
    # profile's usual review); pregnancy's earlier review is a review, not its end.
    assert profile.review_after_months is not None
    judged = add_months(start, max(p.review_months, profile.review_after_months))
    horizon = add_months(f.as_of if under_way else start, kb.courses.schedule_months)
    if under_way:
        assert c.at is not None and c.review is not None
        review = c.review
        first = max(c.at.due, f.as_of)
        phases = courses.remaining_phases(regimen, c.at)
        plan = lay_out_phases(phases, regimen.dose, first, judged, horizon)
    else:
        plan = lay_out(regimen, start, judged, horizon)
    schedule = list(plan.doses)
    overdue_since = c.overdue_since if under_way else None

    cause = "a cause not yet identified" if p.cause == "unknown" else p.cause.replace("_", " ")
    why = f"Chosen for {'neurological involvement' if neuro else cause}"
    if neuro and not f.neurological:
        why += " at the start of the course"
    if p.behind:
        names = [
            factor_name(kb, kb.risk_factors[x], f.medications)
            if x in kb.risk_factors
            else x.replace("_", " ")
            for x in p.behind
        ]
        why += f" ({', '.join(n.lower() for n in names)})"
    if rule == "treatment.injection_course":
        why = f"Continued as the injection course under way; cause: {why[len('Chosen for ') :]}"
    shown = duration.replace("_", " ") if settled else _PROVISIONAL
    text = f"{regimen.text} {why}; duration: {shown}."
    if under_way:
        text += f" Course under way since {start}."
        given = {d.drug for d in c.counted} - {regimen.drug}
        if given:
            text += (
                f" It is being given as {', '.join(sorted(given))} by injection, which counts "
                f"as this course; {regimen.drug} is preferred (BNF): consider switching at "
                "review."
            )
        if overdue_since is not None:
            text += (
                f" The {c.lapsed_phase()} dose due on {overdue_since} has not been given: "
                "give it now and continue from there."
            )
    if worse_on_course:
        worse = ", ".join(kb.symptoms[x].clinical_name.lower() for x in f.worsening_neuro)
        text += (
            f" Nerve symptoms are new or worse on the course begun on {c.start}, which is up "
            f"to date ({worse}): loading starts again today, {f.as_of}, with specialist "
            "advice within days, and recovery is counted from this new course."
        )
    elif reload:
        assert c.overdue_since is not None
        text += (
            f" The course begun on {c.start} lapsed (the {c.lapsed_phase()} dose due on "
            f"{c.overdue_since} was not given) and nerve symptoms are present: loading "
            f"starts again today, {f.as_of}, and recovery is counted from this new course."
        )
    if c.not_counted:
        text += " " + _not_counted_text(kb, p)
    if neuro and not f.neurological:
        text += " " + _stays_neurological(kb, f)
    if rule == "treatment.injection_course":
        text += (
            f" For this cause {p.regimen.name.lower()} ({p.regimen.dose} daily by mouth) "
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
        duration_settled=settled,
        causes=p.behind,
        start=start,
        under_way=under_way,
        schedule=schedule,
        review_dates=[review] if review >= f.as_of else [],
        overdue_since=overdue_since,
        overdue_phase=c.lapsed_phase() if overdue_since is not None else None,
    )
    return TreatmentDecision(
        treatment,
        regimen,
        review,
        overdue_since,
        (start_now or reload) and not under_way,
        under_way=under_way,
        reload=reload,
        worse_on_course=worse_on_course,
        lapsed_phase=c.lapsed_phase(),
        phase=c.at.phase(regimen).phase if under_way and c.at is not None else None,
    )
