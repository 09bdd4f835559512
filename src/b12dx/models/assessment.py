"""The assessment: contract version 1 output.

Every item that states something clinical carries the id of the rule that produced it
(``rule``) and the ids of its sources (``sources``). Fields beyond the contract's are
additions; none of the contract's is renamed or given another meaning.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from b12dx.models.patient import Rating

SuspicionLevel = Literal["low", "moderate", "high"]
Band = Literal[
    "deficient", "indeterminate", "normal", "elevated", "low", "high", "positive", "negative"
]
DeficiencyStatus = Literal["confirmed", "likely", "indeterminate", "unlikely", "not_assessed"]
Urgency = Literal["emergency", "urgent", "soon", "routine", "self_care"]
NextStepId = Literal[
    "order_total_b12",
    "order_active_b12",
    "order_mma",
    "order_homocysteine",
    "order_full_blood_count",
    "order_folate",
    "order_intrinsic_factor_antibodies",
    "order_coeliac_serology",
    "start_treatment_now",
    "start_treatment",
    "seek_specialist_advice",
    "refer_neurology",
    "emergency_assessment",
    "stop_nitrous_oxide",
    "review_medication",
    "dietary_changes",
    "schedule_review",
    "periodic_monitoring",
    "continue_maintenance",
]
WarningId = Literal[
    "irreversible_damage_risk",
    "folic_acid_masking",
    "normal_b12_does_not_exclude",
    "no_anemia_does_not_exclude",
    "renal_mma_caveat",
    "pregnancy_total_b12_caveat",
    "nitrous_oxide_normal_b12",
    "hypokalemia_monitoring",
    "post_treatment_level_uninterpretable",
    "ethnicity_reference_range",
    "leber_disease_cyanocobalamin",
    "red_flag_not_b12",
    "maintenance_overdue",
]
Severity = Literal["info", "warning", "critical"]
RegimenId = Literal[
    "im_neurological", "im_standard", "oral_high_dose", "oral_low_dose", "us_label_cyanocobalamin"
]
TreatmentDuration = Literal["lifelong", "while_cause_persists", "until_replete"]
Phase = Literal["loading", "maintenance"]
MilestoneId = Literal[
    "reticulocyte_response",
    "motor_conduction_amplitude",
    "proximal_power",
    "hand_function",
    "plantar_flexion",
    "dorsiflexion",
    "sensory_conduction",
    "neurological_response",
]
# pending: expected_by is after as_of; improved / not_improved: judged from a rating on or
# after expected_by; not_rated: due, but a tracked symptom has no rating on or after it.
ProgressStatus = Literal["pending", "improved", "not_improved", "not_rated"]
Fit = Literal["good", "partial", "poor"]
StepState = Literal["done", "current", "pending", "not_needed"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Explained(_Out):
    """A statement with the rule that produced it and its sources."""

    rule: str
    text: str
    sources: list[str]


class Reason(Explained):
    pass


class Suspicion(_Out):
    level: SuspicionLevel
    reasons: list[Reason]


class RiskFactorItem(Explained):
    id: str
    name: str
    category: str
    # What the record showed of it, where that qualifies the name ("duration not
    # recorded; the risk is with 2 years or more"); None when it fits as named.
    qualifier: str | None = None


class RedFlagItem(Explained):
    id: str
    name: str


class TriageAlarm(Explained):
    """One reason the presentation must be seen within a time, whatever its cause."""

    id: str
    level: Literal["emergency", "urgent", "soon", "routine"]
    name: str = Field(description="What was found, with its tempo, in words.")
    symptoms: list[str]
    elsewhere: str | None = Field(
        default=None,
        description="When it is not a B12 question: where it goes instead, in plain words.",
    )


class Triage(_Out):
    """The triage stage: decided before and apart from the B12 reasoning, which never
    lowers it (rules triage.*)."""

    age_group: Literal["infant", "child", "adolescent", "adult", "older_adult"]
    tempo: dict[str, Literal["sudden", "acute", "subacute", "chronic"] | None] = Field(
        description="Each symptom's tempo: sudden (minutes to hours), acute (days), "
        "subacute (weeks), chronic (months); null when nothing says when it began."
    )
    alarms: list[TriageAlarm]
    enough_to_assess: bool = Field(
        description="False when the record holds nothing to go on (no symptom, risk "
        "factor or result): the urgency is then routine, never self care."
    )


class LabItem(Explained):
    test: str
    value: int | float | str
    unit: str | None
    value_si: float | None
    unit_si: str | None
    band: Band
    date: dt.date | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    reference_band: Band | None = Field(
        default=None, description="Band by the laboratory's own reference range, when given."
    )
    used_for_status: bool = Field(
        description="Whether this result was used to decide the deficiency status "
        "(false for older repeats and for levels taken after B12 was given)."
    )


class PathwayStep(_Out):
    id: str
    name: str
    state: StepState
    note: str | None = Field(
        default=None, description="Why a step was not needed, or what settled it."
    )


class DiagnosticPathway(Explained):
    current_step: str
    steps: list[PathwayStep]


class NextStep(Explained):
    id: NextStepId
    due: dt.date | None = None


class WarningItem(Explained):
    id: WarningId
    severity: Severity


class Note(Explained):
    id: str


class Dose(_Out):
    date: dt.date
    dose: str
    phase: Phase


class Treatment(Explained):
    regimen: RegimenId
    name: str
    drug: str
    route: str
    dose: str
    duration: TreatmentDuration
    duration_settled: bool = Field(
        default=True,
        description="False while deficiency or its cause is not yet established: `duration` "
        "is then what the regimen would be for the cause found so far, and the duration is "
        "decided at review.",
    )
    causes: list[str]
    start: dt.date
    under_way: bool
    schedule: list[Dose]
    review_dates: list[dt.date]
    overdue_since: dt.date | None = Field(
        default=None,
        description="The due date of the course's next dose (loading or maintenance) that has "
        "passed beyond the profile's allowance.",
    )
    overdue_phase: Phase | None = Field(
        default=None, description="The phase of the overdue dose: loading or maintenance."
    )

    @property
    def duration_text(self) -> str:
        """The duration in words, as every adapter shows it."""
        if not self.duration_settled:
            return "to be decided at review"
        return self.duration.replace("_", " ")


class Milestone(Explained):
    id: MilestoneId
    name: str
    expected_by: dt.date
    open_ended: bool = Field(
        default=False,
        description="`expected_by` is the earliest date, not a deadline: the recovery may "
        "take longer (sensory conduction: 14 months or more).",
    )

    @property
    def when_text(self) -> str:
        """``by 2027-01-01``, or ``from 2027-01-01`` when it may take longer."""
        return f"{'from' if self.open_ended else 'by'} {self.expected_by}"


class SymptomProgress(_Out):
    """One tracked symptom of a milestone: its rating at the start of the course and since."""

    id: str = Field(description="Symptom id.")
    name: str
    baseline_rating: Rating = Field(
        description="The latest rating on or before the first dose (else the earliest within "
        "the knowledge base's window after it)."
    )
    baseline_date: dt.date
    latest_rating: Rating | None = Field(
        default=None, description="The latest rating after the baseline, if any."
    )
    latest_date: dt.date | None = None
    status: ProgressStatus


class RecoveryProgress(Explained):
    """A recovery milestone judged from the symptom ratings that track it."""

    id: MilestoneId
    name: str
    expected_by: dt.date
    status: ProgressStatus
    symptoms: list[SymptomProgress] = Field(
        description="The milestone's tracked symptoms that were present (above none) at the "
        "start of the course."
    )


class DifferentialItem(Explained):
    id: str
    name: str
    fit: Fit
    matched_features: list[str]
    against_features: list[str]


class FoodItem(_Out):
    id: str
    name: str
    serving: str
    micrograms: float
    micrograms_max: float | None = None
    percent_of_rda: int
    percent_of_reference: int | None = Field(
        default=None, description="Per serving, of the profile's reference intake."
    )
    fortified: bool


class DietAdvice(Explained):
    life_stage: str
    rda_micrograms: float = Field(description="The US RDA for the life stage (ods-b12).")
    reference_intake: str | None = Field(
        default=None,
        description="Whose reference intake the advice gives: the profile's country's "
        "(UK reference nutrient intake, US recommended dietary allowance).",
    )
    reference_intake_micrograms: float | None = None
    foods: list[FoodItem]
    notes: list[str]


class Citation(_Out):
    id: str
    title: str
    url: str | None
    year: int | None = None
    kind: str | None = Field(
        default=None,
        description="guideline, label, reference, study, project (b12dx's own safety rules) "
        "or seed (a consumer article, cited for the wording given to patients, not as "
        "clinical evidence). Citations are listed in that order.",
    )


class ResourceUse(_Out):
    resource: str = Field(description='The FHIR resource ("Observation/123").')
    note: str = Field(description="What it became in the record, or why it was not used.")


class FhirInput(_Out):
    """Which FHIR resources the record was built from, and which were left out and why."""

    patient: str | None
    used: list[ResourceUse]
    ignored: list[ResourceUse]


class Assessment(_Out):
    """The explained assessment of one person (contract output, version 1)."""

    schema_version: str
    engine_version: str
    knowledge_version: str
    profile: str
    as_of: dt.date
    testing_recommended: bool
    suspicion: Suspicion
    risk_factors: list[RiskFactorItem]
    neurological_involvement: bool
    labs: list[LabItem]
    deficiency_status: DeficiencyStatus
    status_reasons: list[Reason]
    urgency: Urgency
    urgency_reasons: list[Reason]
    red_flags: list[RedFlagItem]
    triage: Triage | None = Field(
        default=None, description="The triage stage behind the urgency (added in engine 0.2)."
    )
    diagnostic_pathway: DiagnosticPathway
    next_steps: list[NextStep]
    warnings: list[WarningItem]
    notes: list[Note]
    treatment: Treatment | None
    recovery_milestones: list[Milestone]
    recovery_outcome: Explained | None
    recovery_progress: list[RecoveryProgress] = Field(
        default_factory=list,
        description="Recovery milestones judged from symptom_ratings (a course under way).",
    )
    differentials: list[DifferentialItem]
    diet: DietAdvice
    citations: list[Citation]
    disclaimer: str
    fhir_input: FhirInput | None = Field(
        default=None, description="Present when the input was FHIR: the resources used and ignored."
    )
