"""Warnings (contract ids) and additional notes; when each is raised is decided here, the
words come from warnings.yaml."""

from __future__ import annotations

from b12dx.engine.explain import explained, merge_sources
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.engine.treatment import TreatmentDecision
from b12dx.engine.urgency import has_mood_symptom, treated_since
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import NextStep, Note, RecoveryProgress, WarningItem
from b12dx.models.knowledge import Profile


def raise_warnings(
    kb: Knowledge,
    profile: Profile,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    st: StatusResult,
    t: TreatmentDecision,
    steps: list[NextStep],
) -> list[WarningItem]:
    out: list[WarningItem] = []

    def warn(wid: str, text: str | None = None) -> None:
        w = kb.warnings[wid]
        out.append(
            explained(
                kb,
                WarningItem,
                f"warn.{wid}",
                text=text or w.text,
                sources=w.sources,
                id=wid,
                severity=w.severity,
            )
        )

    ordered = {x.id for x in steps}
    b12_band = labs.band("total_b12") or labs.band("active_b12")
    treated = bool(f.doses) or "b12_supplement" in f.medications

    if f.red_flags:
        # Rule emergency.whole_plan: no B12 warning ("do not delay B12 treatment", folic
        # acid, tests) stands beside the emergency.
        warn("red_flag_not_b12")
        if f.nitrous_oxide:
            # The emergency team is not to be reassured by a normal B12 in a nitrous oxide
            # user (nitrous oxide inactivates B12: MMA and homocysteine decide).
            warn("nitrous_oxide_normal_b12")
        return out
    if (
        f.neurological
        and st.status != "unlikely"
        and not t.under_way
        and not t.reload
        and (st.deficient or s.testing or s.high or st.status == "indeterminate")
    ):
        weeks = max((f.symptoms[x].duration_weeks or 0) for x in f.neuro_symptoms)
        extra = (
            f" Neurological symptoms have lasted about {weeks:g} weeks already."
            # Beyond triage's subacute window (13 weeks, fda-cyanocobalamin: 3 months).
            if weeks > kb.triage.tempo.subacute_within_weeks
            else ""
        )
        warn("irreversible_damage_risk", kb.warnings["irreversible_damage_risk"].text + extra)
    if f.folic_prophylaxis:
        pass  # rule note.folic_acid_pregnancy: continue it (notes below)
    elif "folic_acid" in f.medications and not treated:
        warn("folic_acid_masking")
    elif (st.deficient or s.level != "low") and (
        labs.band("serum_folate") == "low" or "folate_deficiency" in f.conditions
    ):
        warn(
            "folic_acid_masking",
            "Folate is low as well: replace B12 before or with folic "
            "acid, never folic acid alone. " + kb.warnings["folic_acid_masking"].text,
        )
    if f.nitrous_oxide:
        warn("nitrous_oxide_normal_b12")
    if (
        b12_band in ("normal", "indeterminate") and s.level != "low" and st.status != "unlikely"
    ) or (b12_band is None and s.high and not f.doses):
        text = kb.warnings["normal_b12_does_not_exclude"].text
        if labs.band("mma") is not None or f.doses:
            # MMA was measured, or B12 given (MMA no longer tells): no "measure MMA".
            text = text.split(" With clinical suspicion")[0]
        warn("normal_b12_does_not_exclude", text)
    fbc_normal = labs.band("hemoglobin") == "normal" or labs.band("mcv") == "normal"
    if fbc_normal and s.level != "low" and st.status != "unlikely":
        warn("no_anemia_does_not_exclude")
    if st.renal_impairment and (labs.band("mma") is not None or "order_mma" in ordered):
        warn("renal_mma_caveat")
    if f.patient.pregnant and (
        labs.band("total_b12") is not None or s.testing or "order_active_b12" in ordered
    ):
        warn("pregnancy_total_b12_caveat")
    hb = labs.si("hemoglobin")
    severe = profile.severe_anemia_below_g_l
    hb_reading = labs.usable.get("hemoglobin")
    # Hypokalaemia is watched in the first 48 hours of treatment (fda-cyanocobalamin): not
    # for a result taken before a course already under way.
    before_course = hb_reading is not None and treated_since(kb, f, t, hb_reading)
    if hb is not None and severe is not None and t.treatment is not None and not before_course:
        limit = severe.pregnant if f.patient.pregnant else severe.default
        if hb < limit:
            warn("hypokalemia_monitoring")
    if (
        labs.taken_after_treatment
        or f.doses
        or ("b12_supplement" in f.medications and labs.band("total_b12") is not None)
    ):
        warn("post_treatment_level_uninterpretable")
    if f.patient.ethnicity == "black_african_or_caribbean" and (b12_band is not None or s.testing):
        warn("ethnicity_reference_range")
    if "leber_disease" in f.conditions:
        warn("leber_disease_cyanocobalamin")
    if t.overdue_since is not None or (t.reload and not t.worse_on_course):
        # A lapsed course (loading or maintenance); on a re-load the lapse is why.
        phase = (t.lapsed_phase or "maintenance").capitalize()
        act = "Loading starts again today." if t.reload else "Give the dose now."
        warn(
            "maintenance_overdue",
            f"{phase} dose overdue: the course has lapsed. "
            + kb.warnings["maintenance_overdue"].text
            + f" {act}",
        )
    return out


def _recovery_behind(kb: Knowledge, behind: list[RecoveryProgress]) -> str:
    """Which milestones and symptoms are behind, then the review the rule asks for."""
    parts = []
    for p in behind:
        stuck = "; ".join(
            f"{x.name.lower()} {x.baseline_rating} on {x.baseline_date}, "
            f"{'still ' if x.latest_rating == x.baseline_rating else ''}"
            f"{x.latest_rating} on {x.latest_date}"
            for x in p.symptoms
            if x.status == "not_improved"
        )
        parts.append(f"{p.name} (expected by {p.expected_by}): {stuck}.")
    return (
        f"Recovery is behind the expected milestones. {' '.join(parts)} "
        + kb.rules["note.recovery_behind"].text
    )


def notes(
    kb: Knowledge,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    st: StatusResult,
    progress: list[RecoveryProgress],
) -> list[Note]:
    out: list[Note] = []

    def note(nid: str, text: str | None = None, sources: list[str] | None = None) -> None:
        out.append(explained(kb, Note, f"note.{nid}", text=text, sources=sources or (), id=nid))

    if f.under_16:
        note("under_16")
    if f.folic_prophylaxis:
        note("folic_acid_pregnancy")
    if f.swollen_painful_leg:
        note("swollen_leg")
    if has_mood_symptom(kb, f):
        # Worded for the person's age (triage.yaml age groups): a parent of a baby is not
        # given an adult crisis line.
        group = kb.triage.age_group(f.patient.age_years).id
        rule = {"infant": "note.mood_help_child", "child": "note.mood_help_child"}.get(
            group, "note.mood_help_young_person" if group == "adolescent" else "note.mood_help"
        )
        out.append(explained(kb, Note, rule, id="mood_help"))
    if f.patient.breastfeeding and (st.deficient or st.status == "indeterminate" or s.high):
        # Her breastfed baby's B12 is hers (clinical-reference §5): the baby is asked
        # about, and seen by a paediatrician when there is any sign.
        note("breastfed_baby")
    if st.deficient:
        note("nitrous_oxide_procedures")
    if s.high and st.status in ("indeterminate", "not_assessed") and labs.usable:
        note("discordant_results")
    if "discordant_mma" in st.notes:
        note("discordant_mma")
    ifa = labs.band("intrinsic_factor_antibody")
    if ifa == "negative":
        note("ifa_negative")
    if ifa == "positive":
        note("ifa_positive")
        if labs.band("total_b12") in ("normal", "indeterminate"):
            note("ifa_false_normal_b12")
    for med in f.short_acid_suppression:
        note(
            "acid_suppression_short",
            f"{kb.medications[med].name} recorded for less than 2 years: not counted as a "
            "risk factor (the association is with 2 years or more).",
        )
    if "diabetic_neuropathy" in f.conditions or (
        "metformin" in f.medications and f.neuro_groups & {"sensory"}
    ):
        note("metformin_neuropathy")
    # Rule note.recovery_behind: a milestone judged not improved is flagged for review.
    behind = [p for p in progress if p.status == "not_improved"]
    if behind:
        note(
            "recovery_behind",
            _recovery_behind(kb, behind),
            merge_sources(*(p.sources for p in behind)),
        )
    older = kb.risk_factors["older_age"]
    fifty = kb.diet.fortified_from_years
    if older.alternatives and fifty <= f.patient.age_years < (older.trigger.age_min or 60):
        note("food_bound_over_50")
    return out
