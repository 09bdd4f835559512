"""Who a screen leaves out and the date it advises, against their definitions checked a
person and a day at a time.

``coverage`` counts each person under the first test they fail on the date (not born,
dead, too young, outside their observation periods) and finds, set-wise, the latest date
on or before the date asked (or the last record, when the records stop more than a year
before it) that screens the most people. Here every day of a short window is tried in
turn, each person judged on it as ``facts`` judges them, for populations hypothesis makes
up: births on 29 February, deaths on the date, periods open, closed, overlapping or
without a start (which cover no day, as in ``facts.observed``), people with none.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b12dx.screen.coverage import STALE, coverage
from b12dx.screen.model import ScreeningTables, rows_table, write_tables

FIRST, LAST = dt.date(2014, 1, 1), dt.date(2019, 12, 31)
days = st.dates(FIRST, LAST)
births = st.one_of(
    st.dates(dt.date(1996, 1, 1), dt.date(2004, 12, 31)),
    st.sampled_from([dt.date(2000, 2, 29), dt.date(1996, 2, 29), dt.date(2004, 2, 29)]),
)


@st.composite
def people(draw: st.DrawFn) -> tuple[list[dict], list[dict], dt.date | None]:
    persons, periods = [], []
    for i in range(draw(st.integers(0, 7))):
        born = draw(st.one_of(births, st.none()))
        died = draw(st.one_of(st.none(), days))
        persons.append(
            {"person_id": str(i), "birth_date": born, "death_date": died, "sex": "female"}
        )
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.one_of(days, days, days, st.none()))  # a CDM forbids none
            end = draw(st.one_of(st.none(), days))
            periods.append({"person_id": str(i), "start_date": start, "end_date": end})
    record = draw(st.one_of(st.none(), days))
    return persons, periods, record


def adult_on(born: dt.date, years: int) -> dt.date:
    try:
        return born.replace(year=born.year + years)
    except ValueError:  # 29 February, in a common year
        return dt.date(born.year + years, 3, 1)


def screened_on(p: dict, own: list[dict], day: dt.date, min_age: int) -> bool:
    born, died = p["birth_date"], p["death_date"]
    if born is None or born > day or (died is not None and died <= day):
        return False
    if adult_on(born, min_age) > day:
        return False
    return not own or any(
        o["start_date"] is not None
        and o["start_date"] <= day
        and (o["end_date"] is None or o["end_date"] >= day)
        for o in own
    )


def first_failure(p: dict, own: list[dict], day: dt.date, min_age: int) -> str | None:
    born, died = p["birth_date"], p["death_date"]
    if born is None or born > day:
        return "not_born"
    if died is not None and died <= day:
        return "dead"
    if adult_on(born, min_age) > day:
        return "too_young"
    if own and not screened_on(p, own, day, min_age):
        return "unobserved"
    return None


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=people(), as_of=days, min_age=st.sampled_from([16, 18]))
def test_counts_and_advised_date_match_a_day_by_day_reading(
    tmp_path: Path,
    data: tuple[list[dict], list[dict], dt.date | None],
    as_of: dt.date,
    min_age: int,
) -> None:
    persons, periods, record = data
    folder = tmp_path / f"t{abs(hash((str(data), as_of, min_age)))}"
    lab = [] if record is None else [{"person_id": "0", "test": "total_b12", "date": record}]
    tables: ScreeningTables = write_tables(
        folder,
        {
            "person": rows_table("person", persons),
            "observation_period": rows_table("observation_period", periods),
            "lab": rows_table("lab", lab),
        },
    )
    own = {
        p["person_id"]: [o for o in periods if o["person_id"] == p["person_id"]] for p in persons
    }
    on_date = sum(screened_on(p, own[p["person_id"]], as_of, min_age) for p in persons)

    got = coverage(tables, as_of, min_age, on_date)

    failures = [first_failure(p, own[p["person_id"]], as_of, min_age) for p in persons]
    assert (got.records, got.not_born, got.dead, got.too_young, got.unobserved) == (
        len(persons),
        failures.count("not_born"),
        failures.count("dead"),
        failures.count("too_young"),
        failures.count("unobserved"),
    )
    assert got.left_out == len(persons) - on_date == sum(f is not None for f in failures)
    ends = [o["end_date"] for o in periods]
    closed = bool(ends) and None not in ends
    assert got.periods_end == (max(ends) if closed and max(ends) < as_of else None)  # type: ignore[type-var]
    assert got.latest_record == record
    stale = got.periods_end is None and record is not None and record < as_of - STALE
    until = record if stale and record else as_of
    # Every day up to ``until`` judged in turn; the latest of the most screened wins.
    best, most = None, 0
    day = dt.date(2012, 1, 1)  # the first 16th birthday of anyone born here
    while day <= until:
        n = sum(screened_on(p, own[p["person_id"]], day, min_age) for p in persons)
        if n and n >= most:
            best, most = day, n
        day += dt.timedelta(days=1)
    assert got.best_people == most
    advised = best if most > on_date or (stale and most) else None
    assert got.best_date == advised
