"""The facts every gap rule shares, as Ibis expressions over the screening tables: who is
screened (alive, adult, observed) and their age band, the denominators, each medicine's
current course, active conditions, the risk factors on record, B12 tests with their
bands and the latest of each, and the dates B12 was given."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile
from b12dx.numbers import format_si_expr
from b12dx.screen.thresholds import Tables, Thresholds, latest_start, thresholds


def days(n: int) -> ir.IntervalScalar:
    return ibis.interval(days=n)


def text(value: ir.Value) -> ir.StringValue:
    return value.cast("string")


def join_texts(texts: ir.StringColumn) -> ir.StringScalar:
    return texts.collect().sort().join("; ")


# --- building blocks --------------------------------------------------------------------


def alive_adults_with_band(j: ir.Table, th: Thresholds, kb: Knowledge) -> ir.Table:
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


def under_observation(t: Tables, th: Thresholds, person_id: ir.StringColumn) -> ir.BooleanValue:
    """Whether the person is under observation on as_of: one of their observation periods
    covers it, or the source records none for them (a FHIR export has no such periods).
    OMOP: a person outside every period may have been seen elsewhere, so no gap is theirs."""
    o = t["observation_period"]
    a = ibis.literal(th.as_of)
    covering = o.filter(o.start_date <= a, o.end_date.isnull() | (o.end_date >= a))
    # A period of nobody is nobody's (and a null in NOT IN would make it false for all).
    owners = o.filter(o.person_id.notnull())
    return person_id.isin(covering.person_id) | ~person_id.isin(owners.person_id)


def only(table: ir.Table, people: ir.Table, narrow: bool) -> ir.Table:
    """``table`` narrowed to the people of ``people`` when ``narrow``: DuckDB plans the
    narrowing once and reads fewer rows; Spark copies ``people``'s whole plan into every
    use, and a plan copied into itself grew past the driver's memory, so Spark runs the
    rules unnarrowed. The rows a rule keeps are the same either way."""
    return table.filter(table.person_id.isin(people.person_id)) if narrow else table


def observed(t: Tables, th: Thresholds) -> ir.Table:
    """The people under observation on as_of (``under_observation``)."""
    p = t["person"]
    return p.filter(under_observation(t, th, p.person_id))


def screened(
    rows: ir.Table, t: Tables, th: Thresholds, kb: Knowledge, *, narrow: bool = False
) -> ir.Table:
    """``rows`` of people screened (alive, adult and under observation on as_of), with
    their age band. Ages and observation are worked out after the join, for the flagged
    rows only, not the whole population (and so the join is built on the flagged rows)."""
    p = only(t["person"], rows, narrow)
    j = rows.join(p, "person_id").select(rows, p.birth_date, p.death_date, p.care_site)
    j = j.filter(under_observation(t, th, j.person_id))
    return alive_adults_with_band(j, th, kb)


def population_expr(t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date) -> ir.Table:
    """People screened per age band (alive, adult and observed on as_of): the
    denominators."""
    th = thresholds(kb, profile, as_of)
    p = alive_adults_with_band(observed(t, th).select("birth_date", "death_date"), th, kb)
    return p.group_by("age_band").aggregate(people=p.count()).order_by("age_band")


def care_site_expr(t: Tables, kb: Knowledge, profile: Profile, as_of: dt.date) -> ir.Table:
    """People screened per care site (null: not recorded): the sites' denominators."""
    th = thresholds(kb, profile, as_of)
    p = observed(t, th).select("birth_date", "death_date", "care_site")
    p = alive_adults_with_band(p, th, kb)
    return p.group_by("care_site").aggregate(people=p.count()).order_by("care_site")


def all_current_courses(t: Tables, th: Thresholds, medication_ids: list[str]) -> ir.Table:
    """(person_id, medication_id, course_start): the course of each listed medicine current
    on as_of, counted as b12dx.fhir.medicines counts it: orders at most ``gap_days`` apart are
    one course; the last course begun by as_of is current when an order is open, reaches
    as_of, or is continued by a later order. Computed once for every medicine the rules
    need (one window pass), then filtered per rule by ``current_courses``."""
    a = ibis.literal(th.as_of)
    m = t["medication"].filter(t["medication"].medication_id.isin(medication_ids))
    # Each medicine as a small number while the orders are put in order (a number sorts
    # and hashes faster than its name), and named again once each course is found.
    ids = sorted(set(medication_ids))
    code = ibis.cases(*[(m.medication_id == mid, i) for i, mid in enumerate(ids)]).cast("int16")
    m = m.select("person_id", "start_date", "end_date", med=code)
    before = m.filter(m.start_date <= a).mutate(
        link_end=ibis.greatest(ibis.coalesce(m.end_date, m.start_date), m.start_date),
        open=m.end_date.isnull().cast("int8"),
    )
    keys = [before.person_id, before.med]
    earlier = ibis.window(
        group_by=keys, order_by=[before.start_date, before.link_end], rows=(None, -1)
    )
    prev_end = before.link_end.max().over(earlier)
    starts_run = prev_end.isnull() | (before.start_date > prev_end + days(th.gap_days))
    runs = before.mutate(
        run_start=ibis.ifelse(starts_run, before.start_date, ibis.null("date")),
        open_start=ibis.ifelse(before.open == 1, before.start_date, ibis.null("date")),
    )
    # Every order before the last course ends more than gap_days before it begins, so the
    # last course is the orders from the last course start on: its end is the latest end
    # of all, and it is open when the latest open order starts on or after its start.
    last = runs.group_by(["person_id", "med"]).aggregate(
        course_start=runs.run_start.max(),
        course_end=runs.link_end.max(),
        latest_open=runs.open_start.max(),
    )
    last = last.mutate(
        any_open=(last.latest_open.notnull() & (last.latest_open >= last.course_start)).cast("int8")
    )
    after = m.filter(m.start_date > a)
    later = after.group_by(["person_id", "med"]).aggregate(next_start=after.start_date.min())
    c = last.left_join(later, ["person_id", "med"]).select(
        last.person_id,
        last.med,
        last.course_start,
        last.course_end,
        last.any_open,
        later.next_start,
    )
    continued = c.next_start.notnull() & (c.next_start <= c.course_end + days(th.gap_days))
    current = (c.any_open == 1) | (c.course_end >= a) | continued
    c = c.filter(current)
    name = ibis.cases(*[(c.med == i, mid) for i, mid in enumerate(ids)])
    return c.select("person_id", medication_id=name, course_start=c.course_start)


def current_courses(
    courses: ir.Table, th: Thresholds, medication_ids: list[str], min_months: float | None
) -> ir.Table:
    """The current courses (``all_current_courses``) of these medicines that are at least
    ``min_months`` long on as_of."""
    c = courses.filter(courses.medication_id.isin(medication_ids))
    if min_months:
        c = c.filter(c.course_start <= ibis.literal(latest_start(th, min_months)))
    return c


def active_conditions(t: Tables, th: Thresholds, ids: list[str]) -> ir.Table:
    a = ibis.literal(th.as_of)
    c = t["condition"]
    return c.filter(
        c.condition_id.isin(ids),
        c.start_date.isnull() | (c.start_date <= a),
        c.end_date.isnull() | (c.end_date >= a),
    )


def lookup(column: ir.StringValue, pairs: list[tuple[str, str]], what: str) -> ir.StringValue:
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
        fact = c.medication_id + " since " + text(c.course_start)
        parts.append(
            c.select("person_id", risk_factor=lookup(c.medication_id, meds, "medicine"), fact=fact)
        )
    if conds:
        x = active_conditions(t, th, sorted({c for c, _ in conds}))
        fact = x.condition_id + ibis.ifelse(
            x.start_date.isnull(), "", " since " + text(x.start_date)
        )
        parts.append(
            x.select("person_id", risk_factor=lookup(x.condition_id, conds, "condition"), fact=fact)
        )
    f = t["finding"]
    for kind, pairs in finds.items():
        if pairs:
            x = f.filter(f.kind == kind, f.id.isin(sorted({c for c, _ in pairs})), f.date <= a)
            fact = x.id + " recorded " + text(x.date)
            parts.append(x.select("person_id", risk_factor=lookup(x.id, pairs, kind), fact=fact))
    rows = ibis.union(*parts, distinct=False)
    return rows.group_by(["person_id", "risk_factor"]).aggregate(fact=rows.fact.min())


def b12_tests(t: Tables, th: Thresholds, kb: Knowledge, *columns: str) -> ir.Table:
    """The B12 results on or before as_of, with these columns (``test`` and ``date``
    among them). Each reader names only the columns it needs, so DuckDB's common table of
    them is narrow."""
    lab = t["lab"].select(*columns)
    return lab.filter(lab.test.isin(kb.screening.b12_tests), lab.date <= ibis.literal(th.as_of))


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
    """The latest result of each B12 test on or before as_of (``b12_tests``), banded."""
    x = tests.filter(tests.value_si.notnull())
    cases = [
        (x.test == test, band_expr(kb, profile, test, x.value_si, x.unit_family))
        for test in kb.screening.b12_tests
        if test in profile.bands
    ]
    # Banded before the ordering, as a column: banded after it, DuckDB copied the banding
    # into each rule's filter on the band (six copies, each over every result).
    x = x.mutate(band=ibis.cases(*cases, else_=ibis.null("string")))
    order = ibis.window(group_by=[x.person_id, x.test], order_by=[ibis.desc(x.date), x.value_si])
    x = x.mutate(rn=ibis.row_number().over(order))
    x = x.filter(x.rn == 0)
    return x.select("person_id", "test", "value_si", "date", "band")


def result_text(kb: Knowledge, r: ir.Table) -> ir.StringValue:
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
        else_=ibis.null("string"),  # only the B12 tests reach here (b12_tests)
    )
    return names + " " + values + " " + units + " on " + text(r.date) + " (" + r.band + ")"


def b12_given(t: Tables, th: Thresholds) -> ir.Table:
    """One row per person who was ever given B12 or had it ordered, from one pass over the
    doses and the B12 orders: ``first_given`` (the earliest dose or order start, any
    date), ``last_dose`` (the latest dose on or before as_of) and ``order_reach`` (of the
    orders begun by as_of, the latest end date, an open order counting as as_of). A rule
    asking "was B12 given by day X" or "since day X" compares with these instead of
    joining every dose."""
    a = ibis.literal(th.as_of)
    d = t["b12_dose"]
    doses = d.select("person_id", date=d.date, dose=d.date, reach=ibis.null("date"))
    m = t["medication"]
    m = m.filter(m.medication_id == "b12_supplement")
    orders = m.select(
        "person_id",
        date=m.start_date,
        dose=ibis.null("date"),
        reach=ibis.ifelse(m.start_date <= a, ibis.coalesce(m.end_date, a), ibis.null("date")),
    )
    given = ibis.union(doses, orders, distinct=False)
    return given.group_by("person_id").aggregate(
        first_given=given.date.min(),
        last_dose=given.dose.max(where=given.dose <= a),
        order_reach=given.reach.max(),
    )


# --- the gaps ---------------------------------------------------------------------------
