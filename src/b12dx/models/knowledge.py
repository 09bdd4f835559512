"""Typed models of the knowledge base files (``b12dx/knowledge/data/*.yaml``).

Each file is loaded into these models and validated at load; cross-references (source
ids, symptom ids in rules, regimen ids in profiles) are checked by
``b12dx.knowledge.loader``.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from b12dx.models.triage import SymptomTriage


class _KB(BaseModel):
    # defer_build: a knowledge base read back from the cache never validates, so the
    # validators are only built when the YAML is actually loaded.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Cited(_KB):
    sources: list[str] = Field(min_length=1)


class Source(_KB):
    id: str
    kind: Literal["seed", "guideline", "label", "study", "reference", "project"]
    title: str
    statement: str
    year: int | None = None
    url: str | None = None
    pmid: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _locatable(self) -> Source:
        if not (self.url or self.pmid or self.file or self.kind == "project"):
            raise ValueError(f"source {self.id} needs a url, pmid or file")
        return self


CodeSystemName = Literal[
    "LOINC",
    "ICD-10",
    "ICD-10-CM",
    "ATC",
    "RxNorm",
    "SNOMED CT",
    "UCUM",
    "CDC Race",
    "HL7 Interpretation",
]


class Code(_KB):
    system: CodeSystemName
    code: str
    display: str
    # True only where a test confirms the code against a named source, which
    # ``verified_by`` names (tests/test_codes.py holds each source's check).
    verified: bool
    verified_by: str | None = None
    note: str | None = None
    # Other conditions a combination code also records (ICD-10-CM E10.42 is type 1
    # diabetes with diabetic polyneuropathy): each is added beside the entry's own.
    also: list[str] = []


class SymptomGroup(Cited):
    id: str
    name: str
    neurological: bool
    # Whether its neurological features are B12's own pattern (peripheral nerves, cord,
    # optic nerve): memory and thinking alone are not (rule suspicion.cognitive_alone).
    specific: bool = True
    # Who finds these: the person (asked in the patient check), or a clinician on
    # examination (only the clinician form asks).
    found_by: Literal["person", "examination"] = "person"
    # How the patient check asks it: as a body area the person may choose (then only the
    # areas chosen are asked), or of everyone beside the questions about the person
    # ("about": a child's development, fits) or about the course of the symptoms
    # ("course": after exercise, easing with rest, coming and going).
    asked: Literal["by_area", "about", "course"] = "by_area"
    plain_name: str | None = None  # the check's heading, where the name is a clinician's
    # The ages at which its features count as B12's neurological involvement (the
    # regimen, the urgency of nerve involvement); None: every age. A child's seizures and
    # development are B12 signs; an adult's first seizure is not (clinical-reference §1).
    involvement_age_groups: (
        list[Literal["infant", "child", "adolescent", "adult", "older_adult"]] | None
    ) = None


class Symptom(Cited, SymptomTriage):
    id: str
    group: str
    name: str
    clinical_name: str
    role: Literal["b12", "other", "red_flag", "context"]
    # Found by a clinician on examination (the patient check does not ask); None: as
    # its group says.
    found_by: Literal["person", "examination"] | None = None
    # The age groups (triage.yaml) the patient check asks it of; None: every age.
    age_groups: list[Literal["infant", "child", "adolescent", "adult", "older_adult"]] | None = None
    weakness: bool
    feels_like: str
    # SNOMED CT findings, matched when a FHIR Condition or Observation records the symptom.
    codes: list[Code] = Field(default_factory=list)


class CheckTopic(Cited):
    """A question the patient check asks before a list (check_topics.yaml): only the
    entries of the topics a person says yes to are shown to them."""

    id: str
    question: str  # in the person's words


class CodedEntry(Cited):
    id: str
    name: str
    plain_name: str | None = None
    # The patient check's topic it is listed under (check_topics.yaml); None: always shown.
    topic: str | None = None
    codes: list[Code] = Field(default_factory=list)
    # A diagnosis that stands for findings (a neuropathy for numbness): it counts exactly
    # as those symptoms do (rule findings.diagnosis_as_symptoms), wherever it is recorded.
    presents_as: list[str] = Field(default_factory=list)


class Medication(CodedEntry):
    everyday_names: list[str] = Field(min_length=1)
    # What the medicine review says about it when it lowers B12 (next.review_medication),
    # and the sources for that advice.
    review: str | None = None
    # What it says while B12 treatment is planned or under way, when that differs.
    review_treated: str | None = None
    review_sources: list[str] = Field(default_factory=list)


class Trigger(_KB):
    diet: list[str] | None = None
    condition: list[str] | None = None
    medication: list[str] | None = None
    exposure: list[str] | None = None
    age_min: float | None = None
    pregnant: bool | None = None
    breastfeeding: bool | None = None
    min_duration_months: float | None = None


class AgeAlternative(_KB):
    age_min: float
    source: str
    note: str | None = None


Cause = Literal[
    "dietary",
    "malabsorption",
    "autoimmune",
    "medication",
    "exposure",
    "age",
    "physiological",
    "genetic",
]
Duration = Literal["lifelong", "while_cause_persists", "until_replete"]


class RiskFactor(Cited):
    id: str
    name: str
    category: str
    cause: Cause
    trigger: Trigger
    obvious_cause: bool
    duration: Duration
    injections: bool = False
    # B12 is given for this cause whatever the level (prophylaxis after total gastrectomy,
    # BNF), and its duration is settled by the cause alone.
    establishes_need: bool = False
    text: str
    threshold_choice: str | None = None
    alternatives: list[AgeAlternative] = Field(default_factory=list)


class LabUnit(_KB):
    unit: str
    factor: float = Field(gt=0)
    family: str


class LabTest(Cited):
    id: str
    name: str
    kind: Literal["numeric", "qualitative"]
    si_unit: str | None = None
    si_decimals: int = 1
    units: list[LabUnit] = Field(default_factory=list)
    values: list[str] = Field(default_factory=list)
    plausible_si: tuple[float, float] | None = None
    codes: list[Code] = Field(default_factory=list)
    # How soon a result itself needs the person seen, whatever the B12 question (rule
    # urgency.severe_result): a value below this SI value is seen the same day, and so is
    # a result outside its normal band with one of these symptoms.
    same_day_below_si: float | None = None
    same_day_with_symptoms: list[str] = Field(default_factory=list)
    # A result in one of these bands is seen within 2 weeks (rule urgency.abnormal_result).
    soon_bands: list[str] = Field(default_factory=list)
    # Rule lab.out_of_date: before treatment, a result older than this, or taken before
    # the symptoms began, does not decide the status of today's symptoms.
    out_of_date_months: int | None = None
    # The bands such a result is set aside in when out of date (an abnormal one is still
    # followed up).
    out_of_date_bands: list[str] = Field(default_factory=list)
    # A qualitative result that is itself a diagnosis: {value: condition id}. It counts as
    # that condition is recorded (rule findings.result_as_diagnosis).
    diagnoses: dict[str, str] = Field(default_factory=dict)


class BandWhen(_KB):
    unit_family: str | None = None
    sex: list[str] | None = None
    pregnant: bool | None = None
    age_min: float | None = None
    age_below: float | None = None


class Cutoff(_KB):
    below: float | None = None
    upto: float | None = None
    band: str

    @model_validator(mode="after")
    def _one_bound(self) -> Cutoff:
        if (self.below is None) == (self.upto is None):
            raise ValueError("a cutoff needs exactly one of below / upto")
        return self


class BandRule(Cited):
    when: BandWhen = Field(default_factory=BandWhen)
    cutoffs: list[Cutoff]
    otherwise: str
    # The laboratory's own range, when the result gives one, decides the band; the
    # cutoffs stand only without it (rule lab.laboratory_range).
    laboratory_range_first: bool = False


class SevereAnemia(_KB):
    default: float
    pregnant: float


class Profile(Cited):
    id: str
    name: str
    description: str
    default: bool = False
    inherits: str | None = None
    bands: dict[str, list[BandRule]] = Field(default_factory=dict)
    severe_anemia_below_g_l: SevereAnemia | None = None
    regimen_by_cause: dict[str, str] = Field(default_factory=dict)
    contraindication_fallback: dict[str, str] = Field(default_factory=dict)
    review_after_months: int | None = None
    review_after_months_pregnancy: int | None = None
    maintenance_grace_days: int | None = None
    # Whose reference intakes and portions the diet advice gives: uk (RNI, metric
    # portions) or us (RDA, US portions).
    diet_reference: Literal["uk", "us"] = "uk"
    # Where to go and how (care_access.yaml): the country whose services are named.
    region: Literal["uk", "us"] = "uk"
    # A loading dose this many days late means the loading has lapsed (engine.course).
    loading_grace_days: int | None = None
    # The regimens a course already given may follow and still count as treatment for a
    # presentation (regimen_by_cause's keys): what was given must be one of them.
    adequate_regimens: dict[str, list[str]] = Field(default_factory=dict)


class RegimenPhase(_KB):
    phase: Literal["loading", "maintenance"]
    every_days: int | None = Field(default=None, gt=0)
    every_months: int | None = Field(default=None, gt=0)
    day_offsets: tuple[int, ...] | None = None
    doses: int | None = Field(default=None, gt=0)
    until: Literal["first_review"] | None = None


# A regimen's dose: "1 mg", "100 micrograms", or a range "50-150 micrograms".
REGIMEN_DOSE = re.compile(r"^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))? (mg|micrograms)$")
DAYS_IN_A_MONTH_AT_LEAST = 28


class Regimen(Cited):
    id: str
    name: str
    drug: str
    route: str
    dose: str = Field(pattern=REGIMEN_DOSE.pattern)
    phases: list[RegimenPhase] = Field(min_length=1)
    contraindicated_conditions: list[str] = Field(default_factory=list)
    text: str
    choice: str | None = None

    @property
    def dose_range_mg(self) -> tuple[float, float]:
        """The dose, or its range, in mg."""
        return self.range_of(self.dose)

    @staticmethod
    def range_of(dose: str) -> tuple[float, float]:
        """A regimen dose text ("1 mg", "50-150 micrograms") as its range in mg."""
        m = REGIMEN_DOSE.match(dose)
        assert m is not None  # the field's pattern
        per_mg = 1.0 if m[3] == "mg" else 0.001
        low = float(m[1]) * per_mg
        return low, float(m[2]) * per_mg if m[2] else low

    @property
    def shortest_interval_days(self) -> int:
        """The fewest days between two doses anywhere in the regimen (a month counted as
        its shortest, 28 days); 0 for a regimen of one dose, which sets no interval."""
        gaps: list[int] = []
        for phase in self.phases:
            if phase.every_days is not None:
                gaps.append(phase.every_days)
            if phase.every_months is not None:
                gaps.append(phase.every_months * DAYS_IN_A_MONTH_AT_LEAST)
            offsets = phase.day_offsets or ()
            gaps += [b - a for a, b in itertools.pairwise(offsets)]
        return min(gaps, default=0)


class MilestoneDef(Cited):
    id: str
    name: str
    expected_by_days: int | None = None
    expected_by_months: float | None = None
    # The date is the earliest, not a deadline ("may take 14 months or more").
    open_ended: bool = False
    applies: Literal["neurological", "anaemia", "always"]
    text: str
    choice: str | None = None
    # The symptom ids whose ratings show the milestone ("@neurological": every neurological
    # B12 symptom); none for a measured milestone (nerve conduction, reticulocytes).
    tracked_by: list[str] = Field(default_factory=list)
    # all: met when every tracked symptom improved; any: when one did.
    improved_when: Literal["all", "any"] = "all"
    # Promised only to a person with a nerve symptom of these groups, now or at the start
    # of the course (rule recovery.follows_findings); every group when empty.
    groups: list[str] = Field(default_factory=list)

    @property
    def days(self) -> int:
        if self.expected_by_days is not None:
            return self.expected_by_days
        assert self.expected_by_months is not None
        # Approximate "by" dates: 30 days a month (recovery.yaml).
        return round(self.expected_by_months * 30)


class RecoveryOutcome(Cited):
    text: str


class RatingBaseline(Cited):
    """Which symptom rating stands for the start of a course of treatment."""

    # A rating this many days after the first dose still counts as the baseline when none
    # was made on or before it.
    after_first_dose_days: int = Field(ge=0)
    choice: str


class Recovery(_KB):
    outcome: RecoveryOutcome
    baseline: RatingBaseline
    milestones: list[MilestoneDef]


class Differential(Cited):
    id: str
    name: str
    features: str
    b12_contrast: str
    supports: list[str]
    against: list[str]
    good_min: int = 2
    good_requires_any: list[str] = Field(default_factory=list)
    # Without one of these the alternative does not apply (diabetic neuropathy needs
    # diabetes): a poor fit, whatever else matches.
    requires_any: list[str] = Field(default_factory=list)
    # Any of these makes it a poor fit, whatever else matches (a strain does not keep
    # getting worse).
    ruled_out_by: list[str] = Field(default_factory=list)
    # The age groups (triage.yaml) it is weighed in; all when empty.
    age_groups: list[str] = Field(default_factory=list)
    # Its name and features under triage.yaml adult_from_years, where the adult words name
    # what does not happen at that age (dementia in a teenager).
    young_name: str | None = None
    young_features: str | None = None


class RedFlagMatch(_KB):
    any: list[str]
    progressing_within_weeks: float | None = None
    with_any: list[str] = Field(default_factory=list)
    with_progressing_or_sudden: bool = False


class RedFlag(Cited):
    id: str
    name: str
    match: RedFlagMatch


class Food(Cited):
    id: str
    name: str
    serving: str
    serving_metric: str | None = None
    ug: float
    ug_max: float | None = None
    suits: list[str]
    fortified: bool = False
    avoid_in_pregnancy: bool = False


class FoodNote(Cited):
    id: str
    text: str


class Rda(Cited):
    stage: str
    name: str
    ug: float
    age_min: float | None = None
    age_max: float | None = None
    pregnant: bool | None = None
    breastfeeding: bool | None = None


class Diet(_KB):
    # From this age food-bound B12 is absorbed less: fortified foods or supplements
    # (ods-b12; the note over_50_fortified and the diet step read it).
    fortified_from_years: float
    fortified_sources: list[str] = Field(min_length=1)
    foods: list[Food]
    notes: list[FoodNote]
    rda: list[Rda]  # US recommended dietary allowance (ods-b12)
    uk_rni: list[Rda]  # UK reference nutrient intake (coma-1991)


class Worded(Cited):
    """An entry with clinician and patient wording (warnings, next steps, urgency)."""

    id: str
    text: str
    plain: str


class NextStepDef(Worded):
    # The test a step orders, for a ServiceRequest (FHIR output, CDS Hooks suggestions).
    order_codes: list[Code] = Field(default_factory=list)


class WarningDef(Worded):
    severity: Literal["info", "warning", "critical"]
    # The person's words in pregnancy, where the plain words would mislead (folic acid is
    # advised in pregnancy: the warning is about folic acid instead of B12).
    plain_pregnant: str | None = None


class RedFlagQuestion(Cited):
    """An emergency question of the patient check (red_flag_questions.yaml): a "yes"
    records ``symptom``, with ``onset`` when given, for the engine's red-flag rules."""

    id: str = Field(pattern=r"^rf_[a-z_]+$")  # the form field
    text: str
    symptom: str
    onset: Literal["gradual", "sudden"] | None = None
    # Other symptoms the same answer records (back pain with legs getting weaker), and
    # whether they are getting worse.
    also: list[str] = Field(default_factory=list)
    progressing: bool | None = None


class UrgencyDef(Worded):
    order: int
    # The patient check's headline: what to do, in a few words (the page's h1).
    headline: str


class CareAccess(Cited):
    """Where to go and how, in one region (care_access.yaml)."""

    id: str
    name: str
    emergency_number: str
    other_emergency_numbers: list[str] = Field(default_factory=list)
    emergency_place: str
    do_not_drive: str
    tell_them: str
    where: dict[str, str]


class AlgorithmStep(Cited):
    id: str
    order: int
    name: str
    text: str


class Fact(Cited):
    id: str
    topic: str
    text: str


class Rule(Cited):
    id: str
    topic: str
    text: str
    choice: str | None = None  # why, where the sources did not settle it
    # What the patient check says for a step this rule makes, when the step's own plain
    # words (next_steps.yaml) would say something else.
    plain: str | None = None


class Courses(Cited):
    """How doses of B12 add up to a course of treatment (courses.yaml)."""

    injection_routes: list[Literal["im", "oral", "sc", "iv", "sublingual", "nasal"]] = Field(
        min_length=1
    )
    interchangeable_injections: list[
        Literal["hydroxocobalamin", "cyanocobalamin", "methylcobalamin"]
    ] = Field(min_length=1)
    why: str
    # How far ahead a dose schedule is laid out (the contract: at least 12 months).
    schedule_months: int = Field(gt=0)
