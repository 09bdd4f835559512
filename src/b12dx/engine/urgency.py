"""How soon the person needs care (clinical-reference §5). Red flags always win: a person
with one is sent to emergency care and never reassured."""

from __future__ import annotations

from b12dx.engine import triage
from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabReading, LabSummary, result_text
from b12dx.engine.schedule import add_months
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.engine.treatment import TreatmentDecision
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Reason


def has_mood_symptom(kb: Knowledge, f: Findings) -> bool:
    """Low mood, anxiety or exhaustion is recorded (symptoms.yaml mood; rules
    urgency.mood, note.mood_help): never a self-care answer."""
    return any(kb.symptoms[x].mood for x in f.symptoms)


# Risk factors that call for periodic checks even without symptoms.
MONITORED_CAUSES = ("medication", "malabsorption", "genetic")


def needs_monitoring(f: Findings) -> bool:
    return f.has_cause(*MONITORED_CAUSES) or (
        (f.patient.pregnant or f.patient.breastfeeding) and f.has_cause("dietary")
    )


Level = tuple[str, list[Reason]]


def _level(kb: Knowledge, name: str, rule: str, text: str | None = None) -> Level:
    """Urgency ``name`` with its one reason: the rule's text (or ``text``) and what the
    level means."""
    meaning = kb.urgency[name].text
    body = text if text is not None else kb.rules[rule].text
    return name, [explained(kb, Reason, rule, text=f"{body} ({meaning})")]


def decide(
    kb: Knowledge,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    st: StatusResult,
    t: TreatmentDecision,
) -> Level:
    """The urgency shown: never calmer than the presentation demands (how soon this person
    must be seen, whatever the cause) nor than the likelihood of B12 deficiency does."""

    if f.red_flags:
        names = "; ".join(r.name[:1].lower() + r.name[1:] for r in f.red_flags)
        return _level(
            kb, "emergency", "urgency.red_flag", f"Red flags that point away from B12: {names}."
        )
    candidates = [
        *_by_triage(kb, f, labs),
        *_by_presentation(kb, f, labs, t),
        _by_likelihood(kb, f, labs, s, st, t),
    ]
    # The most urgent wins; on a tie triage's reason is given (it is listed first): the B12
    # reasoning never lowers what triage decided.
    return min(candidates, key=lambda c: kb.urgency[c[0]].order)


def _by_triage(kb: Knowledge, f: Findings, labs: LabSummary) -> list[Level]:
    """The triage alarms below an emergency (engine/triage.py), and an infant's anaemia."""
    out = [
        _level(
            kb,
            a.level,
            a.rule,
            f"{kb.rules[a.rule].text} Found: {a.name}."
            + (f" {a.elsewhere.text}" if a.elsewhere is not None else ""),
        )
        for a in f.alarms
        if a.level != "emergency"
    ]
    if infant_anaemia(kb, f, labs):
        out.append(_level(kb, kb.triage.infant_signs, "triage.infant_signs", None))
    return out


def infant_anaemia(kb: Knowledge, f: Findings, labs: LabSummary) -> bool:
    """Rule triage.infant_signs read with the results: a baby's or young child's low
    haemoglobin."""
    return triage.young_child(kb, f.patient) and labs.band("hemoglobin") == "low"


def _severe(kb: Knowledge, f: Findings, test_id: str, reading: LabReading) -> str | None:
    """Why a result needs the person seen the same day (rule urgency.severe_result): below
    its test's same-day value, or abnormal with one of its symptoms; None otherwise."""
    test = kb.labs[test_id]
    if reading.si is None or isinstance(reading.item.value, str):
        return None
    shown = result_text(test, reading.item.value, reading.item.unit or "", reading.si)
    if test.same_day_below_si is not None and reading.si < test.same_day_below_si:
        return f"{shown} is below {test.same_day_below_si:g} {test.si_unit}"
    with_symptoms = [x for x in test.same_day_with_symptoms if x in f.symptoms]
    if reading.item.band not in ("normal", None) and with_symptoms:
        names = ", ".join(kb.symptoms[x].clinical_name.lower() for x in with_symptoms)
        return f"{shown} ({reading.item.band}) with {names}"
    return None


def treated_since(kb: Knowledge, f: Findings, t: TreatmentDecision, reading: LabReading) -> bool:
    """Whether an adequate course under way (doses recorded as given, judged against the
    regimens for the presentation) began after this result was taken, and more than
    triage.yaml's severe_result_watch_days ago: it is treating what the result showed, so
    the result no longer shows today's state (a repeat does). In the course's first days
    the result still counts (hypokalaemia is watched in the first 48 hours)."""
    start = t.treatment.start if t.under_way and t.treatment is not None else None
    taken = reading.item.date
    watch = kb.triage.severe_result_watch_days
    return (
        start is not None and taken is not None and taken < start and (f.as_of - start).days > watch
    )


def severe_results(kb: Knowledge, f: Findings, labs: LabSummary, t: TreatmentDecision) -> list[str]:
    """Each result that needs the person seen the same day, with why (not one taken
    before an adequate course under way for more than its first days)."""
    out = []
    for test_id, reading in labs.usable.items():
        if treated_since(kb, f, t, reading):
            continue
        why = _severe(kb, f, test_id, reading)
        if why is not None:
            out.append(why)
    return out


def _by_presentation(
    kb: Knowledge, f: Findings, labs: LabSummary, t: TreatmentDecision
) -> list[Level]:
    """How soon the presentation itself needs the person seen (rules urgency.*)."""
    out: list[Level] = []
    nerve_sign = f.neurological or any(
        triage.nerve_deficit(kb, x) for x in f.symptoms if x not in f.explained_by_strain
    )
    if f.under_16 and nerve_sign:
        # Seizures, developmental delay or regression, or any nerve sign in a child: a
        # breastfed infant's risk is the mother's B12, which the record cannot show.
        out.append(_level(kb, "urgent", "urgency.child_neurological"))
    for why in severe_results(kb, f, labs, t):
        out.append(_level(kb, "urgent", "urgency.severe_result", f"{why}: seen the same day."))
    for test_id, reading in labs.usable.items():
        test = kb.labs[test_id]
        if reading.si is None or isinstance(reading.item.value, str):
            continue  # a qualitative result has no value to weigh here
        if _severe(kb, f, test_id, reading) is not None:
            continue
        if reading.item.band in test.soon_bands:
            shown = result_text(test, reading.item.value, reading.item.unit or "", reading.si)
            why = f"{shown} ({reading.item.band})"
            out.append(_level(kb, "soon", "urgency.abnormal_result", f"{why}: investigated soon."))
    if f.cancer_pathway:
        out.append(_level(kb, "soon", "urgency.suspected_cancer_referral"))
    if f.swollen_painful_leg:
        out.append(_level(kb, "urgent", "urgency.swollen_leg"))
    if f.neurological and (not t.under_way or f.worsening_neuro):
        out.append(_level(kb, "soon", "urgency.neurological_symptoms"))
    if has_mood_symptom(kb, f):
        out.append(_level(kb, "routine", "urgency.mood"))
    return out


def _worse(kb: Knowledge, f: Findings, name: str, then: str) -> Level:
    """Rule urgency.worsening_on_treatment: nerve symptoms new or worse on a course that is
    up to date, named, and what follows."""
    names = ", ".join(kb.symptoms[x].clinical_name.lower() for x in f.worsening_neuro)
    return _level(
        kb,
        name,
        "urgency.worsening_on_treatment",
        f"New or worsening nerve symptoms despite treatment that is up to date ({names}): {then}.",
    )


def _by_likelihood(
    kb: Knowledge,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    st: StatusResult,
    t: TreatmentDecision,
) -> Level:
    """How soon the B12 question needs answering: the likelihood and the course."""
    if t.worse_on_course:
        return _worse(
            kb, f, "urgent", "loading restarts today and specialist advice is sought within days"
        )
    if t.reload:
        return _level(kb, "urgent", "urgency.course_lapsed_neurological")
    if t.overdue_since is not None:
        phase = t.lapsed_phase or "maintenance"
        return _level(
            kb,
            "soon",
            "urgency.maintenance_overdue",
            f"The {phase} dose due on {t.overdue_since} has not been recorded: give it soon; "
            "symptoms return when treatment lapses.",
        )
    if t.under_way and f.worsening_neuro:  # during loading: loading is already the answer
        return _worse(kb, f, "soon", "specialist advice and a reconsidered diagnosis are needed")
    if t.under_way:
        return _level(kb, "routine", "urgency.on_treatment")
    if t.treatment is not None and t.treatment.rule == "treatment.prophylaxis":
        # B12 on the medicines list with no dose recorded: it may well be given; the
        # record cannot say when the last was (a repeat prescription, not each dose).
        if "b12_supplement" in f.medications:
            return _level(kb, "soon", "urgency.prescribed_not_recorded")
        return _level(kb, "soon", "urgency.prophylaxis")
    if f.neurological and st.deficient:
        return _level(kb, "urgent", "urgency.neurological_deficiency")
    if f.neurological and s.high and st.status != "unlikely":
        return _level(kb, "urgent", "urgency.neurological_suspected")
    if st.deficient:
        return _level(kb, "soon", "urgency.deficiency_without_neurological")
    if st.status == "indeterminate":
        return _level(kb, "soon", "urgency.indeterminate")
    if s.testing and st.status != "unlikely":
        return _level(kb, "soon", "urgency.testing_indicated")
    if st.status == "unlikely" and f.b12_symptoms:
        return _level(kb, "routine", "urgency.symptoms_other_cause")
    if s.level != "low" and f.b12_symptoms:
        return _level(kb, "routine", "urgency.symptoms_review")
    if needs_monitoring(f):
        return _level(kb, "routine", "urgency.monitoring")
    # Rule triage.self_care: self care needs something positive to support it.
    if f.strain_pattern:
        return _level(kb, "self_care", "urgency.strain_self_care")
    if not f.symptoms and _recent_normal_b12(kb, f, labs):
        return _level(kb, "self_care", "urgency.normal_result_self_care")
    if f.symptoms:
        return _level(kb, "routine", "urgency.symptoms_not_b12")
    return _level(kb, "routine", "urgency.not_enough")


def _recent_normal_b12(kb: Knowledge, f: Findings, labs: LabSummary) -> bool:
    """A normal total or active B12 that is not out of date (its test's
    out_of_date_months, labs.yaml: the window rule lab.out_of_date uses)."""
    for test in ("total_b12", "active_b12"):
        reading = labs.usable.get(test)
        months = kb.labs[test].out_of_date_months
        if reading is None or reading.item.band != "normal" or reading.item.date is None:
            continue
        if months is None or reading.item.date >= add_months(f.as_of, -months):
            return True
    return False
