"""Who in the input was not screened on the date, and why, so that an empty or
surprising result explains itself: "0 people screened of 28" is a question until it says
that every observation period ends by 2022 and which date would screen them.

A person is screened when born, alive, aged ``triage.adult_from_years`` or more and (OMOP)
under observation on the date (``facts.alive_adults_with_band``, ``facts.observed``).
Each person left out is counted once, under the first of these they fail. The date that
would screen the most people is found with one sweep over the days each person is
screenable (from their 16th birthday and the start of an observation period to the day
before death or the period's end): the latest such date on or before the one asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from b12dx.screen.model import SCHEMAS, ScreeningTables
from b12dx.screen.sql_engines import quoted

# Tables and columns whose dates say how recent the input's records are.
_DATED = {
    "medication": "start_date",
    "b12_dose": "date",
    "condition": "start_date",
    "lab": "date",
    "finding": "date",
}
STALE = dt.timedelta(days=366)


@dataclass(frozen=True)
class Coverage:
    as_of: dt.date
    min_age: int
    records: int  # people in the input
    screened: int
    not_born: int  # born after the date
    dead: int  # died on or before it
    too_young: int  # younger than min_age on it
    unobserved: int  # alive and old enough, outside every observation period of theirs
    has_periods: bool  # the input records observation periods
    periods_end: dt.date | None  # the latest end of any period, when the date is after it
    best_date: dt.date | None  # the date that screens the most, when it screens more
    best_people: int
    latest_record: dt.date | None  # the latest dated record of any kind

    @property
    def left_out(self) -> int:
        return self.records - self.screened

    def reasons(self) -> list[str]:
        """Why people were left out, largest count first: "25 outside every observation
        period on 2026-12-07"."""
        d = self.as_of
        said = [
            (self.unobserved, f"not under observation on {d} (outside their observation periods)"),
            (self.dead, f"died on or before {d}"),
            (self.too_young, f"younger than {self.min_age} on {d}"),
            (self.not_born, f"born after {d}"),
        ]
        return [f"{n:,} {why}" for n, why in sorted(said, key=lambda x: -x[0]) if n]

    def advice(self) -> str:
        """What the date does to the result and the date to screen with instead, or ""."""
        parts = []
        if self.periods_end is not None:
            parts.append(f"every observation period ends by {self.periods_end}")
        elif self.screened == 0:
            parts.append(
                f"nobody in the input is alive, aged {self.min_age} or more and under "
                f"observation on {self.as_of}"
            )
        elif self.stale():
            parts.append(f"the latest record in the input is dated {self.latest_record}")
        if not parts:
            return ""
        text = "; ".join(parts)
        if self.best_date is not None:
            text += (
                f": screen with --as-of {self.best_date} ({self.best_people:,} people "
                "would be screened)"
            )
        return text[0].upper() + text[1:] + "."

    def stale(self) -> bool:
        """The input's records end more than a year before the date: every "no test in
        12 months" gap would be open for want of records, not of tests."""
        return self.latest_record is not None and self.latest_record < self.as_of - STALE


# The day a person is ``$min_age`` years old, as facts counts ages (born on 29 February:
# 1 March in a common year).
_ADULT = """CASE WHEN month(birth_date) = 2 AND day(birth_date) = 29
    AND day(last_day(make_date(year(birth_date) + $min_age, 2, 1))) = 28
  THEN make_date(year(birth_date) + $min_age, 3, 1)
  ELSE make_date(year(birth_date) + $min_age, month(birth_date), day(birth_date)) END"""

# Each person once, under the first test they fail on the date.
_COUNTS = f"""
WITH covered AS (
  SELECT DISTINCT person_id FROM period
  WHERE start_date <= $as_of AND (end_date IS NULL OR end_date >= $as_of)
), p AS (
  SELECT person.*, {_ADULT} AS adult,
    person_id IN (SELECT person_id FROM period) AS has_own,
    person_id IN (SELECT person_id FROM covered) AS is_covered
  FROM person
)
SELECT
  count(*) AS records,
  count(*) FILTER (WHERE birth_date IS NULL OR birth_date > $as_of) AS not_born,
  count(*) FILTER (WHERE birth_date <= $as_of AND death_date <= $as_of) AS dead,
  count(*) FILTER (WHERE birth_date <= $as_of AND (death_date IS NULL OR death_date > $as_of)
                   AND adult > $as_of) AS too_young,
  count(*) FILTER (WHERE birth_date <= $as_of AND (death_date IS NULL OR death_date > $as_of)
                   AND adult <= $as_of AND has_own AND NOT is_covered) AS unobserved
FROM p
"""

# The days each person is screenable (from their adult birthday and the start of a period
# of theirs to the day before death or the period's end; no period: from the birthday on;
# overlapping periods merged), swept as +1 where a span begins and -1 the day after it
# ends: the latest day on or before $until that the most spans cover.
_BEST = f"""
WITH p AS (
  SELECT person_id, {_ADULT} AS adult, death_date - 1 AS last FROM person
  WHERE birth_date IS NOT NULL
), spans AS (
  SELECT p.person_id,
    CASE WHEN o.person_id IS NULL THEN p.adult  -- no periods: from the birthday on
         WHEN o.start_date IS NOT NULL THEN greatest(o.start_date, p.adult) END AS s,
    CASE WHEN o.end_date IS NULL THEN p.last
         WHEN p.last IS NULL THEN o.end_date
         ELSE least(o.end_date, p.last) END AS e,
    o.person_id IS NOT NULL AS in_period
  FROM p LEFT JOIN period AS o ON o.person_id = p.person_id
), kept AS (
  SELECT person_id, s, coalesce(e, DATE '9999-12-31') AS e, in_period FROM spans
  WHERE s <= $until AND (e IS NULL OR e >= s)
), marked AS (  -- a person's overlapping periods are one span: each person counts once
  SELECT *, coalesce(s > max(e) OVER (PARTITION BY person_id ORDER BY s, e
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), true)::INTEGER AS begins
  FROM kept WHERE in_period
), numbered AS (
  SELECT *, sum(begins) OVER (PARTITION BY person_id ORDER BY s, e) AS span FROM marked
), merged AS (
  SELECT min(s) AS s, max(e) AS e FROM numbered GROUP BY person_id, span
  UNION ALL
  SELECT s, e FROM kept WHERE NOT in_period  -- no periods: one span each
), events AS (
  SELECT s AS day, 1 AS change FROM merged
  UNION ALL
  SELECT e + 1, -1 FROM merged WHERE e < $until
), days AS (
  SELECT day, sum(change) AS change FROM events GROUP BY day
), swept AS (
  SELECT sum(change) OVER (ORDER BY day) AS people,
    least(coalesce(lead(day) OVER (ORDER BY day) - 1, $until), $until) AS last_day
  FROM days
)
SELECT last_day, people FROM swept WHERE people > 0 ORDER BY people DESC, last_day DESC LIMIT 1
"""


def _parquet(con: duckdb.DuckDBPyConnection, tables: ScreeningTables, name: str) -> str:
    """A screening table: a file, or the folder of part files Spark writes (listed here,
    so that a folder's name is never read as a pattern; none: the table is empty)."""
    path = tables.path(name)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        con.register(f"empty_{name}", SCHEMAS[name].empty_table())
        return f"empty_{name}"
    return f"read_parquet([{', '.join(quoted(str(f)) for f in files)}])"


def coverage(tables: ScreeningTables, as_of: dt.date, min_age: int, screened: int) -> Coverage:
    """Count who was left out on ``as_of`` and why, from the screening tables: set-wise in
    DuckDB, never a row at a time (a million people in a fraction of a second)."""
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW person AS SELECT * FROM {_parquet(con, tables, 'person')}")
        # A period of nobody (no person_id) is nobody's, as in facts.observed.
        con.execute(
            "CREATE VIEW period AS SELECT * FROM "
            f"{_parquet(con, tables, 'observation_period')} WHERE person_id IS NOT NULL"
        )
        row = con.execute(_COUNTS, {"as_of": as_of, "min_age": min_age}).fetchone()
        assert row is not None
        records, not_born, dead, too_young, unobserved = row
        has_periods, open_ended, last_end = con.execute(
            "SELECT count(*) > 0, count(*) FILTER (WHERE end_date IS NULL), max(end_date) "
            "FROM period"
        ).fetchone() or (False, 0, None)
        periods_end = last_end if has_periods and not open_ended and last_end < as_of else None
        tops = [
            con.execute(f"SELECT max({column}) FROM {_parquet(con, tables, name)}").fetchone()
            for name, column in _DATED.items()
        ]
        latest = max((t[0] for t in tops if t and t[0] is not None), default=None)
        # Records that stop long before the date: screen as of the last of them.
        stale = periods_end is None and latest is not None and latest < as_of - STALE
        until = latest if stale and latest else as_of
        found = con.execute(_BEST, {"until": until, "min_age": min_age}).fetchone()
    best, most = found if found else (None, 0)
    return Coverage(
        as_of=as_of,
        min_age=min_age,
        records=records,
        screened=screened,
        not_born=not_born,
        dead=dead,
        too_young=too_young,
        unobserved=unobserved,
        has_periods=bool(has_periods),
        periods_end=periods_end,
        best_date=best if most > screened or (stale and most) else None,
        best_people=most,
        latest_record=latest,
    )
