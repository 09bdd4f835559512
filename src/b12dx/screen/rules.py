"""The six care gaps as Ibis expressions over the screening tables (``model``).

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
import math
from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from b12dx.engine.course import loading_step_days
from b12dx.engine.schedule import add_months, maintenance_interval
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile, Regimen, RegimenPhase
from b12dx.numbers import format_si_expr

GAPS = (
    "untested_at_risk",
    "monitoring_due",
    "indeterminate_not_followed_up",
    "deficient_untreated",
    "folic_acid_without_b12",
    "maintenance_overdue",
)

DAYS_PER_MONTH = 365.25 / 12  # as b12dx.fhir.record counts course months

Tables = Mapping[str, ir.Table]


@dataclass(frozen=True)
class Interval:
    """A regimen's maintenance interval: calendar months, or days."""

    regimen: str
    months: int | None
    days: int | None


@dataclass(frozen=True)
class Thresholds:
    """The numbers the rules use, resolved from the knowledge base and profile."""

    as_of: dt.date
    min_age: int
    lookback_start: dt.date  # a B12 test on or after this date is "in the last 12 months"
    symptom_start: dt.date
    follow_up_days: int
    treatment_days: int
    gap_days: int  # orders at most this far apart are one course
    maintenance: tuple[Interval, Interval]  # (neurological, other) injection regimens
    regimens: tuple[Regimen, Regimen]  # the same two regimens, for their loading phases
    grace_days: int
    loading_grace_days: int
    review_months: int


def thresholds(kb: Knowledge, profile: Profile, as_of: dt.date) -> Thresholds:
    sc = kb.screening
    w = sc.windows

    def interval(regimen_id: str) -> Interval:
        phase = maintenance_interval(kb.regimens[regimen_id])
        days = phase.every_days if phase.every_months is None else None
        return Interval(regimen_id, phase.every_months, days)

    def length(i: Interval) -> float:
        return i.months * DAYS_PER_MONTH if i.months is not None else float(i.days or 0)

    # The engine chooses the neurological regimen for neurological involvement, otherwise
    # by cause; a cause whose regimen is oral is not a course of injections, so among the
    # injection regimens the longest is taken (nobody is flagged whom the engine's choice
    # of injections would not yet call due).
    by_cause = profile.regimen_by_cause
    others = [
        interval(r)
        for cause, r in by_cause.items()
        if cause != "neurological" and kb.regimens[r].route in sc.maintenance.routes
    ]
    neuro = by_cause["neurological"]
    if kb.regimens[neuro].route not in sc.maintenance.routes:
        raise ValueError(f"profile {profile.id}: the neurological regimen is not an injection")
    other = max(others, key=length) if others else interval(neuro)
    assert profile.review_after_months is not None
    return Thresholds(
        as_of=as_of,
        min_age=sc.min_age_years,
        lookback_start=add_months(as_of, -w.test_lookback_months),
        symptom_start=add_months(as_of, -w.symptom_months),
        follow_up_days=w.follow_up_days,
        treatment_days=w.treatment_start_days,
        gap_days=kb.fhir.medication_runs.gap_days,
        maintenance=(interval(neuro), other),
        regimens=(kb.regimens[neuro], kb.regimens[other.regimen]),
        grace_days=profile.maintenance_grace_days or 0,
        loading_grace_days=profile.loading_grace_days or 0,
        review_months=profile.review_after_months,
    )


def latest_start(th: Thresholds, min_months: float) -> dt.date:
    """The latest start date of a course at least ``min_months`` long on as_of (a month
    is DAYS_PER_MONTH days, rounded up to whole days, as the engine counts it)."""
    return th.as_of - dt.timedelta(days=math.ceil(min_months * DAYS_PER_MONTH))


def _days(n: int) -> ir.IntervalScalar:
    return ibis.interval(days=n)


def _text(value: ir.Value) -> ir.StringValue:
    return value.cast("string")


def _join_texts(texts: ir.StringColumn) -> ir.StringScalar:
    return texts.collect().sort().join("; ")


# --- building blocks --------------------------------------------------------------------


def _alive_adults_with_band(j: ir.Table, th: Thresholds, kb: Knowledge) -> ir.Table:
    """Rows of ``j`` (with birth_date, death_date) for people alive on as_of and aged
    min_age or more, with their age band; birth_date and death_date dropped."""
    a = ibis.literal(th.as_of)
    j = j.filter(j.birth_date <= a, j.death_date.isnull() | (j.death_date > a))
    birthday_later = (j.birth_date.month() > th.as_of.month) | (
        (j.birth_date.month() == th.as_of.month) & (j.birth_date.day() > th.as_of.day)
    )
    j = j.mutate(age=th.as_of.year - j.birth_date.year() - ibis.ifelse(birthday_later, 1, 0))
    j = j.filter(j.age >= th.min_age)
    bands = kb.screening.age_bands
    cases = []
    for i, low in enumerate(bands):
        label = f"{low}-{bands[i + 1] - 1}" if i + 1 < len(bands) else f"{low}+"
        upper = bands[i + 1] if i + 1 < len(bands) else 10_000
        cases.append(((j.age >= low) & (j.age < upper), label))
    return j.mutate(age_band=ibis.cases(*cases, else_="unknown")).drop(
        "birth_date", "death_date", "age"
    )


def _observed(t: Tables, th: Thresholds) -> ir.Table:
    """The people under observation on as_of: one of their observation periods covers it,
    or the source records none for them (a FHIR export has no such periods). OMOP: a
    person outside every period may have been seen elsewhere, so no gap is theirs."""
    p, o = t["person"], t["observation_period"]
    a = ibis.literal(th.as_of)
    covering = o.filter(o.start_date <= a, o.end_date.isnull() | (o.end_date >= a))
    return p.filter(p.person_id.isin(covering.person_id) | ~p.person_id.isin(o.person_id))


def _screened(rows: ir.Table, t: Tables, th: Thresholds, kb: Knowledge) -> ir.Table:
    """``rows`` of people screened (alive, adult and under observation on as_of), with
    their age band. Ages are computed after the join, for the flagged rows only, not the
    whole population."""
    p = _observed(t, th)
    j = rows.join(p, "person_id").select(rows, p.birth_date, p.death_date, p.care_site)
    return _alive_adults_with_band(j, th, kb)


def population_expr(t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date) -> ir.Table:
    """People screened per age band (alive, adult and observed on as_of): the
    denominators."""
    th = thresholds(kb, profile, as_of)
    p = _alive_adults_with_band(_observed(t, th).select("birth_date", "death_date"), th, kb)
    return p.group_by("age_band").aggregate(people=p.count()).order_by("age_band")


def care_site_expr(t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date) -> ir.Table:
    """People screened per care site (null: not recorded): the sites' denominators."""
    th = thresholds(kb, profile, as_of)
    p = _observed(t, th).select("birth_date", "death_date", "care_site")
    p = _alive_adults_with_band(p, th, kb)
    return p.group_by("care_site").aggregate(people=p.count()).order_by("care_site")


def all_current_courses(t: Tables, th: Thresholds, medication_ids: list[str]) -> ir.Table:
    """(person_id, medication_id, course_start): the course of each listed medicine current
    on as_of, counted as b12dx.fhir.record counts it: orders at most ``gap_days`` apart are
    one course; the last course begun by as_of is current when an order is open, reaches
    as_of, or is continued by a later order. Computed once for every medicine the rules
    need (one window pass), then filtered per rule by ``current_courses``."""
    a = ibis.literal(th.as_of)
    m = t["medication"].filter(t["medication"].medication_id.isin(medication_ids))
    before = m.filter(m.start_date <= a).mutate(
        link_end=ibis.greatest(ibis.coalesce(m.end_date, m.start_date), m.start_date),
        open=m.end_date.isnull().cast("int8"),
    )
    keys = [before.person_id, before.medication_id]
    earlier = ibis.window(
        group_by=keys, order_by=[before.start_date, before.link_end], rows=(None, -1)
    )
    prev_end = before.link_end.max().over(earlier)
    starts_run = prev_end.isnull() | (before.start_date > prev_end + _days(th.gap_days))
    runs = before.mutate(
        run_start=ibis.ifelse(starts_run, before.start_date, ibis.null("date")),
        open_start=ibis.ifelse(before.open == 1, before.start_date, ibis.null("date")),
    )
    # Every order before the last course ends more than gap_days before it begins, so the
    # last course is the orders from the last course start on: its end is the latest end
    # of all, and it is open when the latest open order starts on or after its start.
    last = runs.group_by(["person_id", "medication_id"]).aggregate(
        course_start=runs.run_start.max(),
        course_end=runs.link_end.max(),
        latest_open=runs.open_start.max(),
    )
    last = last.mutate(
        any_open=(last.latest_open.notnull() & (last.latest_open >= last.course_start)).cast("int8")
    )
    after = m.filter(m.start_date > a)
    later = after.group_by(["person_id", "medication_id"]).aggregate(
        next_start=after.start_date.min()
    )
    c = last.left_join(later, ["person_id", "medication_id"]).select(
        last.person_id,
        last.medication_id,
        last.course_start,
        last.course_end,
        last.any_open,
        later.next_start,
    )
    continued = c.next_start.notnull() & (c.next_start <= c.course_end + _days(th.gap_days))
    current = (c.any_open == 1) | (c.course_end >= a) | continued
    return c.filter(current).select("person_id", "medication_id", "course_start")


def current_courses(
    courses: ir.Table, th: Thresholds, medication_ids: list[str], min_months: float | None
) -> ir.Table:
    """The current courses (``all_current_courses``) of these medicines that are at least
    ``min_months`` long on as_of."""
    c = courses.filter(courses.medication_id.isin(medication_ids))
    if min_months:
        c = c.filter(c.course_start <= ibis.literal(latest_start(th, min_months)))
    return c


def _active_conditions(t: Tables, th: Thresholds, ids: list[str]) -> ir.Table:
    a = ibis.literal(th.as_of)
    c = t["condition"]
    return c.filter(
        c.condition_id.isin(ids),
        c.start_date.isnull() | (c.start_date <= a),
        c.end_date.isnull() | (c.end_date >= a),
    )


def _lookup(column: ir.StringValue, pairs: list[tuple[str, str]], what: str) -> ir.StringValue:
    """The risk factor a code stands for, as one CASE expression (a code stands for one)."""
    seen: dict[str, str] = {}
    for code, rf_id in pairs:
        if seen.setdefault(code, rf_id) != rf_id:
            raise ValueError(f"{what} {code!r} triggers both {seen[code]!r} and {rf_id!r}")
    return ibis.cases(*[(column == code, rf_id) for code, rf_id in seen.items()])


def risk_factor_facts(
    t: Tables, th: Thresholds, kb: Knowledge, ids: list[str], courses: ir.Table
) -> ir.Table:
    """(person_id, risk_factor, fact): each listed risk factor present on as_of, with the
    fact that shows it ("metformin since 2015-03-02"). One pass per kind of trigger
    (medicine, condition, diet or exposure) however many risk factors are listed, the code
    mapped to its risk factor by a CASE expression."""
    a = ibis.literal(th.as_of)
    meds: list[tuple[str, str]] = []
    start_by: dict[str, dt.date] = {}
    conds: list[tuple[str, str]] = []
    finds: dict[str, list[tuple[str, str]]] = {"diet": [], "exposure": []}
    for rf_id in ids:
        trig = kb.risk_factors[rf_id].trigger
        if trig.medication is not None:
            meds += [(m, rf_id) for m in trig.medication]
            if trig.min_duration_months:
                for m in trig.medication:
                    start_by[m] = latest_start(th, trig.min_duration_months)
        elif trig.condition is not None:
            conds += [(c, rf_id) for c in trig.condition]
        elif trig.diet is not None:
            finds["diet"] += [(d, rf_id) for d in trig.diet]
        elif trig.exposure is not None:
            finds["exposure"] += [(x, rf_id) for x in trig.exposure]
        else:
            raise ValueError(f"risk factor {rf_id!r}: its trigger cannot be screened set-wise")
    parts: list[ir.Table] = []
    if meds:
        c = courses.filter(courses.medication_id.isin(sorted({m for m, _ in meds})))
        if start_by:
            latest = ibis.cases(
                *[(c.medication_id == m, ibis.literal(d)) for m, d in start_by.items()],
                else_=ibis.literal(th.as_of),
            )
            c = c.filter(c.course_start <= latest)
        fact = c.medication_id + " since " + _text(c.course_start)
        parts.append(
            c.select("person_id", risk_factor=_lookup(c.medication_id, meds, "medicine"), fact=fact)
        )
    if conds:
        x = _active_conditions(t, th, sorted({c for c, _ in conds}))
        fact = x.condition_id + ibis.ifelse(
            x.start_date.isnull(), "", " since " + _text(x.start_date)
        )
        parts.append(
            x.select(
                "person_id", risk_factor=_lookup(x.condition_id, conds, "condition"), fact=fact
            )
        )
    f = t["finding"]
    for kind, pairs in finds.items():
        if pairs:
            x = f.filter(f.kind == kind, f.id.isin(sorted({c for c, _ in pairs})), f.date <= a)
            fact = x.id + " recorded " + _text(x.date)
            parts.append(x.select("person_id", risk_factor=_lookup(x.id, pairs, kind), fact=fact))
    rows = ibis.union(*parts, distinct=False)
    return rows.group_by(["person_id", "risk_factor"]).aggregate(fact=rows.fact.min())


def _b12_tests(t: Tables, th: Thresholds, kb: Knowledge) -> ir.Table:
    lab = t["lab"]
    return lab.filter(lab.test.isin(kb.screening.b12_tests), lab.date <= ibis.literal(th.as_of))


def _untested(candidates: ir.Table, ctx: dict[str, ir.Table], th: Thresholds) -> ir.Table:
    """The candidates with no B12 test on or after lookback_start, with the text saying so
    in ``untested``."""
    tests = ctx["b12_tests"]
    last = tests.group_by("person_id").aggregate(last_test=tests.date.max())
    j = candidates.left_join(last, "person_id").select(candidates, last.last_test)
    j = j.filter(j.last_test.isnull() | (j.last_test < ibis.literal(th.lookback_start)))
    text = (
        ibis.literal(f"no B12 test since {th.lookback_start} (last: ")
        + ibis.coalesce(_text(j.last_test), ibis.literal("none on record"))
        + ")"
    )
    return j.mutate(untested=text).drop("last_test")


def band_expr(
    kb: Knowledge, profile: Profile, test: str, value_si: ir.FloatingValue, family: ir.StringValue
) -> ir.StringValue:
    """The profile's band of a result, compared in SI (engine.labs.band_rule/apply_cutoffs)."""
    lab = kb.labs[test]
    cases: list[tuple[ir.BooleanValue, ir.StringValue]] = []
    for rule in reversed(profile.bands[test]):
        w = rule.when
        if w.sex is not None or w.pregnant is not None or w.age_min is not None:
            raise ValueError(f"profile {profile.id}: {test} bands by person; not screened")
        factor = 1.0
        if w.unit_family is not None:
            factor = next(u for u in lab.units if u.family == w.unit_family).factor
        band: ir.StringValue = ibis.literal(rule.otherwise)
        for cut in reversed(rule.cutoffs):
            if cut.below is not None:
                hit = value_si < ibis.literal(cut.below * factor)
            else:
                assert cut.upto is not None
                hit = value_si <= ibis.literal(cut.upto * factor)
            band = ibis.ifelse(hit, ibis.literal(cut.band), band)
        matches = family == w.unit_family if w.unit_family is not None else ibis.literal(True)
        cases.insert(0, (matches, band))
    return ibis.cases(*cases, else_=ibis.null("string"))


def latest_results(tests: ir.Table, kb: Knowledge, profile: Profile) -> ir.Table:
    """The latest result of each B12 test on or before as_of (``_b12_tests``), banded."""
    x = tests.filter(tests.value_si.notnull())
    order = ibis.window(group_by=[x.person_id, x.test], order_by=[ibis.desc(x.date), x.value_si])
    x = x.mutate(rn=ibis.row_number().over(order))
    x = x.filter(x.rn == 0)
    cases = [
        (x.test == test, band_expr(kb, profile, test, x.value_si, x.unit_family))
        for test in kb.screening.b12_tests
        if test in profile.bands
    ]
    return x.mutate(band=ibis.cases(*cases, else_=ibis.null("string"))).select(
        "person_id", "test", "value_si", "date", "band"
    )


def _result_text(kb: Knowledge, r: ir.Table) -> ir.StringValue:
    names = ibis.cases(
        *[(r.test == test, ibis.literal(kb.labs[test].name)) for test in kb.screening.b12_tests],
        else_=r.test,
    )
    units = ibis.cases(
        *[
            (r.test == test, ibis.literal(kb.labs[test].si_unit or ""))
            for test in kb.screening.b12_tests
        ],
        else_="",
    )
    values = ibis.cases(
        *[
            (r.test == test, format_si_expr(r.value_si, kb.labs[test].si_decimals))
            for test in kb.screening.b12_tests
        ],
        else_=ibis.null("string"),  # only the B12 tests reach here (_b12_tests)
    )
    return names + " " + values + " " + units + " on " + _text(r.date) + " (" + r.band + ")"


def _b12_treatment_dates(t: Tables) -> ir.Table:
    """(person_id, date): every B12 dose given and every B12 order started."""
    d = t["b12_dose"].select("person_id", "date")
    m = t["medication"]
    orders = m.filter(m.medication_id == "b12_supplement").select("person_id", date=m.start_date)
    return ibis.union(d, orders, distinct=False)


# --- the gaps ---------------------------------------------------------------------------


def _untested_at_risk(
    t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]
) -> ir.Table:
    ua = kb.screening.untested_at_risk
    rf = ctx["rf_facts"]
    rf_text = rf.group_by("person_id").aggregate(risks=_join_texts(rf.fact))
    a = ibis.literal(th.as_of)
    f = t["finding"]
    b12_symptoms = [s.id for s in kb.symptoms.values() if s.role == "b12"]
    sym = f.filter(
        f.kind == "symptom",
        f.id.isin(b12_symptoms),
        f.date <= a,
        f.date >= ibis.literal(th.symptom_start),
    )
    sym = sym.select("person_id", sign=sym.id + " recorded " + _text(sym.date))
    dx = _active_conditions(t, th, ua.presenting_conditions)
    dx = dx.select(
        "person_id",
        sign=dx.condition_id
        + ibis.ifelse(dx.start_date.isnull(), "", " since " + _text(dx.start_date)),
    )
    signs = ibis.union(sym, dx, distinct=False)
    signs = signs.group_by("person_id").aggregate(signs=_join_texts(signs.sign))
    j = _untested(rf_text.join(signs, "person_id"), ctx, th)
    return j.select(
        "person_id",
        reasons="risk factors: " + j.risks + "; signs: " + j.signs + "; " + j.untested,
    )


def _monitoring_due(t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]) -> ir.Table:
    trig = kb.risk_factors["metformin"].trigger
    c = current_courses(
        ctx["courses"], th, trig.medication or ["metformin"], trig.min_duration_months
    )
    j = _untested(c, ctx, th)
    return j.select(
        "person_id", reasons="metformin since " + _text(j.course_start) + "; " + j.untested
    )


def _indeterminate(t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]) -> ir.Table:
    r = ctx["latest"]
    r = r.filter(
        r.band == "indeterminate",
        r.date + _days(th.follow_up_days) < ibis.literal(th.as_of),
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
                fu.date <= rr.date + _days(th.follow_up_days),
            ],
        ).select(rr.person_id)
        missing = rr.anti_join(done, "person_id")
        parts.append(
            missing.select(
                "person_id",
                reasons=_result_text(kb, missing)
                + f"; no {' or '.join(follow)} within {th.follow_up_days} days after",
            )
        )
    return ibis.union(*parts, distinct=False)


def _deficient_untreated(
    t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]
) -> ir.Table:
    r = ctx["latest"]
    r = r.filter(r.band == "deficient", r.date + _days(th.treatment_days) < ibis.literal(th.as_of))
    tr = _b12_treatment_dates(t)
    # Any B12 given before the result, or up to a month after it, is treatment (a result
    # drawn after B12 was given does not diagnose, engine.labs).
    treated = r.join(
        tr, [r.person_id == tr.person_id, tr.date <= r.date + _days(th.treatment_days)]
    ).select(r.person_id, r.test)
    missing = r.anti_join(treated, ["person_id", "test"])
    by_result = missing.select("person_id", reason=_result_text(kb, missing))
    # A recorded diagnosis of B12 deficiency (conditions.yaml b12_deficiency: ICD-10 D51,
    # E53.8) is deficiency as the engine reads it (status.recorded_diagnosis): untreated a
    # month after it was recorded, it is the same gap.
    c = t["condition"]
    dx = c.filter(
        c.condition_id == "b12_deficiency",
        c.start_date.notnull(),
        c.start_date + _days(th.treatment_days) < ibis.literal(th.as_of),
        c.end_date.isnull() | (c.end_date >= ibis.literal(th.as_of)),
    )
    dx_treated = dx.join(
        tr, [dx.person_id == tr.person_id, tr.date <= dx.start_date + _days(th.treatment_days)]
    ).select(dx.person_id)
    dx = dx.anti_join(dx_treated, "person_id")
    by_dx = dx.group_by("person_id").aggregate(since=dx.start_date.min())
    by_dx = by_dx.select(
        "person_id", reason="B12 deficiency diagnosed (recorded) on " + _text(by_dx.since)
    )
    both = ibis.union(by_result, by_dx, distinct=False)
    missing = both.group_by("person_id").aggregate(reasons=_join_texts(both.reason))
    return missing.select(
        "person_id",
        reasons=missing.reasons + f"; no B12 treatment within {th.treatment_days} days after",
    )


def _folic_acid(t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]) -> ir.Table:
    c = current_courses(ctx["courses"], th, ["folic_acid"], None)
    a = ibis.literal(th.as_of)
    c = c.mutate(since=ibis.least(c.course_start, ibis.literal(th.lookback_start)))
    tests = ctx["b12_tests"]
    tested = c.join(tests, [c.person_id == tests.person_id, tests.date >= c.since]).select(
        c.person_id
    )
    m = t["medication"]
    b12 = m.filter(m.medication_id == "b12_supplement", m.start_date <= a)
    on_b12 = c.join(
        b12, [c.person_id == b12.person_id, b12.end_date.isnull() | (b12.end_date >= c.since)]
    ).select(c.person_id)
    d = t["b12_dose"]
    dosed = c.join(d, [c.person_id == d.person_id, d.date >= c.since, d.date <= a]).select(
        c.person_id
    )
    # Folic acid in pregnancy prevents neural tube defects and is not this gap
    # (note.folic_acid_pregnancy): a pregnancy recorded within fhir.yaml
    # pregnancy_max_days before as_of, as the single-patient reader counts it.
    f = t["finding"]
    since = ibis.literal(th.as_of - dt.timedelta(days=kb.fhir.pregnancy_max_days))
    pregnant = f.filter(
        f.kind == "pregnancy", f.date.isnull() | ((f.date <= a) & (f.date >= since))
    ).select("person_id")
    gap = (
        c.anti_join(tested, "person_id")
        .anti_join(on_b12, "person_id")
        .anti_join(dosed, "person_id")
        .anti_join(pregnant, "person_id")
    )
    return gap.select(
        "person_id",
        reasons="folic acid since "
        + _text(gap.course_start)
        + "; no B12 test or B12 treatment since "
        + _text(gap.since),
    )


def _after(day: ir.DateValue, phase: RegimenPhase) -> ir.DateValue:
    """The next dose of an interval phase (DuckDB returns date + months as a timestamp:
    cast back to a date)."""
    if phase.every_months is not None:
        return (day + ibis.interval(months=phase.every_months)).cast("date")
    return (day + _days(phase.every_days or 1)).cast("date")


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
            (last + _days(th.grace_days)).cast("date") >= _after(prev_last, final)
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
                due = (last + _days(gap)).cast("date")
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


def _maintenance_overdue(
    t: Tables, th: Thresholds, kb: Knowledge, ctx: dict[str, ir.Table]
) -> ir.Table:
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
    # Neurological involvement (a neurological B12 symptom in the window) chooses the
    # neurological regimen, as in engine.treatment.
    f = t["finding"]
    neuro = f.filter(
        f.kind == "symptom",
        f.id.isin(sorted(kb.neurological_symptoms)),
        f.date <= ibis.literal(th.as_of),
        f.date >= ibis.literal(th.symptom_start),
    )
    neuro = neuro.select("person_id").distinct().mutate(neuro=ibis.literal(True))
    d = d.left_join(neuro, "person_id").select(d, is_neuro=neuro.neuro.notnull())
    # A dose later than the maintenance interval and its grace after the one before it
    # begins a new course (engine.course.current_course).
    w = ibis.window(group_by="person_id", order_by="date")
    d = d.mutate(prev=d.date.lag().over(w), next=d.date.lead().over(w))
    grace = _days(th.grace_days)

    def reloaded(r: Regimen) -> ir.BooleanValue:
        step = _days(loading_step_days(r) + th.loading_grace_days)
        lapsed = _after(d.prev, r.phases[-1]) + grace < d.date
        return lapsed & d.next.notnull() & (d.next <= (d.date + step).cast("date"))

    restart = d.prev.isnull() | ibis.ifelse(
        d.is_neuro, reloaded(neuro_regimen), reloaded(other_regimen)
    )
    starts = d.filter(restart).group_by("person_id").aggregate(course_start=d.date.max())
    c = d.join(starts, "person_id")
    c = c.filter(c.date >= c.course_start)
    c = c.mutate(prev_in=ibis.ifelse(c.prev >= c.course_start, c.prev, None))
    g = c.group_by(["person_id", "course_start", "is_neuro"]).aggregate(
        doses=c.count(), last_dose=c.date.max(), prev_last=c.prev_in.argmax(c.date)
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
        + _text(g.last_dose)
        + " ("
        + _text(g.doses)
        + " injections since "
        + _text(g.course_start)
        + "); the next was due on "
        # Ibis types date + months as a date, DuckDB returns a timestamp and the cast is
        # elided: the first 10 characters are the date on every backend.
        + _text(g.due).substr(0, 10)
        + " ("
        + g.regimen
        + "), "
        + _text(g.grace)
        + " days' allowance has passed",
    )


_BUILDERS = {
    "untested_at_risk": _untested_at_risk,
    "monitoring_due": _monitoring_due,
    "indeterminate_not_followed_up": _indeterminate,
    "deficient_untreated": _deficient_untreated,
    "folic_acid_without_b12": _folic_acid,
    "maintenance_overdue": _maintenance_overdue,
}


def build_gaps(t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date) -> ir.Table:
    """One row per flagged person and gap: person_id, gap, rule_id, sources, reasons,
    as_of, age_band, care_site, risk_factors. Only people alive and adult on as_of are screened."""
    th = thresholds(kb, profile, as_of)
    risk_ids = kb.screening.untested_at_risk.risk_factors
    medicines = {"folic_acid", *(kb.risk_factors["metformin"].trigger.medication or ["metformin"])}
    for rf_id in risk_ids:
        medicines.update(kb.risk_factors[rf_id].trigger.medication or [])
    courses = all_current_courses(t, th, sorted(medicines))
    tests = _b12_tests(t, th, kb)
    ctx = {
        "courses": courses,
        "rf_facts": risk_factor_facts(t, th, kb, risk_ids, courses),
        "b12_tests": tests,
        "latest": latest_results(tests, kb, profile),
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
            )
        )
    gaps = ibis.union(*parts, distinct=False)
    gaps = _screened(gaps, t, th, kb)
    rf = ctx["rf_facts"]
    per_person = rf.group_by("person_id").aggregate(risk_factors=rf.risk_factor.collect().sort())
    out = gaps.left_join(per_person, "person_id").select(
        gaps.person_id,
        gaps.gap,
        gaps.rule_id,
        gaps.sources,
        gaps.reasons,
        as_of=ibis.literal(as_of),
        age_band=gaps.age_band,
        care_site=gaps.care_site,
        risk_factors=ibis.coalesce(per_person.risk_factors, ibis.literal([], type="array<string>")),
    )
    return out.order_by(["gap", "person_id"])


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
