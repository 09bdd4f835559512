"""Cases written by clinical reviewers (a GP, a neurologist and a paediatrician) who had
not seen the engine's tests, one JSON file each in tests/reviewer_cases/ (r2_: the second
round): the patient (contract input, or a FHIR Bundle with its as_of), who wrote it, the
story with its guideline, and what a clinician would accept. They hold the engine to the
triage model at the boundaries the vignettes do not reach; unlike the vignettes, an
expectation may be a bound ("at least urgent").

Expectation keys (each optional): urgency; urgency_at_least / urgency_at_most; regimen
(null: no B12 treatment); next_steps_include / _exclude; warnings_include;
deficiency_status (one or a list); deficiency_status_not; neurological_involvement;
testing_recommended; lab_bands ({test: band}); differentials_exclude (absent or a poor
fit); milestones_exclude; text_must_contain / text_must_not_contain (in the whole JSON
answer, case-insensitive).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from b12dx.engine import assess
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.assessment import Assessment

CASES = sorted((Path(__file__).parent / "reviewer_cases").glob("*.json"))
CALMER = ["emergency", "urgent", "soon", "routine", "self_care"]  # most urgent first


def _problems(a: Assessment, expect: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    level = CALMER.index(a.urgency)
    if "urgency" in expect:
        check(a.urgency == expect["urgency"], f"urgency {a.urgency}, expected {expect['urgency']}")
    if "urgency_at_least" in expect:
        want = expect["urgency_at_least"]
        check(level <= CALMER.index(want), f"urgency {a.urgency}, expected at least {want}")
    if "urgency_at_most" in expect:
        want = expect["urgency_at_most"]
        check(level >= CALMER.index(want), f"urgency {a.urgency}, expected at most {want}")
    if "regimen" in expect:
        got = a.treatment.regimen if a.treatment else None
        check(got == expect["regimen"], f"regimen {got}, expected {expect['regimen']}")
    steps = [s.id for s in a.next_steps]
    for sid in expect.get("next_steps_include", []):
        check(sid in steps, f"next step {sid} missing from {steps}")
    for sid in expect.get("next_steps_exclude", []):
        check(sid not in steps, f"next step {sid} given")
    warnings = [w.id for w in a.warnings]
    for wid in expect.get("warnings_include", []):
        check(wid in warnings, f"warning {wid} missing from {warnings}")
    if "deficiency_status" in expect:
        want = expect["deficiency_status"]
        allowed = want if isinstance(want, list) else [want]
        check(a.deficiency_status in allowed, f"status {a.deficiency_status}, expected {want}")
    for bad in expect.get("deficiency_status_not", []):
        check(a.deficiency_status != bad, f"status {bad}")
    for key in ("neurological_involvement", "testing_recommended"):
        if key in expect:
            got = getattr(a, key)
            check(got == expect[key], f"{key} {got}, expected {expect[key]}")
    bands = {x.test: x.band for x in a.labs}
    for test, band in expect.get("lab_bands", {}).items():
        check(bands.get(test) == band, f"{test} band {bands.get(test)}, expected {band}")
    fits = {d.id: d.fit for d in a.differentials}
    for did in expect.get("differentials_exclude", []):
        check(fits.get(did) in (None, "poor"), f"differential {did} offered ({fits.get(did)})")
    milestones = [m.id for m in a.recovery_milestones]
    for mid in expect.get("milestones_exclude", []):
        check(mid not in milestones, f"milestone {mid} given")
    text = a.model_dump_json().lower()
    for s in expect.get("text_must_contain", []):
        check(s.lower() in text, f"answer does not say {s!r}")
    for s in expect.get("text_must_not_contain", []):
        check(s.lower() not in text, f"answer says {s!r}")
    return out


def _assessed(case: dict[str, Any]) -> Assessment:
    """The contract record as given, or the FHIR Bundle read as the EHR sends it."""
    if "bundle" not in case:
        return assess(case["patient"])
    as_of = dt.date.fromisoformat(case["as_of"])
    resources = [e["resource"] for e in case["bundle"]["entry"]]
    record = record_from_resources(resources, as_of, load_knowledge()).record
    return assess(record)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_reviewer_case(path: Path) -> None:
    case = json.loads(path.read_text())
    problems = _problems(_assessed(case), case["expect"])
    assert not problems, f"{case['description']}\n  " + "\n  ".join(problems)


def test_there_are_cases_from_each_reviewer() -> None:
    who = {json.loads(p.read_text())["reviewer"] for p in CASES}
    assert who >= {"GP", "neurologist", "paediatrician"} and len(CASES) >= 30
