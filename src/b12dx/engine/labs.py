"""Interpret lab results: convert to SI, band each by the profile, and pick the results
that decide the deficiency status (the latest per test, taken before any B12 was given)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from b12dx.engine.explain import explained
from b12dx.engine.schedule import add_months
from b12dx.engine.units import family_base, find_unit
from b12dx.knowledge.loader import Knowledge
from b12dx.knowledge.wording import unit_words
from b12dx.models.assessment import LabItem
from b12dx.models.knowledge import BandRule, LabTest, LabUnit, Profile
from b12dx.models.patient import LabResult, PatientRecord
from b12dx.numbers import format_si, rounded_float

# Tests whose level B12 treatment changes: results taken after the first dose cannot
# diagnose (nice-ng239, bsh-2014).
B12_RESPONSIVE = frozenset({"total_b12", "active_b12", "mma", "homocysteine"})


@dataclass(frozen=True)
class LabReading:
    item: LabItem
    si: float | None


@dataclass(frozen=True)
class LabSummary:
    items: list[LabItem]
    usable: dict[str, LabReading]  # test id -> the reading that decides status
    taken_after_treatment: list[str]  # tests with results drawn after B12 was given
    # The latest result of each test that is out of date for today's symptoms (rule
    # lab.out_of_date): shown, not used for the status.
    out_of_date: list[LabItem] = field(default_factory=list)

    def band(self, test: str) -> str | None:
        reading = self.usable.get(test)
        return reading.item.band if reading else None

    def si(self, test: str) -> float | None:
        reading = self.usable.get(test)
        return reading.si if reading else None


def _matches(rule: BandRule, patient: PatientRecord, family: str | None) -> bool:
    w = rule.when
    if w.unit_family is not None and w.unit_family != family:
        return False
    if w.sex is not None and patient.sex not in w.sex:
        return False
    if w.pregnant is not None and patient.pregnant != w.pregnant:
        return False
    if w.age_below is not None and patient.age_years >= w.age_below:
        return False
    return not (w.age_min is not None and patient.age_years < w.age_min)


def band_rule(profile: Profile, test: str, patient: PatientRecord, family: str | None) -> BandRule:
    return next(r for r in profile.bands[test] if _matches(r, patient, family))


def apply_cutoffs(rule: BandRule, value: float) -> str:
    for cut in rule.cutoffs:
        if cut.below is not None and value < cut.below:
            return cut.band
        if cut.upto is not None and value <= cut.upto:
            return cut.band
    return rule.otherwise


def describe_band(rule: BandRule, band: str, unit: str) -> str:
    """The range a band covers, e.g. '180-350 ng/L' or 'above 350 ng/L'."""
    lower: str | None = None
    unit = unit_words(unit)
    for cut in rule.cutoffs:
        bound = cut.below if cut.below is not None else cut.upto
        if cut.band == band:
            if lower is None:
                return f"{'below' if cut.below is not None else 'up to'} {bound:g} {unit}"
            return f"{lower}-{bound:g} {unit}"
        lower = f"{bound:g}"
    return f"above {lower} {unit}" if lower else ""


def _reference_band(rule_bands: set[str], lab: LabResult, value: float) -> str | None:
    low_word = "deficient" if "deficient" in rule_bands else "low"
    high_word = (
        "elevated"
        if "elevated" in rule_bands
        else ("high" if "high" in rule_bands or "low" in rule_bands else "normal")
    )
    if lab.reference_low is None and lab.reference_high is None:
        return None
    if lab.reference_low is not None and value < lab.reference_low:
        return low_word
    if lab.reference_high is not None and value > lab.reference_high:
        return high_word
    return "normal"


def result_text(test: LabTest, value: float, unit: str, si: float) -> str:
    """A result as the reports write it: "Haemoglobin 7.9 g/dL (79 g/L)", the SI value
    added when it was recorded in another unit."""
    shown = f"{test.name} {value:g} {unit_words(unit)}"
    if unit != test.si_unit:
        shown += f" ({format_si(si, test.si_decimals)} {unit_words(test.si_unit)})"
    return shown


def _interpret_numeric(
    kb: Knowledge,
    profile: Profile,
    patient: PatientRecord,
    test: LabTest,
    lab: LabResult,
    unit: LabUnit,
    used: bool,
) -> LabReading:
    assert not isinstance(lab.value, str)
    value = float(lab.value)
    si = value * unit.factor
    rule = band_rule(profile, test.id, patient, unit.family)
    if rule.when.unit_family is not None:
        base = family_base(test, rule.when.unit_family)
        compared, compared_unit = si / base.factor, base.unit
    else:
        compared, compared_unit = si, test.si_unit or unit.unit
    band = apply_cutoffs(rule, compared)
    names = {c.band for c in rule.cutoffs} | {rule.otherwise}
    reference_band = _reference_band(names, lab, value)
    rule_id = f"lab.{test.id}"
    range_text = describe_band(rule, band, compared_unit)
    if test.id == "mma" and lab.reference_high is not None:
        # A laboratory's own upper limit takes precedence over the profile's default.
        rule_id = "lab.mma_lab_limit"
        band = "elevated" if value > lab.reference_high else "normal"
        range_text = f"laboratory upper limit {lab.reference_high:g} {unit_words(unit.unit)}"
    elif rule.laboratory_range_first and reference_band is not None:
        rule_id = "lab.laboratory_range"
        band = reference_band
        lo, hi, words = lab.reference_low, lab.reference_high, unit_words(unit.unit)
        span = (
            f"{lo:g}-{hi:g}"
            if lo is not None and hi is not None
            else (f"from {lo:g}" if lo is not None else f"up to {hi:g}")
        )
        range_text = f"the laboratory's range for the age, {span} {words}"
    si_rounded = rounded_float(si, test.si_decimals)
    text = f"{result_text(test, value, unit.unit, si)}: {band}"
    if range_text:
        text += f" ({range_text})"
    if reference_band is not None and reference_band != band:
        text += f"; by the laboratory's range: {reference_band}"
    if not used:
        text += "; not used for the diagnosis (an older result, or taken after B12 was given)"
    item = explained(
        kb,
        LabItem,
        rule_id,
        text=text,
        sources=rule.sources,
        test=test.id,
        value=lab.value,
        unit=lab.unit,
        value_si=si_rounded,
        unit_si=test.si_unit,
        band=band,
        date=lab.date,
        reference_low=lab.reference_low,
        reference_high=lab.reference_high,
        reference_band=reference_band,
        used_for_status=used,
    )
    return LabReading(item, si)


def interpret_labs(
    kb: Knowledge,
    profile: Profile,
    patient: PatientRecord,
    first_dose: dt.date | None,
    symptoms_since: dt.date | None = None,
    as_of: dt.date | None = None,
    symptomatic: bool = False,
) -> LabSummary:
    """With B12 symptoms present (``symptomatic``) and no B12 given, a B12 result older
    than its test's ``out_of_date_months`` before ``as_of``, or taken before the symptoms
    began (``symptoms_since``, when their durations are known), is out of date: it does
    not decide the status of today's symptoms (rule lab.out_of_date)."""

    # The latest result per test decides; undated results count as older than dated ones.
    def when(lab: LabResult) -> dt.date:
        return lab.date or dt.date.min

    latest: dict[str, int] = {}
    after_treatment: list[str] = []
    for i, lab in enumerate(patient.labs):
        if (
            first_dose is not None
            and lab.test in B12_RESPONSIVE
            # Rule lab.pre_treatment_sample: blood taken on the day of the first dose is
            # the sample taken before it (next step start_treatment_now asks for it first).
            and (lab.date is None or lab.date > first_dose)
        ):
            after_treatment.append(lab.test)
            continue
        if lab.test not in latest or when(lab) >= when(patient.labs[latest[lab.test]]):
            latest[lab.test] = i

    def stale(lab: LabResult) -> bool:
        months = kb.labs[lab.test].out_of_date_months
        if not symptomatic or first_dose is not None or months is None or as_of is None:
            return False  # no symptom to judge, or the pre-treatment diagnosis: it stands
        if lab.date is None:
            return False
        limit = add_months(as_of, -months)
        return lab.date < (max(symptoms_since, limit) if symptoms_since else limit)

    items: list[LabItem] = []
    usable: dict[str, LabReading] = {}
    old: list[LabItem] = []
    for i, lab in enumerate(patient.labs):
        test = kb.labs[lab.test]
        used = latest.get(lab.test) == i
        if test.kind == "qualitative":
            assert isinstance(lab.value, str)
            text = f"{test.name}: {lab.value}"
            item = explained(
                kb,
                LabItem,
                f"lab.{test.id}",
                text=f"{text}.",
                sources=test.sources,
                test=test.id,
                value=lab.value,
                unit=None,
                value_si=None,
                unit_si=None,
                band=lab.value,
                date=lab.date,
                used_for_status=used,
            )
            reading = LabReading(item, None)
        else:
            assert lab.unit is not None
            unit = find_unit(kb, test, lab.unit)
            assert unit is not None  # checked by validate
            reading = _interpret_numeric(kb, profile, patient, test, lab, unit, used)
        # Only a reassuring or borderline result is set aside: untreated deficiency does
        # not resolve by itself, so a deficient (or raised MMA) result still stands.
        if used and reading.item.band in kb.labs[lab.test].out_of_date_bands and stale(lab):
            assert lab.date is not None and as_of is not None
            why = (
                "before the symptoms began"
                if symptoms_since is not None and lab.date < symptoms_since
                else f"more than {kb.labs[lab.test].out_of_date_months} months ago"
            )
            note = (
                f" Out of date for today's symptoms (taken {lab.date}, {why}): it does not "
                "decide the status; repeat the test."
            )
            update = {"used_for_status": False, "text": reading.item.text + note}
            reading = LabReading(reading.item.model_copy(update=update), None)
            old.append(reading.item)
            used = False
        items.append(reading.item)
        if used:
            usable[lab.test] = reading
    return LabSummary(items, usable, sorted(set(after_treatment)), old)
