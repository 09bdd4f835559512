"""Turn untrusted input into a valid ``PatientRecord`` or a clear ``InputError``.

Structure and types come from the pydantic model; everything the knowledge base decides
(ids, units, plausible ranges) and everything that depends on ``as_of`` (no date in the
future) is checked here, and every problem is reported with its field path and what is
accepted. Nothing is guessed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from b12dx.engine.units import accepted_units, find_unit
from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.models.patient import DATE_EXPECTED, PatientRecord

_UNION_TAGS = {"int", "float", "str", "bool", "date", "none"}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, str) and _is_branch(part):
            continue  # the branch of a union pydantic tried for the field before it
        else:
            out += f".{part}" if out else part
        previous = part
    return out


def _is_branch(part: str) -> bool:
    # Only after a field name: a field may itself be called "date" (labs[0].date).
    return part.split("[")[0] in _UNION_TAGS or part.startswith(("literal[", "function-"))


def _message(err: Any) -> str:
    if err["type"].startswith("date_"):  # pydantic's date_parsing, date_from_datetime_...
        return f"{err['input']!r} is not a date ({DATE_EXPECTED})"
    return str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")


def _from_pydantic(exc: ValidationError) -> InputError:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for err in exc.errors():
        path = _path(err["loc"])
        if path in seen:
            continue
        seen.add(path)
        kind = err["type"]
        if kind == "extra_forbidden":
            fields = _fields_at(err["loc"])
            errors.append(FieldError(path, "unknown field", fields))
        elif kind == "missing":
            errors.append(FieldError(path, "is required"))
        else:
            errors.append(FieldError(path, _message(err)))
    return InputError(errors)


def _fields_at(loc: tuple[int | str, ...]) -> str:
    from b12dx.models import patient

    model: Any = PatientRecord
    nested = {
        "symptoms": patient.SymptomEntry,
        "conditions": patient.ConditionEntry,
        "medications": patient.MedicationEntry,
        "exposures": patient.ExposureEntry,
        "labs": patient.LabResult,
        "b12_treatment": patient.TreatmentDose,
        "symptom_ratings": patient.SymptomRating,
    }
    if len(loc) > 1 and isinstance(loc[0], str) and loc[0] in nested:
        model = nested[loc[0]]
    return ", ".join(model.model_fields)


def parse_patient(data: Mapping[str, Any] | PatientRecord) -> PatientRecord:
    """Check the record's structure and types (no knowledge base needed)."""
    if isinstance(data, PatientRecord):
        return data
    if not isinstance(data, Mapping):
        raise InputError.single("", "the patient record must be a JSON object")
    try:
        return PatientRecord.model_validate(data)
    except ValidationError as exc:
        raise _from_pydantic(exc) from None


def _one_of(ids: Mapping[str, object]) -> str:
    return ", ".join(ids)


def _bound(value: float, up: bool) -> float:
    """A limit of the plausible range to 3 significant figures, rounded inwards so the
    limit shown is itself accepted (27.1076 ng/L is shown as 27.2)."""
    quantum = 10.0 ** (math.floor(math.log10(value)) - 2)
    steps = math.ceil(value / quantum - 1e-9) if up else math.floor(value / quantum + 1e-9)
    return round(steps * quantum, 10)


def check_patient(patient: PatientRecord, kb: Knowledge, as_of: dt.date) -> None:
    """Every knowledge-base and date check; raises one InputError listing all problems."""
    errors: list[FieldError] = []
    add = errors.append

    if patient.pregnant and patient.sex == "male":
        add(FieldError("pregnant", "cannot be true when sex is male"))
    if patient.breastfeeding and patient.sex == "male":
        add(FieldError("breastfeeding", "cannot be true when sex is male"))
    if (patient.pregnant or patient.breastfeeding) and patient.age_years < 10:
        add(FieldError("pregnant", f"is not plausible at age {patient.age_years:g}"))

    def check_ids(field: str, entries: list[Any], table: Mapping[str, object]) -> None:
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if entry.id not in table:
                add(FieldError(f"{field}[{i}].id", f"unknown id {entry.id!r}", _one_of(table)))
            elif entry.id in seen:
                add(FieldError(f"{field}[{i}].id", f"{entry.id!r} is listed twice"))
            seen.add(entry.id)

    check_ids("symptoms", patient.symptoms, kb.symptoms)
    check_ids("conditions", patient.conditions, kb.conditions)
    check_ids("medications", patient.medications, kb.medications)
    check_ids("exposures", patient.exposures, kb.exposures)

    weeks_alive = patient.age_years * 52.18 + 40  # a newborn's history can predate birth
    # Nothing is measured or given before birth: a person aged N on as_of was born at
    # most N + 1 years before it (a typed 1900 for 2019 was read as a current result).
    lifetime = dt.timedelta(days=math.ceil((patient.age_years + 1) * 365.25))
    born_by = as_of - lifetime if as_of - dt.date.min > lifetime else dt.date.min

    def not_before_birth(field: str, day: dt.date) -> None:
        if day < born_by:
            add(
                FieldError(
                    field,
                    f"{day} is before the person was born (aged {patient.age_years:g} on {as_of})",
                    f"a date from {born_by} to {as_of}",
                )
            )

    for i, s in enumerate(patient.symptoms):
        if s.duration_weeks is not None and s.duration_weeks > weeks_alive:
            add(FieldError(f"symptoms[{i}].duration_weeks", "is longer than the person's life"))
    for i, m in enumerate(patient.medications):
        if m.duration_months is not None and m.duration_months > patient.age_years * 12 + 1:
            add(FieldError(f"medications[{i}].duration_months", "is longer than the person's life"))
    for i, c in enumerate(patient.conditions):
        if c.egfr is not None and c.id != "chronic_kidney_disease":
            add(FieldError(f"conditions[{i}].egfr", "only applies to chronic_kidney_disease"))

    for i, lab in enumerate(patient.labs):
        where = f"labs[{i}]"
        test = kb.labs.get(lab.test)
        if test is None:
            add(FieldError(f"{where}.test", f"unknown test {lab.test!r}", _one_of(kb.labs)))
            continue
        if lab.date is not None and lab.date > as_of:
            add(FieldError(f"{where}.date", f"{lab.date} is after as_of {as_of}"))
        elif lab.date is not None:
            not_before_birth(f"{where}.date", lab.date)
        if test.kind == "qualitative":
            if not isinstance(lab.value, str) or lab.value not in test.values:
                add(
                    FieldError(
                        f"{where}.value",
                        f"{lab.value!r} is not a result of {test.id}",
                        " or ".join(test.values),
                    )
                )
            if lab.unit is not None:
                add(FieldError(f"{where}.unit", f"{test.id} has no unit; leave it out"))
            continue
        if isinstance(lab.value, str | bool):
            add(FieldError(f"{where}.value", f"must be a number for {test.id}"))
            continue
        if not math.isfinite(lab.value):
            add(FieldError(f"{where}.value", "must be a finite number"))
            continue
        if lab.unit is None or not lab.unit.strip():
            add(FieldError(f"{where}.unit", f"is required for {test.id}", accepted_units(test)))
            continue
        unit = find_unit(kb, test, lab.unit)
        if unit is None:
            add(
                FieldError(
                    f"{where}.unit",
                    f"{lab.unit!r} is not a unit of {test.id}",
                    accepted_units(test),
                )
            )
            continue
        assert test.plausible_si is not None
        low, high = test.plausible_si
        si = lab.value * unit.factor
        if not low <= si <= high:
            add(
                FieldError(
                    f"{where}.value",
                    f"{lab.value:g} {unit.unit} is outside what is possible for {test.id}",
                    f"{_bound(low / unit.factor, up=True):g} to "
                    f"{_bound(high / unit.factor, up=False):g} {unit.unit}",
                )
            )
        for ref in ("reference_low", "reference_high"):
            ref_value = getattr(lab, ref)
            if ref_value is not None and (not math.isfinite(ref_value) or ref_value <= 0):
                add(FieldError(f"{where}.{ref}", "must be a positive number in the result's unit"))
        if (
            lab.reference_low is not None
            and lab.reference_high is not None
            and lab.reference_low >= lab.reference_high
        ):
            add(FieldError(f"{where}.reference_low", "must be below reference_high"))

    for i, dose in enumerate(patient.b12_treatment):
        if dose.date > as_of:
            add(FieldError(f"b12_treatment[{i}].date", f"{dose.date} is after as_of {as_of}"))
        else:
            not_before_birth(f"b12_treatment[{i}].date", dose.date)

    # A rating dated after as_of is an error, as a lab or a dose is: the record describes
    # the person as of that date, and a later rating is either a typing slip or a history
    # that should have been cut at as_of (the follow-up store does so).
    rated: dict[tuple[str, dt.date], int] = {}
    for i, r in enumerate(patient.symptom_ratings):
        where = f"symptom_ratings[{i}]"
        if r.id not in kb.symptoms:
            add(FieldError(f"{where}.id", f"unknown id {r.id!r}", _one_of(kb.symptoms)))
        if r.date > as_of:
            add(FieldError(f"{where}.date", f"{r.date} is after as_of {as_of}"))
        else:
            not_before_birth(f"{where}.date", r.date)
        first = rated.setdefault((r.id, r.date), i)
        if first != i:
            add(
                FieldError(
                    f"{where}.date",
                    f"{r.id!r} is already rated on {r.date} (symptom_ratings[{first}])",
                    "one rating per symptom and date",
                )
            )

    if errors:
        raise InputError(errors)


def resolve_as_of(patient: PatientRecord, as_of: dt.date | None) -> dt.date:
    """The assessment date: the argument wins, else the record's; one is required."""
    chosen = as_of or patient.as_of
    if chosen is None:
        raise InputError.single(
            "as_of", "is required (the date the assessment is made for)", "a date as YYYY-MM-DD"
        )
    return chosen
