"""The next steps, in the order a clinician would act on them."""

from __future__ import annotations

from b12dx.engine.diet import absorption_problem, food_bound_age
from b12dx.engine.explain import explained, merge_sources
from b12dx.engine.findings import BULBAR, Findings
from b12dx.engine.labs import LabSummary
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.engine.treatment import TreatmentDecision
from b12dx.engine.triage import infant
from b12dx.engine.urgency import infant_anaemia, needs_monitoring, severe_results
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DifferentialItem, NextStep, NextStepId

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


# Rules whose step stands beside another step of the same id (a distinct referral).
_OWN_STEP = frozenset(
    {
        "next.suspected_cancer_referral",
        "next.worsening_on_treatment",
        "next.severe_anaemia",
        "next.elsewhere",
        "next.memory_service",
    }
)

# The steps that order a B12 test: no supplement before the blood is taken.
B12_TESTS = frozenset({"order_total_b12", "order_active_b12", "order_mma", "order_homocysteine"})

# The tests a pre-treatment sample holds, in the order named (next_steps.yaml ids).
_SAMPLE = {
    "order_total_b12": "B12",
    "order_active_b12": "active B12",
    "order_mma": "MMA",
    "order_homocysteine": "homocysteine",
    "order_full_blood_count": "full blood count",
    "order_folate": "folate",
}


def _pre_treatment_sample(
    kb: Knowledge, steps: list[NextStep], st: StatusResult, labs: LabSummary, drug: str
) -> None:
    """Rule next.pre_treatment_sample: when treatment starts before deficiency is
    confirmed, the blood taken before the first dose holds MMA and homocysteine as well,
    so that a result from it can settle the status (after the first dose they fall and
    can no longer tell)."""
    ordered = {x.id for x in steps}
    wanted: list[str] = [x for x in _SAMPLE if x in ordered]
    if not st.deficient:
        pairs: tuple[tuple[str, NextStepId], ...] = (
            ("mma", "order_mma"),
            ("homocysteine", "order_homocysteine"),
        )
        for test, step in pairs:
            if labs.band(test) is None and step not in wanted:
                wanted.append(step)
                entry = kb.next_steps[step]
                steps.append(
                    explained(
                        kb,
                        NextStep,
                        "next.pre_treatment_sample",
                        text=f"{entry.text} In the sample taken before the first dose.",
                        sources=entry.sources,
                        id=step,
                    )
                )
    start = next(i for i, x in enumerate(steps) if x.id == "start_treatment_now")
    if not wanted:
        text = f"Start {drug} now (neurological involvement)."
    else:
        names = ", ".join(_SAMPLE[x] for x in sorted(wanted, key=list(_SAMPLE).index))
        text = (
            f"Take blood for {names} before the first dose, then start {drug} now without "
            "waiting for the results (neurological involvement)."
        )
    steps[start] = steps[start].model_copy(update={"text": text})


def _emergency_text(kb: Knowledge, f: Findings, st: StatusResult) -> str:
    """The emergency step: where to go, what is not a B12 question, and never a
    contradiction of what the record shows (a deficiency already confirmed)."""
    parts = [a.elsewhere.text for a in f.red_flags if a.elsewhere is not None]
    if st.deficient:
        parts.append(kb.rules["next.emergency_with_deficiency"].text)
    else:
        parts.append(kb.next_steps["emergency_assessment"].text)
    return " ".join(dict.fromkeys(parts))


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

    def add(
        step_id: str,
        rule: str,
        text: str | None = None,
        sources: list[str] | None = None,
        **extra: object,
    ) -> None:
        # One step per id, except a referral made by its own rule (the suspected-cancer
        # referral beside same-day haematology advice: both are specialist advice).
        if any(
            x.id == step_id
            and (x.rule == rule or (rule not in _OWN_STEP and x.rule not in _OWN_STEP))
            for x in steps
        ):
            return
        entry = kb.next_steps[step_id]
        body = text if text is not None else entry.text
        cited = sources if sources is not None else entry.sources
        steps.append(explained(kb, NextStep, rule, text=body, sources=cited, id=step_id, **extra))

    if f.red_flags:
        # Rule emergency.whole_plan: nothing else is asked of the person now, except to
        # stop what is harming them (nitrous oxide inactivates B12 whatever the cause).
        add("emergency_assessment", "next.emergency_assessment", _emergency_text(kb, f, st))
        if f.nitrous_oxide:
            add("stop_nitrous_oxide", "next.stop_nitrous_oxide")
        return steps
    for alarm in f.elsewhere:
        # Rule next.elsewhere: what b12dx does not assess goes where it belongs today.
        assert alarm.elsewhere is not None
        add(alarm.elsewhere.step, "next.elsewhere", alarm.elsewhere.text)
    if t.reload:
        assert t.treatment is not None
        add(
            "start_treatment_now",
            "next.reload",
            f"Restart loading today: {t.treatment.text.split('. ')[0]}. "
            + (
                "Nerve symptoms are new or worse on a course that is up to date"
                if t.worse_on_course
                else "The course lapsed and nerve symptoms are present"
            )
            + "; B12 levels after treatment are uninterpretable, so no blood is taken for "
            "B12 first.",
        )
    elif t.start_now:
        add("start_treatment_now", "next.start_treatment_now")
    if f.neurological and (st.deficient or t.start_now) and not t.under_way:
        add("seek_specialist_advice", "next.seek_specialist_advice")
    if (t.under_way or t.worse_on_course) and f.worsening_neuro and t.overdue_since is None:
        add(
            "seek_specialist_advice",
            "next.worsening_on_treatment",
            "Nerve symptoms are worsening despite treatment that is up to date: seek "
            "specialist advice (haematology or neurology) and reconsider the diagnosis; "
            "the dose, frequency or route may need adjusting.",
        )
    severe = severe_results(kb, f, labs, t)
    if severe:
        add(
            "seek_specialist_advice",
            "next.severe_anaemia",
            f"Same-day assessment of {'; '.join(severe)} "
            + (
                "(paediatric team, or admission if unwell)."
                if f.under_16
                else "(haematology advice, or admission if unwell), alongside the B12 plan."
            ),
        )
    if f.cancer_pathway:
        add(
            "seek_specialist_advice",
            "next.suspected_cancer_referral",
            kb.rules["next.suspected_cancer_referral"].text,
        )
    paediatric_need = (
        f.neurological
        or st.deficient
        or st.status == "indeterminate"
        or bool(severe)
        or any(a.rule == "triage.infant_signs" for a in f.alarms)
        or infant_anaemia(kb, f, labs)
    )
    if f.under_16 and paediatric_need:
        # Whatever the risk record shows, as urgency.child_neurological decides; a child's
        # deficiency is dosed by the paediatric team (adult regimens not validated).
        given = (
            f" B12 doses are recorded (the last on {f.last_dose}): the paediatric team "
            "reviews the course and any dose now due."
            if f.doses
            else ""
        )
        add(
            "seek_specialist_advice",
            "next.paediatric_specialist",
            "Urgent paediatric specialist assessment: adult thresholds and regimens are not "
            "validated under 16, so the paediatric team confirms the deficiency and its cause "
            "(in a breastfed baby, the mother's B12 too), decides the dose and starts it "
            "without delay." + given,
        )

    # An abnormal result that is out of date (rule lab.out_of_date) still asks for a fresh
    # test: it was never followed up, and it does not decide today's symptoms.
    stale_abnormal = any(x.band not in ("normal", None) for x in labs.out_of_date)
    testing_wanted = s.testing or s.level != "low" or st.status != "not_assessed" or stale_abnormal
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
    if t.start_now and not t.reload:
        assert t.treatment is not None
        _pre_treatment_sample(kb, steps, st, labs, t.treatment.drug)
    if st.need_cause_workup:
        add("order_intrinsic_factor_antibodies", "next.order_intrinsic_factor_antibodies")
    if st.need_coeliac:
        add("order_coeliac_serology", "next.order_coeliac_serology")
    if t.treatment is not None and not t.start_now and not t.under_way:
        if "b12_supplement" in f.medications and not f.doses:
            add(
                "start_treatment",
                "next.start_treatment",
                "B12 is on the medicines list but no dose given is recorded: confirm when "
                "the last dose was given. Given within its interval, continue it and record "
                "the doses; not given, or not known, start B12 as set out in the treatment "
                "plan.",
            )
        elif "b12_deficiency" in f.conditions and not f.doses:
            add(
                "start_treatment",
                "next.start_treatment",
                "Ask first whether B12 is already being given elsewhere (a diagnosis is "
                "recorded but no dose); if not, start B12 replacement as set out in the "
                "treatment plan.",
            )
        else:
            add("start_treatment", "next.start_treatment")
    if f.nitrous_oxide:
        add("stop_nitrous_oxide", "next.stop_nitrous_oxide")

    lowering = [m for m in _LOWERING if m in f.medications]
    # Folic acid without B12 hides deficiency; folic acid in pregnancy prevents neural
    # tube defects and is never put up for review (note.folic_acid_pregnancy).
    folic_alone = (
        "folic_acid" in f.medications
        and not f.folic_prophylaxis
        and t.treatment is None
        and "b12_supplement" not in f.medications
    )
    if (lowering and (s.testing or st.deficient)) or folic_alone:
        parts = []
        if lowering and (s.testing or st.deficient):
            # Each medicine the person takes, with what its review says: metformin
            # continues (MHRA 2022), an antiepileptic is never stopped for B12.
            for m in lowering:
                med = kb.medications[m]
                if t.treatment is not None:
                    # With B12 treatment planned or under way, no periodic B12 checks: the
                    # response is judged by symptoms (post-treatment levels do not tell).
                    parts.append(
                        f"{med.name}: "
                        + (
                            med.review_treated
                            or "continue it as prescribed; the B12 treatment replaces what "
                            "it lowers (judge the response by symptoms, not B12 levels)."
                        )
                    )
                else:
                    parts.append(f"{med.name}: {med.review}")
        if folic_alone:
            parts.append(
                "Folic acid: do not give it without B12 while B12 may be low (it can correct "
                "the anaemia and hide the deficiency); test B12 and treat it alongside."
            )
        add(
            "review_medication",
            "next.review_medication",
            " ".join(parts),
            sources=merge_sources(
                kb.next_steps["review_medication"].sources,
                *(kb.medications[m].review_sources for m in lowering),
            ),
        )
    # Rule next.dietary_changes: never diet first where absorption is the problem or a
    # dose is overdue, and no supplement before the blood test has been taken.
    absorption = absorption_problem(f, labs)
    lapsed = t.overdue_since is not None or t.reload
    baby = infant(kb, f.patient)  # B12 from milk: no food advice (diet)
    if (f.has_cause("dietary") or food_bound_age(kb, f.patient)) and not (
        absorption or lapsed or baby
    ):
        if {x.id for x in steps} & B12_TESTS:
            add(
                "dietary_changes",
                "next.dietary_changes_after_test",
                "Increase B12 intake from food and fortified foods; start any B12 "
                "supplement only after the blood for the test has been taken.",
            )
        else:
            add("dietary_changes", "next.dietary_changes")
    if t.treatment is not None and t.under_way:
        if t.overdue_since is not None:
            add(
                "continue_maintenance",
                "next.continue_maintenance",
                f"Give the {t.lapsed_phase or 'maintenance'} dose that was due on "
                f"{t.overdue_since} now, then continue as scheduled; do not stop.",
                due=f.as_of,
            )
        elif t.phase == "loading":
            add(
                "continue_maintenance",
                "next.continue_maintenance",
                "Continue the loading doses as scheduled, then maintenance; do not stop.",
            )
        else:
            add("continue_maintenance", "next.continue_maintenance")
    if t.review is not None and t.review >= f.as_of:
        add("schedule_review", "next.schedule_review", due=t.review)
    if (
        needs_monitoring(f)
        and not st.deficient
        and t.treatment is None
        and not f.doses
        and not f.red_flags
    ):
        add("periodic_monitoring", "next.periodic_monitoring")
    if f.symptoms.keys() >= BULBAR:
        add("refer_neurology", "next.bulbar_symptoms", kb.rules["next.bulbar_symptoms"].text)
    if f.neurological and st.status == "unlikely" and not f.specific_neurological:
        # Rule next.memory_service: memory or thinking alone, B12 not the cause (NG97).
        add("seek_specialist_advice", "next.memory_service", kb.rules["next.memory_service"].text)
    elif f.neurological and st.status == "unlikely":
        add("refer_neurology", "next.refer_neurology_other_cause")
    if any(d.id == "multiple_sclerosis" and d.fit == "good" for d in dx):
        add("refer_neurology", "next.refer_neurology_ms")
    return steps
