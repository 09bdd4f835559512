"""The care gaps as Ibis expressions over the screening tables (``model``), built
from the facts they share (``facts``) and the numbers resolved for the date
(``thresholds``).

``build_gaps`` builds one expression; whichever backend holds the tables (DuckDB, PySpark)
executes it, so the rules exist once. Every threshold is read from the knowledge base and
the profile where the engine reads it:

- B12 bands: the profile's bands for total and active B12 (``profiles.yaml``), compared in
  SI: a cut-off written for a unit family is multiplied by that family's factor
  (``labs.yaml``), and a result is compared with the cut-offs of the family it came in.
- Long-term medicines: the risk factor trigger's ``min_duration_months``
  (``risk_factors.yaml``; none for metformin, so every current course counts, as in the
  engine). Courses are the engine's: orders at most ``fhir.yaml medication_runs.gap_days``
  apart are one course, current when open, reaching as_of, or continued by a later order.
- Maintenance: the interval of the injection regimen the engine chooses (the profile's
  ``regimen_by_cause``): its neurological regimen for a person with a neurological B12
  symptom in the symptom window, else the longest interval among the profile's other
  injection regimens (``regimens.yaml``), plus the profile's ``maintenance_grace_days``.
- Windows (12 months, 91 days, 31 days) and lists: ``screening.yaml``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from b12dx.engine import triage
from b12dx.engine.course import loading_step_days
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import DAYS_IN_A_MONTH_AT_LEAST, Profile, Regimen, RegimenPhase
from b12dx.screen import facts
from b12dx.screen.facts import (
    all_current_courses,
    current_courses,
    latest_results,
    risk_factor_facts,
)
from b12dx.screen.model import SCHEMAS
from b12dx.screen.thresholds import Interval, Tables, Thresholds, thresholds

# The facts the rules share, by name, and "narrow": whether a rule first narrows a table
# to the people it could flag (``facts.only``).
Ctx = dict[str, Any]


GAPS = (
    "new_finding",
    "untested_at_risk",
    "monitoring_due",
    "indeterminate_not_followed_up",
    "deficient_untreated",
    "folic_acid_without_b12",
    "maintenance_overdue",
)


def _last_test(ctx: Ctx, candidates: ir.Table) -> ir.Table:
    """(person_id, last_test): the date of the last B12 test on or before as_of of each
    candidate tested, read for the candidates only (a few of the people tested)."""
    tests = ctx["test_dates"]
    tests = facts.only(tests, candidates, ctx["narrow"])
    return tests.group_by("person_id").aggregate(last_test=tests.date.max())


def _untested(candidates: ir.Table, ctx: Ctx, th: Thresholds) -> ir.Table:
    """The candidates with no B12 test on or after lookback_start, with the text saying so
    in ``untested``."""
    last = _last_test(ctx, candidates)
    j = candidates.left_join(last, "person_id").select(candidates, last.last_test)
    j = j.filter(j.last_test.isnull() | (j.last_test < ibis.literal(th.lookback_start)))
    text = (
        ibis.literal(f"no B12 test since {th.lookback_start} (last: ")
        + ibis.coalesce(facts.text(j.last_test), ibis.literal("none on record"))
        + ")"
    )
    return j.mutate(untested=text).drop("last_test")


def _untested_at_risk(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    ua = kb.screening.untested_at_risk
    a = ibis.literal(th.as_of)
    f = t["finding"]
    b12_symptoms = [s.id for s in kb.symptoms.values() if s.role == "b12"]
    sym = f.filter(
        f.kind == "symptom",
        f.id.isin(b12_symptoms),
        f.date <= a,
        f.date >= ibis.literal(th.symptom_start),
    )
    sym = sym.select("person_id", sign=sym.id + " recorded " + facts.text(sym.date), on=sym.date)
    dx = facts.active_conditions(t, th, ua.presenting_conditions)
    dx = dx.select(
        "person_id",
        sign=dx.condition_id
        + ibis.ifelse(dx.start_date.isnull(), "", " since " + facts.text(dx.start_date)),
        on=dx.start_date,
    )
    signs = ibis.union(sym, dx, distinct=False)
    signs = signs.group_by("person_id").aggregate(
        signs=facts.join_texts(signs.sign), since=signs.on.min()
    )
    # The risk factors' text only for the people with a sign (a few of those at risk).
    rf = ctx["rf_facts"]
    rf = facts.only(rf, signs, ctx["narrow"])
    risks = rf.group_by("person_id").aggregate(risks=facts.join_texts(rf.fact))
    j = _untested(risks.join(signs, "person_id"), ctx, th)
    return j.select(
        "person_id",
        reasons="risk factors: " + j.risks + "; signs: " + j.signs + "; " + j.untested,
        since=j.since,
    )


def _new_finding(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    """Rule screen.new_finding, the engine's triage (rule triage.new_finding) read from
    dates: a finding that needs the person seen now or today when it is new, first
    recorded within triage's acute window. A date never says "sudden", so the acute level
    decides. The person is seen first; the B12 gaps wait on that visit."""
    alarm = sorted(
        sid
        for sid in kb.symptoms
        if triage.level_when_new(kb, sid, "acute") in ("emergency", "urgent")
    )
    f = t["finding"]
    a = ibis.literal(th.as_of)
    sym = f.filter(f.kind == "symptom", f.id.isin(alarm), f.date <= a)
    first = sym.group_by(["person_id", "id"]).aggregate(first=sym.date.min())
    window = kb.triage.tempo.acute_within_days
    new = first.filter(first.first >= ibis.literal(th.as_of - dt.timedelta(days=window)))
    new = new.select("person_id", "first", sign=new.id + " first recorded " + facts.text(new.first))
    rows = new.group_by("person_id").aggregate(
        signs=facts.join_texts(new.sign), since=new.first.min()
    )
    return rows.select(
        "person_id",
        reasons=f"new within {window:g} days, to be seen now (not a B12 list): " + rows.signs,
        since=rows.since,
    )


def _monitoring_due(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    trig = kb.risk_factors["metformin"].trigger
    c = current_courses(
        ctx["courses"], th, trig.medication or ["metformin"], trig.min_duration_months
    )
    j = _untested(c, ctx, th)
    return j.select(
        "person_id",
        reasons="metformin since " + facts.text(j.course_start) + "; " + j.untested,
        since=j.course_start,
    )


def _indeterminate(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    r = ctx["latest"]
    r = r.filter(
        r.band == "indeterminate",
        r.date + facts.days(th.follow_up_days) < ibis.literal(th.as_of),
    )
    lab = t["lab"]
    parts = []
    for test, follow in kb.screening.follow_up_tests.items():
        rr = r.filter(r.test == test)
        fu = lab.filter(lab.test.isin(follow))
        done = rr.join(
            fu,
            [
                rr.person_id == fu.person_id,
                fu.date >= rr.date,
                fu.date <= rr.date + facts.days(th.follow_up_days),
            ],
        ).select(rr.person_id)
        missing = rr.anti_join(done, "person_id")
        parts.append(
            missing.select(
                "person_id",
                reasons=facts.result_text(kb, missing)
                + f"; no {' or '.join(follow)} within {th.follow_up_days} days after",
                since=missing.date,
            )
        )
    return ibis.union(*parts, distinct=False)


def _deficient_untreated(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    r = ctx["latest"]
    r = r.filter(
        r.band == "deficient", r.date + facts.days(th.treatment_days) < ibis.literal(th.as_of)
    )
    # A recorded diagnosis of B12 deficiency (conditions.yaml b12_deficiency: ICD-10 D51,
    # E53.8) is deficiency as the engine reads it (status.recorded_diagnosis): untreated a
    # month after it was recorded, it is the same gap.
    c = t["condition"]
    dx = c.filter(
        c.condition_id == "b12_deficiency",
        c.start_date.notnull(),
        c.start_date + facts.days(th.treatment_days) < ibis.literal(th.as_of),
        c.end_date.isnull() | (c.end_date >= ibis.literal(th.as_of)),
    )
    given = ctx["b12_given"]

    def untreated(rows: ir.Table, on: str) -> ir.Table:
        # Any B12 given before the fact, or up to a month after it, is treatment (a result
        # drawn after B12 was given does not diagnose, engine.labs): the first B12 ever
        # given is later than that, or there is none.
        j = rows.left_join(given, "person_id").select(rows, given.first_given)
        late = j.first_given > (j[on] + facts.days(th.treatment_days))
        return j.filter(j.first_given.isnull() | late).drop("first_given")

    missing = untreated(r, "date")
    by_result = missing.select("person_id", reason=facts.result_text(kb, missing), on=missing.date)
    # A person is treated for their recorded diagnoses when B12 was first given no later
    # than a month after the latest of them (before it counts too), as the old join of
    # every diagnosis with every dose read it.
    by_dx = dx.group_by("person_id").aggregate(
        since=dx.start_date.min(), latest=dx.start_date.max()
    )
    by_dx = untreated(by_dx, "latest")
    by_dx = by_dx.select(
        "person_id",
        reason="B12 deficiency diagnosed (recorded) on " + facts.text(by_dx.since),
        on=by_dx.since,
    )
    both = ibis.union(by_result, by_dx, distinct=False)
    missing = both.group_by("person_id").aggregate(
        reasons=facts.join_texts(both.reason), since=both.on.min()
    )
    return missing.select(
        "person_id",
        reasons=missing.reasons + f"; no B12 treatment within {th.treatment_days} days after",
        since=missing.since,
    )


def _folic_acid(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    c = current_courses(ctx["courses"], th, ["folic_acid"], None)
    a = ibis.literal(th.as_of)
    c = c.mutate(since=ibis.least(c.course_start, ibis.literal(th.lookback_start)))
    # B12 since ``since``: a test (the last on or before as_of is on or after it), an
    # order begun by as_of running to it or later (an open order runs to as_of), or a dose
    # on or before as_of (the last is on or after it).
    last, given = _last_test(ctx, c), ctx["b12_given"]
    j = c.left_join(last, "person_id").select(c, last.last_test)
    j = j.left_join(given, "person_id").select(j, given.order_reach, given.last_dose)
    b12_since = (
        (j.last_test >= j.since) | (j.order_reach >= j.since) | (j.last_dose >= j.since)
    ).fill_null(False)
    c = j.filter(~b12_since).select("person_id", "course_start", "since")
    # Folic acid in pregnancy prevents neural tube defects and is not this gap
    # (note.folic_acid_pregnancy): a pregnancy recorded within fhir.yaml
    # pregnancy_max_days before as_of, as the single-patient reader counts it.
    f = t["finding"]
    since = ibis.literal(th.as_of - dt.timedelta(days=kb.fhir.pregnancy_max_days))
    pregnant = f.filter(
        f.kind == "pregnancy", f.date.isnull() | ((f.date <= a) & (f.date >= since))
    ).select("person_id")
    gap = c.anti_join(pregnant, "person_id")
    return gap.select(
        "person_id",
        reasons="folic acid since "
        + facts.text(gap.course_start)
        + "; no B12 test or B12 treatment since "
        + facts.text(gap.since),
        since=gap.course_start,
    )


def _after(day: ir.DateValue, phase: RegimenPhase) -> ir.DateValue:
    """The next dose of an interval phase (DuckDB returns date + months as a timestamp:
    cast back to a date)."""
    if phase.every_months is not None:
        return (day + ibis.interval(months=phase.every_months)).cast("date")
    return (day + facts.days(phase.every_days or 1)).cast("date")


def _course_due(
    regimen: Regimen,
    th: Thresholds,
    n: ir.IntegerValue,
    last: ir.DateValue,
    start: ir.DateValue,
    prev_last: ir.DateValue,
) -> tuple[ir.DateValue, ir.IntegerValue]:
    """(next dose due, its allowance in days) for a course of ``n`` doses begun on
    ``start`` whose dose before the last was on ``prev_last``, counted into the regimen's
    phases as engine.course.position counts them."""
    review = (start + ibis.interval(months=th.review_months)).cast("date")
    branches: list[tuple[ir.BooleanValue, ir.DateValue, int]] = []
    final = regimen.phases[-1]
    if len(regimen.phases) > 1:
        # Doses already at the maintenance interval are maintenance (engine.course.position).
        spaced = prev_last.notnull() & (
            (last + facts.days(th.grace_days)).cast("date") >= _after(prev_last, final)
        )
        branches.append((spaced, _after(last, final), th.grace_days))
    before = 0  # doses in the fixed-count phases before this one
    phases = regimen.phases
    for index, phase in enumerate(phases[:-1]):
        grace = th.loading_grace_days if phase.phase == "loading" else th.grace_days
        if phase.until == "first_review":
            if index != len(phases) - 2:
                raise ValueError(f"{regimen.id}: only the last loading phase may run to review")
            branches.append((ibis.literal(th.as_of) < review, _after(last, phase), grace))
            continue
        count = len(phase.day_offsets) if phase.day_offsets is not None else phase.doses
        assert count is not None
        for taken in range(count):
            if phase.day_offsets is not None:
                gap = (
                    phase.day_offsets[taken] - phase.day_offsets[taken - 1]
                    if taken
                    else max(phase.day_offsets[0], 1)
                )
                due = (last + facts.days(gap)).cast("date")
            else:
                due = _after(last, phase)
            if before + taken > 0:
                branches.append((n == before + taken, due, grace))
        before += count
    due_expr: ir.DateValue = ibis.cases(
        *((c, d) for c, d, _ in branches), else_=_after(last, final)
    )
    grace_expr: ir.IntegerValue = ibis.cases(
        *((c, ibis.literal(g)) for c, _, g in branches), else_=ibis.literal(th.grace_days)
    )
    return due_expr, grace_expr


def _maintenance_overdue(t: Tables, th: Thresholds, kb: Knowledge, ctx: Ctx) -> ir.Table:
    """A course of injections whose next dose, loading or maintenance, is later than its
    allowance: the regimen's phases counted as engine.course counts them."""
    neuro_regimen, other_regimen = th.regimens
    d = t["b12_dose"]
    d = d.filter(
        d.route.isin(kb.screening.maintenance.routes),
        d.drug.isin(sorted({neuro_regimen.drug, other_regimen.drug})),
        d.date <= ibis.literal(th.as_of),
    )
    d = d.select("person_id", "date").distinct()
    # Neurological involvement (a neurological B12 symptom in the window, or an active
    # diagnosis that stands for one, conditions.yaml presents_as) chooses the neurological
    # regimen, as in engine.treatment.
    f = t["finding"]
    by_symptom = f.filter(
        f.kind == "symptom",
        f.id.isin(sorted(kb.neurological_symptoms)),
        f.date <= ibis.literal(th.as_of),
        f.date >= ibis.literal(th.symptom_start),
    ).select("person_id")
    standing = sorted(
        c.id for c in kb.conditions.values() if set(c.presents_as) & kb.neurological_symptoms
    )
    by_diagnosis = facts.active_conditions(t, th, standing).select("person_id")
    neuro = ibis.union(by_symptom, by_diagnosis, distinct=True)
    neuro = neuro.mutate(neuro=ibis.literal(True))
    # A dose later than the maintenance interval and its grace after the one before it
    # begins a new course (engine.course.current_course). One pass over each person's
    # doses in date order finds where the current course begins under either regimen; the
    # person's regimen then chooses one.
    w = ibis.window(group_by="person_id", order_by="date")
    d = d.mutate(
        prev=d.date.lag().over(w), next=d.date.lead().over(w), rn=ibis.row_number().over(w)
    )
    gap_before = d.date.delta(d.prev, unit="day")
    gap_after = d.next.delta(d.date, unit="day")

    def restarts(r: Regimen) -> ir.BooleanValue:
        final = r.phases[-1]
        grace = th.grace_days
        if final.every_months is not None:
            # Exact month arithmetic only where the gap in days leaves it in doubt.
            at_least = DAYS_IN_A_MONTH_AT_LEAST * final.every_months + grace
            exact = _after(d.prev, final) + facts.days(grace) < d.date
            lapsed = ibis.ifelse(gap_before > at_least, exact, ibis.literal(False))
        else:
            lapsed = gap_before > (final.every_days or 1) + grace
        step = loading_step_days(r) + th.loading_grace_days
        return ibis.ifelse(gap_after <= step, lapsed, ibis.literal(False)).fill_null(False)

    first = d.prev.isnull()
    n_restart = first | restarts(neuro_regimen)
    o_restart = first | restarts(other_regimen)
    per = d.group_by("person_id").aggregate(
        n=d.count(),
        last_dose=d.date.max(),
        last_prev=d.prev.argmax(d.date),
        n_start=d.date.max(where=n_restart),
        n_from=d.rn.max(where=n_restart),
        o_start=d.date.max(where=o_restart),
        o_from=d.rn.max(where=o_restart),
    )
    per = per.left_join(neuro, "person_id").select(per, is_neuro=neuro.neuro.notnull())
    course_start = ibis.ifelse(per.is_neuro, per.n_start, per.o_start)
    g = per.select(
        "person_id",
        "is_neuro",
        "last_dose",
        course_start=course_start,
        # The doses from the course start on: row numbers count from 0 and the dates are
        # distinct, so n minus the start's row number.
        doses=per.n - ibis.ifelse(per.is_neuro, per.n_from, per.o_from),
        prev_last=ibis.ifelse(per.last_prev >= course_start, per.last_prev, ibis.null("date")),
    )
    g = g.filter(g.doses >= kb.screening.maintenance.min_doses)
    n_due, n_grace = _course_due(
        neuro_regimen, th, g.doses, g.last_dose, g.course_start, g.prev_last
    )
    o_due, o_grace = _course_due(
        other_regimen, th, g.doses, g.last_dose, g.course_start, g.prev_last
    )

    def words(i: Interval) -> str:
        return f"{i.months} months" if i.months is not None else f"{i.days} days"

    n, o = th.maintenance
    g = g.mutate(
        due=ibis.ifelse(g.is_neuro, n_due, o_due),
        grace=ibis.ifelse(g.is_neuro, n_grace, o_grace),
        regimen=ibis.ifelse(
            g.is_neuro,
            ibis.literal(f"{n.regimen}, neurological; maintenance every {words(n)}"),
            ibis.literal(f"{o.regimen}; maintenance every {words(o)}"),
        ),
    )
    g = g.filter(g.due + g.grace.as_interval("D") < ibis.literal(th.as_of))
    return g.select(
        "person_id",
        reasons="last B12 injection "
        + facts.text(g.last_dose)
        + " ("
        + facts.text(g.doses)
        + " injections since "
        + facts.text(g.course_start)
        + "); the next was due on "
        # Ibis types date + months as a date, DuckDB returns a timestamp and the cast is
        # elided: the first 10 characters are the date on every backend.
        + facts.text(g.due).substr(0, 10)
        + " ("
        + g.regimen
        + "), "
        + facts.text(g.grace)
        + " days' allowance has passed",
        since=g.due.cast("date"),
    )


_BUILDERS = {
    "new_finding": _new_finding,
    "untested_at_risk": _untested_at_risk,
    "monitoring_due": _monitoring_due,
    "indeterminate_not_followed_up": _indeterminate,
    "deficient_untreated": _deficient_untreated,
    "folic_acid_without_b12": _folic_acid,
    "maintenance_overdue": _maintenance_overdue,
}


def build_gaps(
    t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date, *, narrow: bool = False
) -> ir.Table:
    """One row per flagged person and gap: person_id, gap, rule_id, sources, reasons,
    since (the date of the fact that opened the gap, for the worklist's order), as_of,
    age_band, care_site, risk_factors. Only people alive and adult on as_of are screened.
    ``narrow``: the rules narrow tables to the people they could flag first
    (``facts.only``),
    which DuckDB runs faster and Spark cannot plan; the rows are the same."""
    th = thresholds(kb, profile, as_of)
    risk_ids = kb.screening.untested_at_risk.risk_factors
    medicines = {"folic_acid", *(kb.risk_factors["metformin"].trigger.medication or ["metformin"])}
    for rf_id in risk_ids:
        medicines.update(kb.risk_factors[rf_id].trigger.medication or [])
    courses = all_current_courses(t, th, sorted(medicines))
    results = facts.b12_tests(t, th, kb, "person_id", "test", "value_si", "unit_family", "date")
    ctx: Ctx = {
        "narrow": narrow,
        "courses": courses,
        "rf_facts": risk_factor_facts(t, th, kb, risk_ids, courses),
        "test_dates": facts.b12_tests(t, th, kb, "person_id", "test", "date"),
        "latest": latest_results(results, kb, profile),
        "b12_given": facts.b12_given(t, th),
    }
    parts = []
    for gap in GAPS:
        rule = kb.rules[f"screen.{gap}"]
        rows = _BUILDERS[gap](t, th, kb, ctx)
        parts.append(
            rows.select(
                "person_id",
                gap=ibis.literal(gap),
                rule_id=ibis.literal(rule.id),
                sources=ibis.literal(list(rule.sources), type="array<string>"),
                reasons="reasons",
                since=rows.since.cast("date"),
            )
        )
    gaps = ibis.union(*parts, distinct=False)
    gaps = facts.screened(gaps, t, th, kb, narrow=narrow)
    # The risk factors of the people flagged (most people with one are not).
    rf = ctx["rf_facts"]
    rf = facts.only(rf, gaps, narrow)
    per_person = rf.group_by("person_id").aggregate(risk_factors=rf.risk_factor.collect().sort())
    out = gaps.left_join(per_person, "person_id").select(
        gaps.person_id,
        gaps.gap,
        gaps.rule_id,
        gaps.sources,
        gaps.reasons,
        since=gaps.since,
        as_of=ibis.literal(as_of),
        age_band=gaps.age_band,
        care_site=gaps.care_site,
        risk_factors=ibis.coalesce(per_person.risk_factors, ibis.literal([], type="array<string>")),
    )
    return out.order_by(["gap", "person_id"])


@dataclass(frozen=True)
class CompiledGaps:
    """``build_gaps`` as DuckDB SQL over views named ``screen_<table>``, and the Arrow
    schema of its result."""

    sql: str
    schema: pa.Schema

    def run(self, con: Any) -> pa.Table:
        """The gaps, on an Ibis DuckDB connection holding the ``screen_<table>`` views."""
        return con.raw_sql(self.sql).fetch_arrow_table().cast(self.schema)


def compile_gaps(kb: Knowledge, profile: Profile, as_of: dt.date) -> CompiledGaps:
    """The gap rules compiled from the knowledge base, the profile and the date alone:
    the tables are named, not read, so this runs while they load (it takes about a third
    of a second, whatever the number of people)."""
    t = {
        name: ibis.table(ibis.Schema.from_pyarrow(schema), name=f"screen_{name}")
        for name, schema in SCHEMAS.items()
    }
    expr = build_gaps(t, kb, profile, as_of, narrow=True)
    return CompiledGaps(
        str(ibis.to_sql(expr, dialect="duckdb", pretty=False)), expr.schema().to_pyarrow()
    )


def summary_expr(gaps: ir.Table) -> ir.Table:
    """Counts per gap x age band x risk factor ("none" when a person has none)."""
    rf = ibis.ifelse(
        gaps.risk_factors.length() == 0,
        ibis.literal(["none"], type="array<string>"),
        gaps.risk_factors,
    )
    x = gaps.mutate(risk_factor=rf.unnest())
    return (
        x.group_by(["gap", "age_band", "risk_factor"])
        .aggregate(patients=x.person_id.nunique())
        .order_by(["gap", "age_band", "risk_factor"])
    )
