"""Where the patient stands in the diagnostic algorithm (seed-leg-weakness with
nice-ng239, clinical-reference §4) and the deficiency status it gives."""

from __future__ import annotations

from dataclasses import dataclass, field

from b12dx.engine.course import Course
from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary, apply_cutoffs, band_rule, describe_band
from b12dx.engine.suspicion import SuspicionResult
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import DiagnosticPathway, PathwayStep, Reason
from b12dx.models.knowledge import BandRule, Profile

_RANK = {"deficient": 2, "indeterminate": 1, "normal": 0}


@dataclass
class StatusResult:
    status: str
    reasons: list[Reason]
    step: str
    # what the algorithm asks for next
    need_initial: bool = False
    need_active_b12: bool = False
    need_mma: bool = False
    need_homocysteine: bool = False
    need_cause_workup: bool = False
    need_coeliac: bool = False
    renal_impairment: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def deficient(self) -> bool:
        return self.status in ("confirmed", "likely")


def _renal_rule(profile: Profile, f: Findings) -> BandRule:
    # The profile's eGFR band "low" is where MMA rises from the kidneys alone (below 60 by
    # default, profiles.yaml): the renal caveat follows it, not a number of its own.
    return band_rule(profile, "egfr", f.patient, None)


def renal_impairment(profile: Profile, f: Findings, labs: LabSummary) -> bool:
    """An eGFR result in the profile's low band, else chronic kidney disease with no eGFR
    or one in that band."""
    band = labs.band("egfr")
    if band is not None:
        return band == "low"
    rule = _renal_rule(profile, f)
    return any(
        c.id == "chronic_kidney_disease"
        and (c.egfr is None or apply_cutoffs(rule, c.egfr) == "low")
        for c in f.patient.conditions
    )


def _b12_marker(f: Findings, labs: LabSummary) -> str | None:
    """The worse of total and active B12 (both count as the first-line test); in
    pregnancy, active B12 alone when it was measured, since total B12 falls in pregnancy
    (nice-ng239)."""
    active = labs.band("active_b12")
    if f.patient.pregnant and active is not None:
        return active
    bands = [b for b in (labs.band("total_b12"), active) if b is not None]
    return max(bands, key=_RANK.__getitem__) if bands else None


def decide(
    kb: Knowledge,
    profile: Profile,
    f: Findings,
    labs: LabSummary,
    s: SuspicionResult,
    course: Course,
) -> StatusResult:
    r: list[Reason] = []

    def reason(rule: str, text: str | None = None) -> None:
        r.append(explained(kb, Reason, rule, text=text))

    b12 = _b12_marker(f, labs)
    mma = labs.band("mma")
    hcy = labs.band("homocysteine")
    folate_low = labs.band("serum_folate") == "low" or "folate_deficiency" in f.conditions
    renal = renal_impairment(profile, f, labs)
    pregnant_total_only = (
        f.patient.pregnant
        and labs.band("total_b12") == "deficient"
        and labs.band("active_b12") is None
    )
    out = StatusResult("not_assessed", r, "initial_test", renal_impairment=renal)

    if mma == "elevated" and b12 != "deficient":
        if renal:
            out.status = "likely"
            reason("status.mma_elevated_renal")
        else:
            out.status = "confirmed"
            if labs.si("egfr") is None and "chronic_kidney_disease" not in f.conditions:
                # An MMA-based status holds only with normal kidney function: say so when
                # no eGFR is on record (an eGFR in the low band raises MMA by itself).
                low = describe_band(_renal_rule(profile, f), "low", kb.labs["egfr"].units[0].unit)
                reason(
                    "status.mma_elevated",
                    kb.rules["status.mma_elevated"].text
                    + " This holds only if kidney function is normal: no eGFR is recorded"
                    f" (an eGFR {low} raises MMA by itself); check it.",
                )
            else:
                reason("status.mma_elevated")
        out.step = "functional_test"
    elif b12 == "deficient":
        if pregnant_total_only:
            out.status, out.need_active_b12 = "likely", True
            reason("status.pregnancy_total_b12")
        else:
            out.status = "confirmed"
            reason("status.b12_deficient")
        out.step = "interpret_b12"
        if mma == "normal":
            out.notes.append("discordant_mma")
    elif mma == "normal":
        out.status, out.step = "unlikely", "functional_test"
        reason("status.mma_normal")
    elif b12 == "indeterminate":
        out.step = "functional_test"
        if hcy == "elevated" and (not folate_low or f.nitrous_oxide):
            out.status, out.need_mma = "likely", True
            reason("status.indeterminate_homocysteine")
        else:
            out.status, out.need_mma = "indeterminate", True
            reason("status.b12_indeterminate")
    elif b12 == "normal":
        if f.nitrous_oxide and mma is None:
            out.step = "functional_test"
            if hcy == "elevated":
                out.status = "likely"
                reason("status.nitrous_oxide_homocysteine")
            elif hcy == "normal":
                out.status = "unlikely"
                reason("status.functional_normal")
            else:
                out.status, out.need_homocysteine, out.need_mma = "indeterminate", True, True
                reason("status.nitrous_oxide_normal_b12")
        elif s.high:
            out.step = "functional_test"
            if hcy == "elevated" and not folate_low:
                out.status, out.need_mma = "likely", True
                reason("status.normal_b12_homocysteine")
            else:
                out.status, out.need_mma = "indeterminate", True
                reason("status.normal_b12_high_suspicion")
        elif f.neurological and f.patient.ethnicity == "black_african_or_caribbean":
            # NG239 1.3.13: reference ranges may be higher in people of Black ethnicity,
            # who may need treatment above the usual cut-offs: with nerve symptoms a
            # "normal" level does not make deficiency unlikely; MMA decides.
            out.status, out.need_mma, out.step = "indeterminate", True, "functional_test"
            reason("status.normal_b12_ethnicity")
        else:
            out.status, out.step = "unlikely", "interpret_b12"
            reason("status.b12_normal")
    elif hcy is not None:
        out.step = "initial_test"
        if hcy == "elevated" and f.nitrous_oxide:
            out.status = "likely"
            reason("status.nitrous_oxide_homocysteine")
        elif hcy == "normal" and f.nitrous_oxide:
            out.status = "unlikely"
            reason("status.functional_normal")
        else:
            out.status, out.need_initial = "indeterminate", True
            reason("status.homocysteine_only")
    else:
        out.need_initial = True
        out.need_homocysteine = f.nitrous_oxide
        reason("status.not_tested")

    if "b12_deficiency" in f.conditions and out.status in ("not_assessed", "indeterminate"):
        # Rule status.recorded_diagnosis: a diagnosis of B12 deficiency in the record
        # (ICD-10 D51, E53.8) counts where no result here decides, as after treatment;
        # it replaces the "not tested" reasons rather than standing beside them.
        out.status = "likely"
        out.need_initial = out.need_mma = out.need_active_b12 = False
        out.need_homocysteine = False
        r.clear()
        reason("status.recorded_diagnosis")
        out.step = "interpret_b12"
    elif "b12_deficiency" in f.conditions and out.status == "unlikely":
        # Rule status.recorded_diagnosis_discordant: a normal level beside a recorded
        # deficiency may be a level after treatment given elsewhere: not "unlikely".
        out.status = "indeterminate"
        r.clear()
        reason("status.recorded_diagnosis_discordant")
    if out.deficient:
        ifa = labs.band("intrinsic_factor_antibody")
        obvious = any(m.factor.obvious_cause for m in f.risk_factors) or ifa == "positive"
        if not obvious and ifa is None:
            # Both on one sample: NG20 offers coeliac serology to anyone with unexplained
            # B12 deficiency, and in children coeliac disease is the commoner cause.
            out.need_cause_workup = True
            out.need_coeliac = "celiac_disease" not in f.conditions
            out.step = "find_cause"
            reason("status.cause_unexplained")
        elif ifa == "negative" and not obvious:
            out.need_coeliac = "celiac_disease" not in f.conditions
            out.step = "find_cause"
            reason("status.ifa_negative")
        else:
            out.step = "treat_and_review"
    if course.under_way:
        out.step = "treat_and_review"
    if out.status == "not_assessed" and not s.testing and not course.under_way:
        out.step = "assess_testing"
    return out


def _skipped_or_done(
    step: str, f: Findings, labs: LabSummary, course: Course
) -> tuple[str, str | None]:
    """A step before the current one: done when what it asks for is in the record, else
    not needed, with why (rule status.pathway)."""
    b12 = labs.band("total_b12") or labs.band("active_b12")
    if step == "assess_testing":
        return "done", None
    if step in ("initial_test", "interpret_b12"):
        if b12 is not None:
            return "done", None
        if course.under_way:
            return "not_needed", "treatment is under way; B12 levels no longer diagnose"
        return "not_needed", "the status rests on other results"
    if step == "functional_test":
        if labs.band("mma") is not None or labs.band("homocysteine") is not None:
            return "done", None
        if b12 == "deficient":
            return "not_needed", "B12 in the deficient band confirms deficiency without MMA"
        return "not_needed", "no MMA was measured"
    if step == "find_cause":
        known = [m.factor.name for m in f.risk_factors if m.factor.obvious_cause]
        if labs.band("intrinsic_factor_antibody") is not None or known:
            return "done", (f"cause: {', '.join(known)}" if known else None)
        return "not_needed", "no cause work-up recorded"
    return "done", None


def pathway(
    kb: Knowledge, result: StatusResult, f: Findings, labs: LabSummary, course: Course
) -> DiagnosticPathway:
    steps = sorted(kb.algorithm.values(), key=lambda a: a.order)
    current = next(i for i, a in enumerate(steps) if a.id == result.step)
    ended = result.status == "unlikely"
    out: list[PathwayStep] = []
    for i, a in enumerate(steps):
        note = None
        if i < current:
            state, note = _skipped_or_done(a.id, f, labs, course)
        elif i == current:
            state = "current"
        else:
            state = "not_needed" if ended else "pending"
        out.append(PathwayStep(id=a.id, name=a.name, state=state, note=note))
    here = steps[current]
    return explained(
        kb,
        DiagnosticPathway,
        "status.pathway",
        text=f"{here.name}: {here.text}",
        sources=here.sources,
        current_step=here.id,
        steps=out,
    )
