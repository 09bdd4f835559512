"""The patient record: contract version 1 input.

Structure and types are checked here; ids, units and plausibility are checked against the
knowledge base in ``b12dx.engine.validate`` so that the accepted values live in one place.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

Sex = Literal["female", "male", "other", "unknown"]
Diet = Literal["omnivore", "vegetarian", "vegan", "restricted"]
Onset = Literal["gradual", "sudden"]
Severity = Literal["mild", "moderate", "severe"]
Ethnicity = Literal["black_african_or_caribbean", "other", "unknown"]
Drug = Literal["hydroxocobalamin", "cyanocobalamin", "methylcobalamin"]
Route = Literal["im", "oral", "sc", "iv", "sublingual", "nasal"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SymptomEntry(_Record):
    id: str = Field(description="Symptom id from the knowledge base (b12dx knowledge symptoms).")
    onset: Onset | None = None
    duration_weeks: float | None = Field(default=None, ge=0, le=5200)
    severity: Severity | None = None
    progressing: bool | None = None


class ConditionEntry(_Record):
    id: str = Field(description="Condition id (b12dx knowledge conditions).")
    egfr: float | None = Field(
        default=None, gt=0, le=200, description="eGFR in mL/min/1.73m2 (chronic kidney disease)."
    )


class MedicationEntry(_Record):
    id: str = Field(description="Medication id (b12dx knowledge medications).")
    duration_months: float | None = Field(default=None, ge=0, le=1440)


class ExposureEntry(_Record):
    id: str = Field(description="Exposure id (b12dx knowledge exposures).")
    ongoing: bool | None = Field(default=None, description="Whether exposure continues now.")


class LabResult(_Record):
    test: str = Field(description="Test id (b12dx knowledge labs).")
    value: StrictInt | StrictFloat | StrictStr = Field(
        description='A number, or "positive" / "negative" for intrinsic_factor_antibody.'
    )
    unit: str | None = Field(default=None, description="Required for numeric tests.")
    date: dt.date | None = None
    reference_low: float | None = None
    reference_high: float | None = None


class TreatmentDose(_Record):
    date: dt.date
    drug: Drug
    route: Route
    dose_mg: float | None = Field(default=None, gt=0, le=10)


class PatientRecord(_Record):
    """A person to assess (contract input, version 1)."""

    as_of: dt.date | None = Field(
        default=None, description="Date of the assessment; required by the library API."
    )
    age_years: float = Field(ge=0, le=120)
    sex: Sex = "unknown"
    pregnant: bool = False
    breastfeeding: bool = False
    ethnicity: Ethnicity = Field(
        default="unknown",
        description="Family background where it changes interpretation (nice-ng239 1.3.13).",
    )
    diet: Diet = "omnivore"
    symptoms: list[SymptomEntry] = Field(default_factory=list)
    conditions: list[ConditionEntry] = Field(default_factory=list)
    medications: list[MedicationEntry] = Field(default_factory=list)
    exposures: list[ExposureEntry] = Field(default_factory=list)
    labs: list[LabResult] = Field(default_factory=list)
    b12_treatment: list[TreatmentDose] = Field(default_factory=list)
