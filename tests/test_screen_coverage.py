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

import ibis
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.coverage import STALE, coverage
from b12dx.screen.facts import population_expr
from b12dx.screen.model import SCHEMAS, ScreeningTables, rows_table, write_tables

KB = load_knowledge()

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
    if draw(st.booleans()):  # a period of nobody: nobody's, as the rules read it
        periods.append({"person_id": None, "start_date": draw(days), "end_date": None})
    record = draw(st.one_of(st.none(), days))
    return persons, periods, record


def _born(pid: str, born: dt.date) -> dict:
    return {"person_id": pid, "birth_date": born, "death_date": None, "sex": "female"}


def _period(pid: str, start: dt.date, end: dt.date | None) -> dict:
    return {"person_id": pid, "start_date": start, "end_date": end}


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
# Two people observed in different years: the later of the equal days is advised.
@example(
    data=(
        [_born("0", dt.date(1990, 1, 1)), _born("1", dt.date(1990, 1, 1))],
        [_period("0", dt.date(2014, 1, 1), dt.date(2014, 12, 31)),
         _period("1", dt.date(2016, 1, 1), dt.date(2016, 12, 31))],
        None,
    ),
    as_of=dt.date(2019, 1, 1),
    min_age=16,
)  # fmt: skip
# Born on 29 February: 18 on 1 March 2018, not on 28 February.
@example(
    data=([_born("0", dt.date(2000, 2, 29))], [], None), as_of=dt.date(2018, 2, 28), min_age=18
)
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
    ends = [o["end_date"] for o in periods if o["person_id"] is not None]
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


def _rules_screen(tables: ScreeningTables, day: dt.date) -> int:
    """How many people the gap rules screen on ``day`` (``facts.population_expr``)."""
    con = ibis.duckdb.connect()
    try:
        t = {n: con.read_parquet(str(tables.path(n)), table_name=f"s_{n}") for n in SCHEMAS}
        counts = population_expr(t, KB, KB.default_profile, day).to_pyarrow()
        return sum(counts.column("people").to_pylist())
    finally:
        con.disconnect()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=people(), as_of=days)
def test_the_counts_agree_with_who_the_rules_screen(
    tmp_path: Path, data: tuple[list[dict], list[dict], dt.date | None], as_of: dt.date
) -> None:
    """Everyone not left out is screened by the rules, and on the advised date the rules
    screen as many as coverage says they would."""
    persons, periods, _ = data
    folder = tmp_path / f"r{abs(hash((str(data), as_of)))}"
    tables = write_tables(
        folder,
        {
            "person": rows_table("person", persons),
            "observation_period": rows_table("observation_period", periods),
        },
    )
    min_age = KB.triage.adult_from_years
    screened = _rules_screen(tables, as_of)
    got = coverage(tables, as_of, min_age, screened)
    assert got.records - got.left_out == screened
    if got.best_date is not None:
        assert _rules_screen(tables, got.best_date) == got.best_people


def test_spark_part_file_folders_are_read_whatever_their_name(tmp_path: Path) -> None:
    """Spark writes each table as a folder of part files; the folder's name may hold
    characters a pattern would read ([1]), and an empty table may leave no part file."""
    persons = [_born("a", dt.date(1980, 5, 1)), _born("b", dt.date(2015, 5, 1))]
    periods = [_period("a", dt.date(2010, 1, 1), None)]
    files = write_tables(
        tmp_path / "files",
        {
            "person": rows_table("person", persons),
            "observation_period": rows_table("observation_period", periods),
        },
    )
    folders = ScreeningTables(tmp_path / "spark [1]" / "tables")
    for name in SCHEMAS:
        part = folders.path(name)
        part.mkdir(parents=True)
        table = pq.read_table(files.path(name))
        if table.num_rows:  # an empty table: a folder with no part file
            pq.write_table(table.slice(0, 1), part / "part-00000.parquet")
            pq.write_table(table.slice(1), part / "part-00001.parquet")
        (part / "_SUCCESS").touch()
    day = dt.date(2024, 1, 1)
    assert coverage(folders, day, 16, 1) == coverage(files, day, 16, 1)
    assert coverage(folders, day, 16, 1).too_young == 1
