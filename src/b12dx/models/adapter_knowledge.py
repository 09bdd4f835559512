"""The knowledge the adapters read, beside the clinical knowledge of ``knowledge.py``:
code systems and FHIR reading (fhir.yaml), CDS Hooks (cds.yaml) and population screening
(screening.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from b12dx.models.knowledge import _KB, Cited, Code, CodeSystemName


class CodeSystem(_KB):
    name: CodeSystemName
    uris: list[str] = Field(min_length=1)
    # ICD-10 and ATC are hierarchies: E11.9 is a kind of E11, A02BC01 of A02BC.
    hierarchical: bool = False


class FhirStatuses(_KB):
    observation_used: list[str]
    finding_used: list[str]
    condition_clinical_ignored: list[str]
    condition_verification_ignored: list[str]
    medication_request_ignored: list[str]
    medication_request_intent_ignored: list[str]
    medication_request_ongoing: list[str]
    medication_statement_ignored: list[str]
    medication_statement_ongoing: list[str]
    medication_administration_used: list[str]
    procedure_used: list[str]


class MedicationRuns(Cited):
    # Orders and statements of one medicine whose dates are at most gap_days apart are
    # one continuous course; its duration runs from the first start to as_of.
    gap_days: int = Field(gt=0)
    why: str


class FhirMapping(Cited):
    """How FHIR R4 resources become a patient record (``b12dx.fhir``)."""

    code_systems: list[CodeSystem]
    statuses: FhirStatuses
    medication_runs: MedicationRuns
    lasting_conditions: list[str]
    # Unit spellings accepted only from FHIR results of one test, whose codes fix the
    # meaning (an eGFR code is per 1.73 m2 even when the unit is written mL/min).
    lab_unit_aliases: dict[str, dict[str, str]] = Field(default_factory=dict)
    # A symptom observed (a point in time, unlike a problem-list entry) counts this long.
    symptom_observation_months: int = Field(gt=0)
    # A pregnancy recorded longer ago than this, with no end, is taken as over.
    pregnancy_max_days: int = Field(gt=0)
    severity: dict[Literal["mild", "moderate", "severe"], list[Code]]
    routes: dict[Literal["im", "oral", "sc", "iv", "sublingual", "nasal"], list[Code]]
    pregnancy: list[Code]
    diet: dict[Literal["vegan", "vegetarian"], list[Code]]
    ethnicity: dict[Literal["black_african_or_caribbean"], list[Code]]
    ethnicity_extensions: list[str]
    symptom_observation: list[Code]
    absent: list[Code]
    positive: list[Code]
    negative: list[Code]
    b12_drugs: dict[Literal["hydroxocobalamin", "cyanocobalamin", "methylcobalamin"], list[Code]]
    # A dose given with no route recorded: the route of a drug that has only one.
    route_when_unrecorded: dict[str, Literal["im", "oral", "sc", "iv", "sublingual", "nasal"]] = (
        Field(default_factory=dict)
    )

    @model_validator(mode="after")
    def _routes_name_drugs(self) -> FhirMapping:
        unknown = set(self.route_when_unrecorded) - set(self.b12_drugs)
        if unknown:
            raise ValueError(f"route_when_unrecorded names drugs not in b12_drugs: {unknown}")
        return self


class CdsService(Cited):
    id: str
    hook: Literal["patient-view", "order-select", "order-sign"]
    title: str
    description: str
    usage_requirements: str | None = None


class OrderCheck(Cited):
    id: str
    medications: list[str] = Field(min_length=1)
    indicator: Literal["info", "warning", "critical"]
    summary: str = Field(max_length=139)
    detail: str
    monitoring_months: int | None = None
    why_12_months: str | None = None


class OverrideReason(_KB):
    code: str
    display: str


class CdsKnowledge(Cited):
    """The CDS Hooks services and order checks (``b12dx.cds``)."""

    override_reasons: list[OverrideReason] = Field(min_length=1)
    services: list[CdsService] = Field(min_length=1)
    indicator_by_urgency: dict[str, Literal["info", "warning", "critical"]]
    order_checks: list[OrderCheck]


class ScreeningWindows(Cited):
    test_lookback_months: int = Field(ge=1)
    follow_up_days: int = Field(ge=1)
    treatment_start_days: int = Field(ge=1)
    symptom_months: int = Field(ge=1)
    why: str


class UntestedAtRisk(Cited):
    risk_factors: list[str] = Field(min_length=1)
    presenting_conditions: list[str]
    why: str


class MaintenanceScreen(Cited):
    routes: list[str] = Field(min_length=1)
    min_doses: int = Field(ge=1)


class ScreeningKnowledge(Cited):
    """Population screening's windows and lists (``b12dx.screen``, screening.yaml)."""

    b12_tests: list[str] = Field(min_length=1)
    follow_up_tests: dict[str, list[str]]
    windows: ScreeningWindows
    untested_at_risk: UntestedAtRisk
    maintenance: MaintenanceScreen
    age_bands: list[int] = Field(min_length=1)
    omop_vocabularies: dict[str, CodeSystemName]
    omop_gender: dict[int, str]
    route_words: dict[str, list[str]]
    # Each gap in words, in the order an analyst's worklist takes them (report.html).
    gap_labels: dict[str, str] = Field(default_factory=dict)
