"""Turn the HTML forms (patient check, clinician form) into a contract patient record.

The forms' field names are the contract's ids, so the knowledge base drives what is asked;
this module only reshapes fields into the record and leaves every check to the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.typed_numbers import read_number, refusal

FormData = Mapping[str, str]


LAB_TESTS = (
    "total_b12",
    "active_b12",
    "mma",
    "homocysteine",
    "hemoglobin",
    "mcv",
    "serum_folate",
    "egfr",
)


def _ticked(
    form: FormData, prefix: str, ids: Iterable[str], suffix: str, key: str, path: str
) -> list[dict[str, Any]]:
    """The ids ticked in a form (``{prefix}_{id}``), each with the number typed beside it
    (``{prefix}_{id}_{suffix}``) as ``key`` when there is one; errors named by ``path``."""
    chosen: list[dict[str, Any]] = []
    for item in ids:
        if form.get(f"{prefix}_{item}"):
            entry: dict[str, Any] = {"id": item}
            number = form_number(form, f"{prefix}_{item}_{suffix}", path.format(item))
            if number is not None:
                entry[key] = number
            chosen.append(entry)
    return chosen


def form_number(form: FormData, field: str, path: str | None = None) -> float | None:
    """A number typed in a form, None when left empty; an InputError naming ``path``
    (default the field) when it is not one plain decimal (see :mod:`typed_numbers`)."""
    return read_number(form.get(field, ""), path or field)


def red_flags_answered(form: FormData, kb: Knowledge) -> bool:
    return any(form.get(q.id) for q in kb.red_flag_questions.values())


def check_problems(form: FormData, kb: Knowledge) -> list[tuple[str, str]]:
    """What the patient check cannot go on without, in plain words (GOV.UK error
    messages: what to do, with an example), each with the id of the answer to fix."""
    problems: list[tuple[str, str]] = []
    if not red_flags_answered(form, kb) and not form.get("rf_none"):
        problems.append(("rf_none", "Tick what is happening to you now, or tick 'None of these'"))
    duration = form.get("duration_value", "").strip()
    if duration and _number(duration) is None:
        problems.append(
            ("duration_value", f"{_refused(duration)}. Enter how long as a number, for example 6")
        )
    age = form.get("age_years", "").strip()
    number = _number(age) if age else None
    if not age:
        problems.append(("age_years", "Enter your age in years, for example 67"))
    elif number is None or not 0 <= number <= 120:
        problems.append(("age_years", "Enter your age as a number of years, for example 67"))
    for test in LAB_TESTS:
        raw = form.get(f"lab_{test}_value", "").strip()
        if not raw:
            continue
        name = kb.labs[test].name
        name = name[:1].lower() + name[1:]
        if _number(raw) is None:
            problems.append(
                (f"lab_{test}_value", f"{_refused(raw)}. Enter the {name} result as a number")
            )
        elif not form.get(f"lab_{test}_unit"):
            problems.append(
                (f"lab_{test}_unit", f"Choose the unit printed beside your {name} result")
            )
    return problems


def _number(text: str) -> float | None:
    try:
        return read_number(text, "")
    except InputError:
        return None


def _refused(text: str) -> str:
    """Why a typed number is refused, as a sentence for the person who typed it."""
    message = refusal(text.strip(), "").message
    return message[:1].upper() + message[1:]


def _labs(form: FormData, kb: Knowledge, detailed: bool) -> list[dict[str, Any]]:
    labs: list[dict[str, Any]] = []
    for test in LAB_TESTS:
        value = form_number(form, f"lab_{test}_value", f"labs.{test}.value")
        if value is None:
            continue
        lab: dict[str, Any] = {
            "test": test,
            "value": value,
            "unit": form.get(f"lab_{test}_unit") or None,
        }
        if form.get(f"lab_{test}_date"):
            lab["date"] = form[f"lab_{test}_date"]
        if detailed:
            for ref in ("low", "high"):
                ref_value = form_number(form, f"lab_{test}_{ref}", f"labs.{test}.reference_{ref}")
                if ref_value is not None:
                    lab[f"reference_{ref}"] = ref_value
        labs.append(lab)
    ifa = form.get("lab_intrinsic_factor_antibody_value")
    if ifa in ("positive", "negative"):
        lab = {"test": "intrinsic_factor_antibody", "value": ifa}
        if form.get("lab_intrinsic_factor_antibody_date"):
            lab["date"] = form["lab_intrinsic_factor_antibody_date"]
        labs.append(lab)
    return labs


def _common(form: FormData) -> dict[str, Any]:
    age = form_number(form, "age_years", "age_years")
    if age is None:
        raise InputError.single("age_years", "is required", "a number of years, 0 to 120")
    record: dict[str, Any] = {
        "age_years": age,
        "sex": form.get("sex") or "unknown",
        "pregnant": form.get("pregnant") == "yes",
        "breastfeeding": form.get("breastfeeding") == "yes",
        "diet": form.get("diet") or "omnivore",
    }
    if form.get("ethnicity"):
        record["ethnicity"] = form["ethnicity"]
    return record


def patient_check_record(form: FormData, kb: Knowledge) -> dict[str, Any]:
    """The record from the plain-language patient check."""
    record = _common(form)
    symptoms: dict[str, dict[str, Any]] = {}
    for q in kb.red_flag_questions.values():
        if form.get(q.id):
            symptoms[q.symptom] = {"id": q.symptom, **({"onset": q.onset} if q.onset else {})}
    onset = form.get("onset") if form.get("onset") in ("gradual", "sudden") else None
    amount = form_number(form, "duration_value", "duration")
    weeks = None
    if amount is not None:
        weeks = amount * (4.35 if form.get("duration_unit") == "months" else 1)
    progressing = {"yes": True, "no": False}.get(form.get("progressing", ""))
    for sid in kb.symptoms:
        if form.get(f"sym_{sid}") and sid not in symptoms:
            entry: dict[str, Any] = {"id": sid}
            if onset:
                entry["onset"] = onset
            if weeks is not None:
                entry["duration_weeks"] = weeks
            if progressing is not None and kb.symptoms[sid].role == "b12":
                entry["progressing"] = progressing
            symptoms[sid] = entry
    record["symptoms"] = list(symptoms.values())
    record["conditions"] = [{"id": c} for c in kb.conditions if form.get(f"cond_{c}")]
    record["medications"] = [
        {"id": m, **({"duration_months": 24} if form.get(f"med_{m}_long") else {})}
        for m in kb.medications
        if form.get(f"med_{m}")
    ]
    record["exposures"] = [{"id": e} for e in kb.exposures if form.get(f"exp_{e}")]
    record["labs"] = _labs(form, kb, detailed=False)
    return record


def clinician_record(form: FormData, kb: Knowledge) -> dict[str, Any]:
    """The record from the clinician form, or from its JSON box when that is filled in."""
    pasted = form.get("record_json", "").strip()
    if pasted:
        try:
            data = json.loads(pasted)
        except json.JSONDecodeError as exc:
            raise InputError.single(
                "record_json", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        if not isinstance(data, dict):
            raise InputError.single("record_json", "must be a JSON object")
        return data
    unanswered = [
        FieldError(f"symptoms.{sid}", f"answer yes or no: {s.clinical_name}", "yes, no")
        for sid, s in kb.symptoms.items()
        if s.group == "red_flag" and form.get(f"sym_{sid}") not in ("yes", "no")
    ]
    if unanswered:  # the form's red-flag block asks each one; none is assumed absent
        raise InputError(unanswered)
    record = _common(form)
    if form.get("as_of"):
        record["as_of"] = form["as_of"]
    symptoms = []
    for sid in kb.symptoms:
        if form.get(f"sym_{sid}") != "yes":  # "no" is the red-flag block's explicit answer
            continue
        entry: dict[str, Any] = {"id": sid}
        if form.get(f"sym_{sid}_onset") in ("gradual", "sudden"):
            entry["onset"] = form[f"sym_{sid}_onset"]
        weeks = form_number(form, f"sym_{sid}_weeks", f"symptoms.{sid}.duration_weeks")
        if weeks is not None:
            entry["duration_weeks"] = weeks
        if form.get(f"sym_{sid}_severity") in ("mild", "moderate", "severe"):
            entry["severity"] = form[f"sym_{sid}_severity"]
        if form.get(f"sym_{sid}_progressing"):
            entry["progressing"] = True
        symptoms.append(entry)
    record["symptoms"] = symptoms
    record["conditions"] = _ticked(
        form, "cond", kb.conditions, "egfr", "egfr", "conditions.{}.egfr"
    )
    record["medications"] = _ticked(
        form, "med", kb.medications, "months", "duration_months", "medications.{}.duration_months"
    )
    record["exposures"] = [{"id": e} for e in kb.exposures if form.get(f"exp_{e}")]
    record["labs"] = _labs(form, kb, detailed=True)
    doses = []
    for n in range(8):
        if not form.get(f"dose_{n}_date"):
            continue
        dose: dict[str, Any] = {
            "date": form[f"dose_{n}_date"],
            "drug": form.get(f"dose_{n}_drug") or "hydroxocobalamin",
            "route": form.get(f"dose_{n}_route") or "im",
        }
        mg = form_number(form, f"dose_{n}_mg", f"b12_treatment[{n}].dose_mg")
        if mg is not None:
            dose["dose_mg"] = mg
        doses.append(dose)
    record["b12_treatment"] = doses
    return record
