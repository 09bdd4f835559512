"""Triage properties over the whole vocabulary (issue: triage is a model, not a list).

Every symptom id in the knowledge base, every age group and both doors (the contract
record and a FHIR Bundle of the same person) are drawn from; nothing here names a
symptom. Each property says what a clinician relies on:

- a new (sudden, or within days) neurological deficit is an emergency with no B12 plan,
  whatever the rest of the record, the treatment given or the door;
- making a finding sudden, newer, progressing or more severe never lowers the urgency;
- adding a finding never lowers it; a lower B12 or haemoglobin never lowers it;
- being on treatment never lowers the urgency of a new deficit;
- self care only on the positive patterns (the strain pattern of seed-weakness, a recent
  normal B12 with no symptom), never on a record with nothing to go on;
- the FHIR door gives the contract door's triage for the same person.

The alternative-cause findings (role "other": local soreness, exertion, swelling, a
relapsing course) are left out of the monotonicity properties: they are what makes the
ordinary strain pattern, the one positive reason the seed gives for self care, so adding
them may lower the urgency by design (rule suspicion.strain_pattern).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from b12dx import InputError, assess
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from test_properties import PROFILES, valid_records

KB = load_knowledge()
ORDER = {u.id: u.order for u in KB.urgency.values()}
SYMPTOMS = sorted(KB.symptoms)
NOT_OTHER = [s for s in SYMPTOMS if KB.symptoms[s].role != "other"]
DEFICITS = [
    s
    for s in SYMPTOMS
    if KB.symptom_groups[KB.symptoms[s].group].neurological and KB.symptoms[s].deficit
]
CODED = [s for s in SYMPTOMS if any(c.system == "SNOMED CT" for c in KB.symptoms[s].codes)]
# One age in each age group (triage.yaml), drawn anywhere inside the group.
_BOUNDS = [0.0, *[g.below for g in KB.triage.age_groups if g.below is not None], 120.0]
AGES = st.one_of(
    *[st.floats(low, high - 0.01, allow_nan=False) for low, high in itertools.pairwise(_BOUNDS)]
)
SELF_CARE_RULES = {"urgency.strain_self_care", "urgency.normal_result_self_care"}


def _order(record: dict[str, Any], profile: str | None = None) -> int:
    return ORDER[assess(record, profile=profile).urgency]


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """The record without alternative-cause findings (see the module docstring)."""
    out = copy.deepcopy(record)
    out["symptoms"] = [s for s in out.get("symptoms", []) if KB.symptoms[s["id"]].role != "other"]
    return out


def _aged(record: dict[str, Any], age: float) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out["age_years"] = age
    for key in ("pregnant", "breastfeeding"):
        if age < 12:
            out.pop(key, None)
    return out


def _valid(record: dict[str, Any]) -> bool:
    try:
        assess(record)
    except InputError:
        return False
    return True


def _with(record: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out["symptoms"] = [s for s in out.get("symptoms", []) if s["id"] != entry["id"]] + [entry]
    return out


# -- a new deficit ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    record=valid_records(),
    profile=st.sampled_from(PROFILES),
    deficit=st.sampled_from(DEFICITS),
    age=AGES,
    days=st.one_of(st.just(None), st.integers(0, 7)),
)
def test_a_new_deficit_is_an_emergency_with_no_b12_plan(
    record: dict[str, Any], profile: str | None, deficit: str, age: float, days: int | None
) -> None:
    """Sudden (the word) or begun within 7 days (the duration, whatever the word): any
    nerve, brain, cord or eye deficit, at any age, on treatment or not (NG128 1.1.1)."""
    entry: dict[str, Any] = {"id": deficit}
    if days is None:
        entry["onset"] = "sudden"
    else:
        entry["duration_weeks"] = days / 7
    case = _with(_aged(_plain(record), age), entry)
    assume(_valid(case))
    result = assess(case, profile=profile)
    assert result.urgency == "emergency", (deficit, days, result.urgency_reasons)
    assert result.treatment is None and result.recovery_milestones == []


@settings(max_examples=150, deadline=None)
@given(
    record=valid_records(),
    deficit=st.sampled_from(DEFICITS),
    days=st.integers(0, 7),
    doses=st.integers(1, 12),
)
def test_treatment_never_lowers_the_urgency_of_a_new_deficit(
    record: dict[str, Any], deficit: str, days: int, doses: int
) -> None:
    as_of = dt.date.fromisoformat(record["as_of"])
    case = _with(_plain(record), {"id": deficit, "duration_weeks": days / 7})
    case["b12_treatment"] = [
        {
            "date": (as_of - dt.timedelta(days=14 * i)).isoformat(),
            "drug": "hydroxocobalamin",
            "route": "im",
            "dose_mg": 1.0,
        }
        for i in range(doses)
    ]
    assume(_valid(case))
    assert assess(case).urgency == "emergency"


# -- monotonicity -----------------------------------------------------------------------

_CHANGES = ("sudden", "newer", "progressing", "severe")


def _changed(entry: dict[str, Any], change: str, days: int) -> dict[str, Any]:
    out = dict(entry)
    if change == "sudden":
        out["onset"] = "sudden"
    elif change == "newer":  # begun more recently than recorded (a date kept a date)
        if out.get("duration_weeks") is not None and out["duration_weeks"] > days / 7:
            out["duration_weeks"] = days / 7
    elif change == "progressing":
        out["progressing"] = True
    else:
        out["severity"] = "severe"
    return out


@settings(max_examples=300, deadline=None)
@given(
    record=valid_records(),
    profile=st.sampled_from(PROFILES),
    change=st.sampled_from(_CHANGES),
    days=st.integers(0, 400),
    pick=st.integers(0, 7),
)
def test_a_sudden_newer_progressing_or_severe_finding_never_lowers_urgency(
    record: dict[str, Any], profile: str | None, change: str, days: int, pick: int
) -> None:
    record = _plain(record)
    symptoms = record.get("symptoms", [])
    assume(symptoms)
    entry = symptoms[pick % len(symptoms)]
    worse = _with(record, _changed(entry, change, days))
    assume(_valid(record) and _valid(worse))
    assert _order(worse, profile) <= _order(record, profile), (entry, change)


@settings(max_examples=300, deadline=None)
@given(
    record=valid_records(),
    profile=st.sampled_from(PROFILES),
    sid=st.sampled_from(NOT_OTHER),
    onset=st.sampled_from([None, "gradual", "sudden"]),
    weeks=st.one_of(st.just(None), st.floats(0, 200, allow_nan=False)),
)
def test_adding_a_finding_never_lowers_urgency(
    record: dict[str, Any],
    profile: str | None,
    sid: str,
    onset: str | None,
    weeks: float | None,
) -> None:
    record = _plain(record)
    assume(all(s["id"] != sid for s in record.get("symptoms", [])))
    entry: dict[str, Any] = {"id": sid}
    if onset:
        entry["onset"] = onset
    if weeks is not None:
        entry["duration_weeks"] = weeks
    more = _with(record, entry)
    assume(_valid(record) and _valid(more))
    assert _order(more, profile) <= _order(record, profile), entry


# Each test in a unit of its own, over the range where its bands are crossed.
_LAB_RANGES = {
    "total_b12": ("pg/mL", 60.0, 900.0),
    "active_b12": ("pmol/L", 10.0, 150.0),
    "hemoglobin": ("g/L", 60.0, 170.0),
}


@settings(max_examples=300, deadline=None)
@given(
    record=valid_records(),
    profile=st.sampled_from(PROFILES),
    test=st.sampled_from(sorted(_LAB_RANGES)),
    value=st.floats(0, 1),
    factor=st.floats(0.3, 0.95),
)
def test_a_lower_b12_or_haemoglobin_never_lowers_urgency(
    record: dict[str, Any], profile: str | None, test: str, value: float, factor: float
) -> None:
    unit, low, high = _LAB_RANGES[test]
    base = _plain(record)
    base["labs"] = [x for x in base.get("labs", []) if x["test"] != test]
    lab = {"test": test, "value": round(low + value * (high - low), 1), "unit": unit}
    lab["date"] = base["as_of"]
    lower = copy.deepcopy(base)
    base["labs"].append(lab)
    lower["labs"].append({**lab, "value": round(lab["value"] * factor, 1)})
    assume(_valid(base) and _valid(lower))
    assert _order(lower, profile) <= _order(base, profile), (lab, factor)


# -- self care --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(record=valid_records(), profile=st.sampled_from(PROFILES), age=AGES)
def test_nothing_but_a_positive_pattern_is_self_care(
    record: dict[str, Any], profile: str | None, age: float
) -> None:
    case = _aged(record, age)
    assume(_valid(case))
    result = assess(case, profile=profile)
    if result.urgency == "self_care":
        assert result.urgency_reasons[0].rule in SELF_CARE_RULES
    if not case.get("symptoms") and not case.get("labs") and not case.get("conditions"):
        assert result.urgency != "self_care"


# -- both doors -------------------------------------------------------------------------


def _born(as_of: dt.date, months: int) -> dt.date:
    """A birth date exactly ``months`` completed months before ``as_of``."""
    back = as_of.year * 12 + as_of.month - 1 - months
    return dt.date(back // 12, back % 12 + 1, min(as_of.day, 28))


def _age(months: int) -> float:
    """The age the contract is given: completed years, and under 2 the months as a
    fraction of a year (WHO's infant thresholds are in months)."""
    return months // 12 if months >= 24 else round(months / 12, 4)


def _bundle(as_of: dt.date, months: int, sex: str, findings: list[tuple[str, int | None]]) -> list:
    born = _born(as_of, months)
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p", "birthDate": born.isoformat(), "gender": sex}
    ]
    for i, (sid, days) in enumerate(findings):
        code = next(c for c in KB.symptoms[sid].codes if c.system == "SNOMED CT")
        resources.append(
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "subject": {"reference": "Patient/p"},
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code.code}]},
            }
        )
        if days is not None:  # else no date at all, as a problem list may hold it
            resources[-1]["onsetDateTime"] = (as_of - dt.timedelta(days=days)).isoformat()
    return resources


@settings(max_examples=200, deadline=None)
@given(
    as_of=st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
    months=st.one_of(st.integers(1, 36), st.integers(1, 100 * 12)),
    sex=st.sampled_from(["female", "male"]),
    findings=st.lists(
        st.tuples(st.sampled_from(CODED), st.one_of(st.none(), st.integers(1, 400))),
        min_size=1,
        max_size=4,
        unique_by=lambda f: f[0],
    ),
)
def test_the_fhir_door_gives_the_contract_doors_triage(
    as_of: dt.date, months: int, sex: str, findings: list[tuple[str, int | None]]
) -> None:
    """The same person as a FHIR Bundle (Conditions dated by onset, or with no date) and
    as a contract record (each finding's duration, or none): the same age, urgency, red
    flags and regimen, a baby's age in months included."""
    lived = (as_of - _born(as_of, months)).days  # nothing began before birth
    findings = [(sid, min(days, lived) if days is not None else None) for sid, days in findings]
    imported = record_from_resources(_bundle(as_of, months, sex, findings), as_of, KB)
    contract = {
        "as_of": as_of.isoformat(),
        "age_years": _age(months),
        "sex": sex,
        "symptoms": [
            {"id": sid} | ({"duration_weeks": days / 7} if days is not None else {})
            for sid, days in findings
        ],
    }
    assert imported.record["age_years"] == _age(months)
    via_fhir = assess(imported.record)
    via_contract = assess(contract)
    assert via_fhir.urgency == via_contract.urgency, (findings, imported.record)
    assert [f.id for f in via_fhir.red_flags] == [f.id for f in via_contract.red_flags]
    regimen = [x.treatment.regimen if x.treatment else None for x in (via_fhir, via_contract)]
    assert regimen[0] == regimen[1]
