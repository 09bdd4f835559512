"""Set-wise screening agrees with the single-patient engine, person by person.

10,000 synthetic people (``b12dx.synth.generate``, seed 0) are written as a FHIR Bulk Data
export, screened set-wise on DuckDB (``screen.load_fhir`` + ``screen.run.screen_tables``),
and each of them is also read with ``fhir.record.record_from_resources`` and assessed
with ``engine.assess`` at the same as_of and profile. For every gap the flagged person
ids must be the same on both sides.

The mapping: each gap and what the engine says for it. A person the engine sends to
emergency care has no B12 plan (rule emergency.whole_plan), so their B12 gaps are left
out of the comparison, and counted. Where the gap holds a window the
engine has no notion of (the engine judges a person now, screening also asks whether
something was done in time), the window is read from the contract record here, with the
same numbers screening reads from ``screening.yaml``:

- ``new_finding`` ⇔ the engine's triage alarm ``triage.new_finding`` at emergency or
  urgent (a finding first recorded within the acute window; dates never say sudden).
- ``maintenance_overdue`` ⇔ the engine's warning ``maintenance_overdue`` (the regimen it
  chooses, its maintenance interval after the last dose, plus the profile's grace; a
  course whose last dose was injected is dated as an injection course,
  treatment.injection_course). Compared among people whose engine regimen is an
  injection: a course whose last recorded dose was taken by mouth is dated by the oral
  regimen, which screening (injections only) does not judge; left out and counted.
- ``deficient_untreated`` ⇔ the latest total or active B12 result is in the
  ``deficient`` band, older than the treatment window (31 days), and the engine has no
  treatment under way or lapsed (no B12 course, no B12 supplement). Both sides can judge only people
  whose B12 was not started more than 31 days after the result: screening counts such a
  late start as the gap (the rule is "not treated within a month"), while the engine sees
  a course under way; those people are left out, and counted.
- ``indeterminate_not_followed_up`` ⇔ the latest total or active B12 result is
  ``indeterminate``, older than the follow-up window (91 days), and the engine's next
  steps order MMA or active B12 (or, for a result it finds out of date for today's
  symptoms, a fresh B12 test). The engine orders them only before treatment (no dose
  given) and whenever no MMA is on record; screening asks for the follow-up within 91
  days. Compared among people with no B12 dose and no MMA/active B12 at all after the
  result (otherwise the two questions differ by design).
- ``monitoring_due`` ⇔ the engine's risk factor ``metformin`` (a current course) and no
  B12 result on or after as_of minus 12 calendar months in the record.
- ``untested_at_risk`` ⇔ the engine recommends testing by
  ``testing.symptom_and_risk_factor`` on one of the screened risk factors
  (``screening.yaml untested_at_risk.risk_factors``; the engine also counts older age
  and the rest, screening does not: people whose only risk factors are outside the list
  are left out) and no B12 result in the last 12 months. Screening reads the signs the
  engine reads: a B12 symptom observed in ``fhir.yaml symptom_observation_months`` or a
  diabetic neuropathy diagnosis. The engine's blood signs (anaemia and macrocytosis from
  haemoglobin and MCV results) are not screened set-wise; the synthetic population has
  no such results, which the test checks.
- ``folic_acid_without_b12`` ⇔ the engine's warning ``folic_acid_masking`` for folic
  acid with no B12 treatment (its first reason; the second, low folate, is not a
  screening gap), and no B12 result since the course began or in the last 12 months,
  whichever is longer. The engine counts any B12 dose ever as treatment, screening only
  doses since then: compared among people with no dose before that date.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from b12dx.engine.assess import assess
from b12dx.engine.schedule import add_months
from b12dx.fhir.read import read_bulk_export
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.numbers import DAYS_PER_MONTH
from b12dx.screen.load_fhir import load_fhir
from b12dx.screen.rules import GAPS
from b12dx.screen.run import screen_tables
from b12dx.synth.generate import DEFAULT_AS_OF, generate

KB = load_knowledge()
PATIENTS = 10_000
AS_OF = DEFAULT_AS_OF
B12_TESTS = tuple(KB.screening.b12_tests)
W = KB.screening.windows
LOOKBACK = add_months(AS_OF, -W.test_lookback_months)

Record = dict[str, Any]


def _day(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def _b12_dates(r: Record) -> list[dt.date]:
    return [_day(x["date"]) for x in r.get("labs", []) if x["test"] in B12_TESTS]


def _dose_dates(r: Record) -> list[dt.date]:
    return [_day(d["date"]) for d in r.get("b12_treatment", [])]


def _tested_in_lookback(r: Record) -> bool:
    return any(d >= LOOKBACK for d in _b12_dates(r))


def _latest_b12(x: Assessment) -> Any:
    """The engine's latest total or active B12 result (the one screening bands)."""
    items = [i for i in x.labs if i.test in B12_TESTS and i.date is not None]
    return max(items, key=lambda i: i.date) if items else None


def _medication(r: Record, mid: str) -> Record | None:
    return next((m for m in r.get("medications", []) if m["id"] == mid), None)


# -- the engine's side of each gap: (flagged, judged) ------------------------------------


def engine_maintenance_overdue(r: Record, x: Assessment) -> tuple[bool, bool]:
    overdue = any(w.id == "maintenance_overdue" for w in x.warnings)
    doses = sorted(r.get("b12_treatment", []), key=lambda d: d["date"])
    judged = not doses or doses[-1]["route"] in KB.screening.maintenance.routes
    return overdue, judged


def engine_deficient_untreated(r: Record, x: Assessment) -> tuple[bool, bool]:
    lab = _latest_b12(x)
    if lab is None or lab.band != "deficient":
        return False, True
    late = lab.date + dt.timedelta(days=W.treatment_start_days)
    doses = _dose_dates(r)
    judged = not doses or min(doses) <= late  # a late start: the gap, but under way now
    # A course that lapsed and is loaded again (treatment.reload) was treated: its gap is
    # maintenance_overdue, not this one.
    under_way = x.treatment is not None and (
        x.treatment.under_way
        or x.treatment.rule in ("treatment.reload", "treatment.reload_on_treatment")
    )
    treated = under_way or _medication(r, "b12_supplement") is not None
    return late < AS_OF and not treated, judged


def engine_indeterminate(r: Record, x: Assessment) -> tuple[bool, bool]:
    lab = _latest_b12(x)
    if lab is None or lab.band != "indeterminate":
        return False, True
    follow = KB.screening.follow_up_tests[lab.test]
    after = [_day(y["date"]) for y in r.get("labs", []) if y["test"] in follow]
    judged = not _dose_dates(r) and not any(d >= lab.date for d in after)
    steps = {s.id for s in x.next_steps}
    ordered = steps & {f"order_{t}" for t in follow}
    # A result the engine finds out of date for today's symptoms (lab.out_of_date) is
    # followed up with a fresh B12 test rather than an MMA on the old sample.
    if not lab.used_for_status and "Out of date" in lab.text:
        ordered = steps & {"order_total_b12", "order_active_b12"}
    due = lab.date + dt.timedelta(days=W.follow_up_days) < AS_OF
    return bool(ordered) and due, judged


def engine_monitoring_due(r: Record, x: Assessment) -> tuple[bool, bool]:
    on_metformin = any(m.id == "metformin" for m in x.risk_factors)
    return on_metformin and not _tested_in_lookback(r), True


def engine_untested_at_risk(r: Record, x: Assessment) -> tuple[bool, bool]:
    screened = set(KB.screening.untested_at_risk.risk_factors)
    mine = {m.id for m in x.risk_factors}
    testing = any(s.rule == "testing.symptom_and_risk_factor" for s in x.suspicion.reasons)
    judged = not (testing and mine and not mine & screened)
    return testing and bool(mine & screened) and not _tested_in_lookback(r), judged


def engine_folic_acid(r: Record, x: Assessment) -> tuple[bool, bool]:
    course = _medication(r, "folic_acid")
    if course is None:
        return False, True
    # The course start as the record counts it (whole months of 365.25/12 days).
    start = AS_OF - dt.timedelta(days=math.ceil(course["duration_months"] * DAYS_PER_MONTH))
    since = min(start, LOOKBACK)
    masking = any(w.id == "folic_acid_masking" for w in x.warnings)
    treated = bool(_dose_dates(r)) or _medication(r, "b12_supplement") is not None
    tested = any(d >= since for d in _b12_dates(r))
    judged = not any(d < since for d in _dose_dates(r))
    return masking and not treated and not tested, judged


def engine_new_finding(r: Record, x: Assessment) -> tuple[bool, bool]:
    # Triage's new-finding rule at the levels screening lists (FHIR dates: acute).
    assert x.triage is not None
    alarms = [a for a in x.triage.alarms if a.rule == "triage.new_finding"]
    return any(a.level in ("emergency", "urgent") for a in alarms), True


ENGINE: dict[str, Callable[[Record, Assessment], tuple[bool, bool]]] = {
    "new_finding": engine_new_finding,
    "maintenance_overdue": engine_maintenance_overdue,
    "deficient_untreated": engine_deficient_untreated,
    "indeterminate_not_followed_up": engine_indeterminate,
    "monitoring_due": engine_monitoring_due,
    "untested_at_risk": engine_untested_at_risk,
    "folic_acid_without_b12": engine_folic_acid,
}


@dataclass
class Side:
    flagged: set[str] = field(default_factory=set)
    left_out: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, str]], Any]:
    """(screening: gap -> {person_id: reasons}, engine: gap -> Side, records, assessments)."""
    folder = tmp_path_factory.mktemp("agreement")
    export_dir = folder / "export"
    export_dir.mkdir()
    generate(PATIENTS, export_dir, "ndjson", seed=0, as_of=AS_OF, kb=KB)
    tables, _ = load_fhir(KB, export_dir, folder / "tables")
    result = screen_tables(tables, KB, KB.default_profile, AS_OF)
    screened: dict[str, dict[str, str]] = {gap: {} for gap in GAPS}
    for row in result.gaps.to_pylist():
        screened[row["gap"]][row["person_id"]] = row["reasons"]

    engine = {gap: Side() for gap in GAPS}
    records: dict[str, tuple[Record, Assessment]] = {}
    for pid, resources in read_bulk_export(export_dir):
        record = record_from_resources(resources, AS_OF, KB).record
        x = assess(record, as_of=AS_OF, knowledge=KB)
        records[pid] = (record, x)
        for gap, rule in ENGINE.items():
            flagged, judged = rule(record, x)
            # An emergency is the engine's whole plan (rule emergency.whole_plan): its
            # B12 gaps wait on that visit, so the two sides are compared without them.
            if x.red_flags and gap != "new_finding":
                judged = False
            if not judged:
                engine[gap].left_out.add(pid)
            elif flagged:
                engine[gap].flagged.add(pid)
    return screened, (engine, records)


def _disagreements(gap: str, screened: dict[str, str], side: Side, records: Any) -> str:
    only_screen = sorted(set(screened) - side.flagged - side.left_out, key=int)
    only_engine = sorted(side.flagged - set(screened), key=int)
    lines = [f"{gap}: {len(only_screen)} only by screening, {len(only_engine)} only by engine"]
    for pid in [*only_screen[:5], *only_engine[:5]]:
        record, x = records[pid]
        lines.append(
            f"- {pid}: screening: {screened.get(pid, 'not flagged')}\n"
            f"  engine: status {x.deficiency_status}; steps {[s.id for s in x.next_steps]}; "
            f"warnings {[w.id for w in x.warnings]}; "
            f"risk factors {[m.id for m in x.risk_factors]}\n  record: {record}"
        )
    return "\n".join(lines)


def test_the_population_is_large_and_holds_no_blood_count_the_screen_cannot_band(
    both: Any,
) -> None:
    _, (_, records) = both
    assert len(records) == PATIENTS
    tests = {lab["test"] for record, _ in records.values() for lab in record.get("labs", [])}
    assert not tests & {"hemoglobin", "mcv"}


@pytest.mark.parametrize("gap", GAPS)
def test_screening_and_the_engine_flag_the_same_people(gap: str, both: Any) -> None:
    screened, (engine, records) = both
    side = engine[gap]
    mine = set(screened[gap]) - side.left_out
    print(f"{gap}: {len(mine)} flagged, {len(side.left_out)} left out")
    assert mine, f"no one flagged for {gap}: the comparison would prove nothing"
    assert mine == side.flagged, _disagreements(gap, screened[gap], side, records)


def test_injections_for_a_cause_oral_b12_would_treat_are_dated_as_injections(
    both: Any,
) -> None:
    # People on injections whose cause (a medicine, diet) would choose oral B12: the
    # engine dates their course by the injection regimen (treatment.injection_course), so
    # it flags them overdue exactly when screening does, not two weeks after every dose.
    screened, (_, records) = both
    on_injections = {
        pid
        for pid, (_, x) in records.items()
        if x.treatment is not None and x.treatment.rule == "treatment.injection_course"
    }
    assert len(on_injections) >= 10
    engine_overdue = {
        pid
        for pid in on_injections
        if any(w.id == "maintenance_overdue" for w in records[pid][1].warnings)
    }
    assert engine_overdue == on_injections & set(screened["maintenance_overdue"])
    assert engine_overdue != on_injections  # most are up to date
