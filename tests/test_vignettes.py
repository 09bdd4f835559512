"""Worked patient vignettes: one JSON file each in tests/vignettes/, with the patient
(contract input), the profile and as_of, and the facts the assessment must show.

Expectation keys (each optional; only those present are checked):
  testing_recommended, suspicion, neurological_involvement, deficiency_status, urgency,
  pathway_step, pathway_states ({step id: state}), regimen (null = no treatment), drug,
  route, duration, under_way, duration_settled, overdue_since, review_dates,
  schedule_first (date of the first listed dose), schedule_min_doses,
  schedule_phases ({"loading": n, "maintenance": n} minimum counts),
  next_steps_include / next_steps_exclude, warnings_include / warnings_exclude,
  notes_include, risk_factors_include / risk_factors_exclude, risk_factor_names_include
  / _exclude, red_flags_include,
  lab_bands ({test: band}), lab_si ({test: value_si}), milestones ({id: date}),
  milestones_exclude, milestones_count, differential_fit ({id: fit}; null = not shown),
  diet_rda (the US RDA), diet_life_stage, diet_reference_micrograms (the profile country's),
  diet_foods_include / _exclude, diet_foods_count, diet_text_include ([substring] of the
  diet text and notes),
  treatment_rule, treatment_text_include ([substring]), schedule_dates_include ([date]),
  recovery_progress ({milestone: status}, exactly the milestones judged; {} for none),
  recovery_progress_symptoms ({milestone: [symptom id]}), note_text_include
  ({note id: [substring]}), next_step_text_include ({step id: [substring]}),
  status_text_include ([substring] of the status reasons).
A case whose record is invalid expects only input_errors: the field paths that
``InputError`` must name.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from b12dx.engine import assess
from b12dx.errors import InputError
from b12dx.models.assessment import Assessment

VIGNETTES = sorted((Path(__file__).parent / "vignettes").glob("*.json"))


def _check(a: Assessment, expect: dict[str, Any]) -> list[str]:
    problems: list[str] = []

    def same(name: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{name}: expected {want!r}, got {got!r}")

    simple = {
        "testing_recommended": a.testing_recommended,
        "suspicion": a.suspicion.level,
        "neurological_involvement": a.neurological_involvement,
        "deficiency_status": a.deficiency_status,
        "urgency": a.urgency,
        "pathway_step": a.diagnostic_pathway.current_step,
    }
    for key, got in simple.items():
        if key in expect:
            same(key, got, expect[key])
    states = {x.id: x.state for x in a.diagnostic_pathway.steps}
    for step, state in expect.get("pathway_states", {}).items():
        same(f"pathway_states.{step}", states.get(step), state)
    t = a.treatment
    if "regimen" in expect:
        same("regimen", t.regimen if t else None, expect["regimen"])
    for key in ("drug", "route", "duration", "under_way", "duration_settled", "overdue_since"):
        if key in expect:
            got = getattr(t, key) if t else None
            same(key, str(got) if isinstance(got, dt.date) else got, expect[key])
    if "review_dates" in expect:
        same(
            "review_dates", [str(d) for d in t.review_dates] if t else None, expect["review_dates"]
        )
    if "schedule_first" in expect:
        same(
            "schedule_first",
            str(t.schedule[0].date) if t and t.schedule else None,
            expect["schedule_first"],
        )
    if "treatment_rule" in expect:
        same("treatment_rule", t.rule if t else None, expect["treatment_rule"])
    for words in expect.get("treatment_text_include", []):
        if not t or words not in t.text:
            problems.append(f"treatment text should include {words!r}; got {t and t.text!r}")
    scheduled = {str(d.date) for d in t.schedule} if t else set()
    for date in expect.get("schedule_dates_include", []):
        if date not in scheduled:
            problems.append(f"schedule should include a dose on {date}")
    if "schedule_min_doses" in expect and (not t or len(t.schedule) < expect["schedule_min_doses"]):
        problems.append(
            f"schedule has {len(t.schedule) if t else 0} doses, "
            f"expected at least {expect['schedule_min_doses']}"
        )
    for phase, n in expect.get("schedule_phases", {}).items():
        got = sum(1 for d in t.schedule if d.phase == phase) if t else 0
        if got < n:
            problems.append(f"schedule has {got} {phase} doses, expected at least {n}")

    for key, ids in (
        ("next_steps", [s.id for s in a.next_steps]),
        ("warnings", [w.id for w in a.warnings]),
        ("notes", [n.id for n in a.notes]),
        ("risk_factors", [r.id for r in a.risk_factors]),
        ("risk_factor_names", [r.name for r in a.risk_factors]),
        ("red_flags", [r.id for r in a.red_flags]),
        ("milestones", [m.id for m in a.recovery_milestones]),
    ):
        for want in expect.get(f"{key}_include", []):
            if want not in ids:
                problems.append(f"{key} should include {want!r}; got {ids}")
        for unwanted in expect.get(f"{key}_exclude", []):
            if unwanted in ids:
                problems.append(f"{key} should not include {unwanted!r}")

    used = {lab.test: lab for lab in a.labs if lab.used_for_status}
    for test, band in expect.get("lab_bands", {}).items():
        same(f"lab_bands.{test}", used[test].band if test in used else None, band)
    for test, value in expect.get("lab_si", {}).items():
        got = used[test].value_si if test in used else None
        if got is None or abs(got - value) > 0.05 * max(abs(value), 0.01):
            problems.append(f"lab_si.{test}: expected about {value}, got {got}")
    dates = {m.id: str(m.expected_by) for m in a.recovery_milestones}
    if "milestones_count" in expect:
        same("milestones_count", len(a.recovery_milestones), expect["milestones_count"])
    for mid, date in expect.get("milestones", {}).items():
        same(f"milestones.{mid}", dates.get(mid), date)
    progress = {p.id: p for p in a.recovery_progress}
    if "recovery_progress" in expect:
        same(
            "recovery_progress",
            {k: p.status for k, p in progress.items()},
            expect["recovery_progress"],
        )
    for mid, symptom_ids in expect.get("recovery_progress_symptoms", {}).items():
        got = [x.id for x in progress[mid].symptoms] if mid in progress else None
        same(f"recovery_progress_symptoms.{mid}", got, symptom_ids)
    note_texts = {n.id: n.text for n in a.notes}
    for sid, pieces in expect.get("next_step_text_include", {}).items():
        texts = [x.text for x in a.next_steps if x.id == sid]
        for piece in pieces:
            if not any(piece in text for text in texts):
                problems.append(f"next step {sid} should say {piece!r}; got {texts!r}")
    for words in expect.get("status_text_include", []):
        told = " ".join(r.text for r in a.status_reasons)
        if words not in told:
            problems.append(f"status reasons should say {words!r}; got {told!r}")
    for nid, pieces in expect.get("note_text_include", {}).items():
        for piece in pieces:
            if piece not in note_texts.get(nid, ""):
                problems.append(f"note {nid} should include {piece!r}; got {note_texts.get(nid)!r}")
    fits = {d.id: d.fit for d in a.differentials}
    for did, fit in expect.get("differential_fit", {}).items():
        same(f"differential_fit.{did}", fits.get(did), fit)
    if "diet_rda" in expect:
        same("diet_rda", a.diet.rda_micrograms, expect["diet_rda"])
    foods = [x.id for x in a.diet.foods]
    for food in expect.get("diet_foods_include", []):
        if food not in foods:
            problems.append(f"diet foods should include {food!r}; got {foods}")
    for food in expect.get("diet_foods_exclude", []):
        if food in foods:
            problems.append(f"diet foods should not include {food!r}")
    if "diet_foods_count" in expect:
        same("diet_foods_count", len(foods), expect["diet_foods_count"])
    if "diet_reference_micrograms" in expect:
        same(
            "diet_reference_micrograms",
            a.diet.reference_intake_micrograms,
            expect["diet_reference_micrograms"],
        )
    for words in expect.get("diet_text_include", []):
        told = " ".join([a.diet.text, *a.diet.notes])
        if words not in told:
            problems.append(f"diet advice should say {words!r}; got {told!r}")
    if "diet_life_stage" in expect:
        same("diet_life_stage", a.diet.life_stage, expect["diet_life_stage"])
    return problems


def test_there_are_at_least_forty_vignettes() -> None:
    assert len(VIGNETTES) >= 40


@pytest.mark.parametrize("path", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_vignette(path: Path) -> None:
    case = json.loads(path.read_text())
    if "input_errors" in case["expect"]:
        with pytest.raises(InputError) as caught:
            assess(case["patient"], profile=case.get("profile"))
        paths = [e.path for e in caught.value.errors]
        assert paths == case["expect"]["input_errors"], f"{case['description']}\n  {paths}"
        return
    a = assess(case["patient"], profile=case.get("profile"))
    problems = _check(a, case["expect"])
    assert not problems, f"{case['description']}\n  " + "\n  ".join(problems)
