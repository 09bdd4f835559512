"""The patient record: contract version 1 input.

Structure and types are checked here; ids, units and plausibility are checked against the
knowledge base in ``b12dx.engine.validate`` so that the accepted values live in one place.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

Sex = Literal["female", "male", "other", "unknown"]
Diet = Literal["omnivore", "vegetarian", "vegan", "restricted"]
Onset = Literal["gradual", "sudden"]
Severity = Literal["mild", "moderate", "severe"]
Ethnicity = Literal["black_african_or_caribbean", "other", "unknown"]
Drug = Literal["hydroxocobalamin", "cyanocobalamin", "methylcobalamin"]
Route = Literal["im", "oral", "sc", "iv", "sublingual", "nasal"]
# A symptom's rating at follow-up, in increasing order (b12dx.engine.findings ranks them).
Rating = Literal["none", "mild", "moderate", "severe"]


DATE_EXPECTED = "expected a date as YYYY-MM-DD"
# The longest time on a medicine the contract takes: a lifetime (120 years).
MAX_DURATION_MONTHS = 1440


def _not_a_number(value: Any) -> Any:
    # Lenient parsing would read 0 as 1970-01-01; a date must be written as a date. The
    # error is a date error, so it reads as pydantic's own (b12dx.engine.validate).
    if isinstance(value, int | float):
        raise PydanticCustomError("date_not_text", "{value} is not a date", {"value": value})
    return value


# Numbers must be JSON numbers and flags JSON booleans: "67" or true is not read as 67 or 1.
Number = StrictFloat
Flag = StrictBool
IsoDate = Annotated[dt.date, BeforeValidator(_not_a_number)]


# British spellings of the knowledge base's ids, read as the contract's (American) ids:
# every text b12dx writes is British, so a clinician types "pernicious_anaemia".
_SPELLINGS = {
    "anaemia": "anemia",
    "haemoglobin": "hemoglobin",
    "diarrhoea": "diarrhea",
    "coeliac": "celiac",
    "oesophag": "esophag",
}


def _contract_spelling(value: Any) -> Any:
    if isinstance(value, str):
        for british, american in _SPELLINGS.items():
            value = value.replace(british, american)
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


KbId = Annotated[str, BeforeValidator(_contract_spelling)]
# A route as outputs print it ("IM") is the same route.
RouteIn = Annotated[Route, BeforeValidator(_lower)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SymptomEntry(_Record):
    id: KbId = Field(description="Symptom id from the knowledge base (b12dx knowledge symptoms).")
    onset: Onset | None = None
    duration_weeks: Number | None = Field(default=None, ge=0, le=5200)
    severity: Severity | None = None
    progressing: Flag | None = None


class ConditionEntry(_Record):
    id: KbId = Field(description="Condition id (b12dx knowledge conditions).")
    egfr: Number | None = Field(
        default=None, gt=0, le=200, description="eGFR in mL/min/1.73m2 (chronic kidney disease)."
    )


class MedicationEntry(_Record):
    id: KbId = Field(description="Medication id (b12dx knowledge medications).")
    duration_months: Number | None = Field(default=None, ge=0, le=MAX_DURATION_MONTHS)


class ExposureEntry(_Record):
    id: KbId = Field(description="Exposure id (b12dx knowledge exposures).")
    ongoing: Flag | None = Field(default=None, description="Whether exposure continues now.")


class LabResult(_Record):
    test: KbId = Field(description="Test id (b12dx knowledge labs).")
    value: StrictInt | StrictFloat | StrictStr = Field(
        description='A number, or "positive" / "negative" for intrinsic_factor_antibody.'
    )
    unit: str | None = Field(default=None, description="Required for numeric tests.")
    date: IsoDate | None = None
    reference_low: Number | None = None
    reference_high: Number | None = None


class TreatmentDose(_Record):
    date: IsoDate
    drug: Drug
    route: RouteIn
    dose_mg: Number | None = Field(default=None, gt=0, le=10)


class SymptomRating(_Record):
    """One symptom rated on one date during follow-up (``none`` records that it has gone)."""

    id: KbId = Field(description="Symptom id from the knowledge base (b12dx knowledge symptoms).")
    date: IsoDate = Field(description="The day it was rated; on or before as_of.")
    rating: Rating


class PatientRecord(_Record):
    """A person to assess (contract input, version 1)."""

    as_of: IsoDate | None = Field(
        default=None, description="Date of the assessment; required by the library API."
    )
    age_years: Number = Field(ge=0, le=120)
    sex: Sex = "unknown"
    pregnant: Flag = False
    breastfeeding: Flag = False
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
    symptom_ratings: list[SymptomRating] = Field(
        default_factory=list,
        description="Follow-up history: each symptom's rating on the dates it was rated. "
        "`symptoms` still lists the symptoms present now; the ratings tell how a course of "
        "treatment began and how recovery is going. One rating per symptom and date.",
    )
