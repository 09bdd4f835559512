"""The next steps, in the order a clinician would act on them."""

from __future__ import annotations

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.engine.treatment import TreatmentDecision
from b12dx.engine.urgency import needs_monitoring
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DifferentialItem, NextStep

_ACID = ("proton_pump_inhibitor", "h2_blocker")
_LOWERING = (
    "metformin",
    *_ACID,
    "colchicine",
    "phenobarbital",
    "pregabalin",
    "primidone",
    "topiramate",
)


def plan(
    kb: Knowledge,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    st: StatusResult,
    t: TreatmentDecision,
    dx: list[DifferentialItem],
) -> list[NextStep]:
    steps: list[NextStep] = []

    def add(step_id: str, rule: str, text: str | None = None, **extra: object) -> None:
        if any(x.id == step_id for x in steps):
            return
        entry = kb.next_steps[step_id]
        body = text if text is not None else entry.text
        steps.append(
            explained(kb, NextStep, rule, text=body, sources=entry.sources, id=step_id, **extra)
        )

    if f.red_flags:
        # Rule emergency.whole_plan: nothing else is asked of the person now.
        add("emergency_assessment", "next.emergency_assessment")
        return steps
    if t.start_now:
        add("start_treatment_now", "next.start_treatment_now")
    if f.neurological and (st.deficient or t.start_now) and not f.doses:
        add("seek_specialist_advice", "next.seek_specialist_advice")
    if f.under_16 and f.neurological:
        # Whatever the risk record shows, as urgency.child_neurological decides.
        add(
            "seek_specialist_advice",
            "next.paediatric_specialist",
            "Urgent paediatric specialist assessment: adult thresholds and regimens are not "
            "validated under 16.",
        )

    testing_wanted = s.testing or s.level != "low" or st.status != "not_assessed"
    if testing_wanted and not f.doses:
        if f.nitrous_oxide and st.need_homocysteine:
            add("order_homocysteine", "next.nitrous_oxide_functional_test")
            add("order_mma", "next.nitrous_oxide_functional_test")
        if st.need_initial:
            if f.patient.pregnant:
                add("order_active_b12", "next.order_active_b12_pregnancy")
            else:
                add("order_total_b12", "next.order_initial_b12")
        if st.need_active_b12:
            add("order_active_b12", "next.order_active_b12_pregnancy")
        if st.need_mma:
            add("order_mma", "next.order_mma")
        if st.need_initial or st.deficient or st.status == "indeterminate":
            if labs.band("hemoglobin") is None or labs.band("mcv") is None:
                add("order_full_blood_count", "next.order_full_blood_count")
            if labs.band("serum_folate") is None:
                add("order_folate", "next.order_folate")
    if st.need_cause_workup:
        add("order_intrinsic_factor_antibodies", "next.order_intrinsic_factor_antibodies")
    if st.need_coeliac:
        add("order_coeliac_serology", "next.order_coeliac_serology")
    if t.treatment is not None and not t.start_now and not f.doses:
        add("start_treatment", "next.start_treatment")
    if f.nitrous_oxide:
        add("stop_nitrous_oxide", "next.stop_nitrous_oxide")

    lowering = [m for m in _LOWERING if m in f.medications]
    folic_alone = (
        "folic_acid" in f.medications
        and t.treatment is None
        and "b12_supplement" not in f.medications
    )
    if (lowering and (s.testing or st.deficient)) or folic_alone:
        names = [kb.medications[m].name.lower() for m in lowering]
        if folic_alone:
            names.append("folic acid (not without B12)")
        add(
            "review_medication",
            "next.review_medication",
            f"Review {', '.join(names)}: these lower B12 or hide its deficiency.",
        )
    if f.has_cause("dietary") or f.patient.age_years >= 50:
        add("dietary_changes", "next.dietary_changes")
    if t.treatment is not None and f.doses:
        if t.overdue_since is not None:
            add(
                "continue_maintenance",
                "next.continue_maintenance",
                f"Give the maintenance dose that was due on {t.overdue_since} now, then "
                "continue as scheduled; do not stop.",
                due=f.as_of,
            )
        else:
            add("continue_maintenance", "next.continue_maintenance")
    if t.review is not None and t.review >= f.as_of:
        add("schedule_review", "next.schedule_review", due=t.review)
    if needs_monitoring(f) and not st.deficient and not f.doses and not f.red_flags:
        add("periodic_monitoring", "next.periodic_monitoring")
    if f.neurological and st.status == "unlikely":
        add("refer_neurology", "next.refer_neurology_other_cause")
    if any(d.id == "multiple_sclerosis" and d.fit == "good" for d in dx):
        add("refer_neurology", "next.refer_neurology_ms")
    return steps
