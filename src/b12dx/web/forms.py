"""Turn the HTML forms (patient check, clinician form) into a contract patient record.

The forms' field names are the contract's ids, so the knowledge base drives what is asked;
this module only reshapes fields into the record and leaves every check to the engine.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from b12dx.errors import FieldError, InputError
from b12dx.jsonio import TooDeep, loads
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
    if duration and _number(duration) is not None and not form.get("duration_unit"):
        problems.append(("duration_unit", "Choose weeks or months for how long you have had it"))
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
            said: dict[str, Any] = {"onset": q.onset} if q.onset else {}
            if q.progressing is not None:
                said["progressing"] = q.progressing
            for sid in (q.symptom, *q.also):
                symptoms[sid] = {"id": sid, **said}
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
    """The record from the clinician form, or from its JSON box when that is filled in;
    an InputError with every problem found (see :func:`clinician_answers`)."""
    record, problems = clinician_answers(form, kb)
    if problems:
        raise InputError(problems)
    return record


def clinician_answers(form: FormData, kb: Knowledge) -> tuple[dict[str, Any], list[FieldError]]:
    """The record from the clinician form and every problem the form itself shows, all
    at once: each FieldError's path is the id of the box to fix and its message is in
    plain words. A problem's value is left out of the record, so that the engine can
    still be asked about the rest (:func:`clinician_problems`); a missing or unreadable
    age is taken as 120 for that only, the age at which no date or duration is too long
    ago, so the stand-in adds no problem of its own."""
    pasted = form.get("record_json", "").strip()
    if pasted:
        try:
            data = loads(pasted)
        except TooDeep as exc:
            return {}, [FieldError("record_json", f"The pasted record is {exc}")]
        except json.JSONDecodeError as exc:
            message = f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            return {}, [FieldError("record_json", f"The pasted record is {message}")]
        except ValueError as exc:
            return {}, [FieldError("record_json", f"The pasted record is not valid: {exc}")]
        if not isinstance(data, dict):
            return {}, [FieldError("record_json", "The pasted record must be a JSON object")]
        return data, []
    # The red-flag block asks each one; none is assumed absent.
    problems = [
        FieldError(f"sym_{sid}_yes", f"Answer yes or no for {_lower(s.clinical_name)}")
        for sid, s in kb.symptoms.items()
        if s.group == "red_flag" and form.get(f"sym_{sid}") not in ("yes", "no")
    ]
    clean = dict(form)
    for field, label in _clinician_numbers(form, kb):
        raw = form.get(field, "").strip()
        if raw and _number(raw) is None:
            problems.append(FieldError(field, f"{_refused(raw)}. Enter {label} as a number"))
            clean[field] = ""
    if not clean.get("age_years", "").strip():
        if not form.get("age_years", "").strip():
            problems.append(FieldError("age_years", "Enter the age in years, for example 67"))
        clean["age_years"] = "120"
    return _clinician_fields(clean, kb), problems


def _lower(name: str) -> str:
    return name[:1].lower() + name[1:] if name[1:2].islower() else name


def _clinician_numbers(form: FormData, kb: Knowledge) -> list[tuple[str, str]]:
    """The clinician form's number boxes that count (their row ticked or dated), each
    with what it holds in words."""
    boxes = [("age_years", "the age in years")]
    for sid, s in kb.symptoms.items():
        if form.get(f"sym_{sid}") == "yes":
            boxes.append((f"sym_{sid}_weeks", f"the weeks of {_lower(s.clinical_name)}"))
    if form.get("cond_chronic_kidney_disease"):
        boxes.append(("cond_chronic_kidney_disease_egfr", "the eGFR"))
    for mid, m in kb.medications.items():
        if form.get(f"med_{mid}"):
            boxes.append((f"med_{mid}_months", f"the months on {_lower(m.name)}"))
    for test in LAB_TESTS:
        name = _lower(kb.labs[test].name)
        boxes.append((f"lab_{test}_value", f"the {name} result"))
        boxes.append((f"lab_{test}_low", f"the laboratory's lower limit for {name}"))
        boxes.append((f"lab_{test}_high", f"the laboratory's upper limit for {name}"))
    for n in range(8):
        if form.get(f"dose_{n}_date"):
            boxes.append((f"dose_{n}_mg", f"dose {n + 1} in mg"))
    return boxes


def _clinician_fields(form: FormData, kb: Knowledge) -> dict[str, Any]:
    """The record from the clinician form's boxes (every number in them readable)."""
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


# An engine problem's field (the record's path) -> the clinician form's box (its id).
_ENTRY_BOX = {
    "symptoms": {"duration_weeks": "sym_{}_weeks", "onset": "sym_{}_onset",
                 "severity": "sym_{}_severity", "progressing": "sym_{}_progressing"},
    "conditions": {"egfr": "cond_{}_egfr"},
    "medications": {"duration_months": "med_{}_months"},
    "labs": {"value": "lab_{}_value", "unit": "lab_{}_unit", "date": "lab_{}_date",
             "reference_low": "lab_{}_low", "reference_high": "lab_{}_high"},
    "b12_treatment": {"date": "dose_{}_date", "dose_mg": "dose_{}_mg",
                      "drug": "dose_{}_drug", "route": "dose_{}_route"},
}  # fmt: skip
_ENTRY_PATH = re.compile(r"(\w+)\[(\d+)\]\.?(\w*)")
_TOP_BOX = {"age_years": "the age", "sex": "sex", "pregnant": "pregnant",
            "breastfeeding": "breastfeeding", "diet": "diet", "ethnicity": "family background",
            "as_of": "the assessment date"}  # fmt: skip


def clinician_problems(
    errors: Iterable[FieldError], record: Mapping[str, Any], form: FormData, kb: Knowledge
) -> list[tuple[str, str]]:
    """The engine's problems with a record made by the clinician form, as (id of the box
    to fix, what to do in words a GP reads). A pasted record keeps the record's paths:
    who pastes JSON reads them, and there is no box but the JSON one to link to."""
    if form.get("record_json", "").strip():
        return [("record_json", f"Check the pasted record: {e}") for e in errors]
    return [_plain(e, record, form, kb) for e in errors]


def without_problems(record: Mapping[str, Any], errors: Iterable[FieldError]) -> dict[str, Any]:
    """A copy of ``record`` without the values the engine refused (an entry whose id,
    test, value or date is refused goes whole), to ask the engine about the rest: it
    checks the record's shape before what depends on the knowledge base or the date, so
    a second look finds what the first could not."""
    out = copy.deepcopy(dict(record))
    gone: dict[str, set[int]] = {}
    for e in errors:
        match = _ENTRY_PATH.fullmatch(e.path)
        if match is None:
            if e.path == "age_years":
                out["age_years"] = 120  # as in clinician_answers: no date is too early
            elif e.path and e.path != "as_of":
                out.pop(e.path, None)
            continue
        part, index, field = match.group(1), int(match.group(2)), match.group(3)
        entries = out.get(part)
        if not isinstance(entries, list) or index >= len(entries):
            continue
        if field in ("", "id", "test", "value", "date"):
            gone.setdefault(part, set()).add(index)
        else:
            entries[index].pop(field, None)
    for part, indexes in gone.items():
        out[part] = [x for i, x in enumerate(out[part]) if i not in indexes]
    return out


def _plain(
    error: FieldError, record: Mapping[str, Any], form: FormData, kb: Knowledge
) -> tuple[str, str]:
    box, label = _box(error.path, record, form, kb)
    message, accepted = error.message, error.accepted
    if message.startswith("is required for") and box.endswith("_unit"):
        return box, f"Choose the unit of {label}"
    if "outside what is possible" in message:
        return box, f"{_upper(label)} is outside what is possible: enter {accepted}"
    bounds = re.fullmatch(r"must be (less|greater) than( or equal to)? (\S+)", message)
    if bounds:
        side, equal, limit = bounds.groups()
        more = side == "greater"
        if equal:
            return box, f"{_upper(label)} must be {limit} or {'more' if more else 'less'}"
        return box, f"{_upper(label)} must be {'more' if more else 'less'} than {limit}"
    after = re.fullmatch(r"(\S+) is after (as_of|today) \(?([\d-]+)\)?", message)
    if after:
        day, limit, bound = after.groups()
        than = "today" if limit == "today" else "the assessment date"
        return box, (
            f"{_upper(label)} ({day}) is after {than} ({bound}): enter that day or an earlier one"
        )
    if message == "must be below reference_high":
        return box, f"{_upper(label)} must be below the upper limit"
    if message == "is required":
        return box, f"Enter {label}"
    text = f"{_upper(label)}: {message}"
    return box, text + (f" (enter {accepted})" if accepted else "")


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _box(path: str, record: Mapping[str, Any], form: FormData, kb: Knowledge) -> tuple[str, str]:
    """The box that holds ``path`` of the record, and what it holds in words."""
    if path in _TOP_BOX:
        return path, _TOP_BOX[path]
    match = _ENTRY_PATH.fullmatch(path)
    entries = record.get(match.group(1)) if match else None
    if not match or not isinstance(entries, list) or int(match.group(2)) >= len(entries):
        return "main", "The record"
    part, index, field = match.group(1), int(match.group(2)), match.group(3)
    entry = entries[index]
    if part == "b12_treatment":
        # The record holds the dated rows of the doses table only.
        n = [k for k in range(8) if form.get(f"dose_{k}_date")][index]
        name = f"dose {n + 1}" + (f" {field.replace('_', ' ')}" if field else "")
        return _ENTRY_BOX[part].get(field, "dose_{}_date").format(n), name
    key = entry.get("test" if part == "labs" else "id", "")
    if part == "labs":
        name = f"the {_lower(kb.labs[key].name)} result" if key in kb.labs else "a result"
        words = {"unit": name, "date": f"the date of {name}",
                 "reference_low": f"the laboratory's lower limit for {name}",
                 "reference_high": f"the laboratory's upper limit for {name}"}  # fmt: skip
        template = _ENTRY_BOX["labs"].get(field, "lab_{}_value")
        if key == "intrinsic_factor_antibody":
            template = "lab_{}_date" if field == "date" else "lab_{}_value"
        return template.format(key), words.get(field, name)
    names: dict[str, Mapping[str, object]] = {
        "symptoms": kb.symptoms,
        "conditions": kb.conditions,
        "medications": kb.medications,
    }
    item = names.get(part, {}).get(key)
    name = _lower(getattr(item, "clinical_name", None) or getattr(item, "name", key))
    words = {"duration_weeks": f"the weeks of {name}", "egfr": "the eGFR",
             "duration_months": f"the months on {name}"}  # fmt: skip
    prefix = {"symptoms": "sym", "conditions": "cond", "medications": "med"}.get(part, "exp")
    box = _ENTRY_BOX.get(part, {}).get(field, prefix + "_{}").format(key)
    return box, words.get(field, name)
