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
from collections import defaultdict
from dataclasses import dataclass

import pyarrow.compute as pc
import pyarrow.parquet as pq

from b12dx.screen.model import ScreeningTables

# Tables and columns whose dates say how recent the input's records are.
_DATED = {
    "medication": "start_date",
    "b12_dose": "date",
    "condition": "start_date",
    "lab": "date",
    "finding": "date",
}
ONE_DAY = dt.timedelta(days=1)
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


def _sixteenth(born: dt.date, years: int) -> dt.date:
    """The day a person born on ``born`` is ``years`` old, as facts counts ages (born on
    29 February: 1 March in a common year)."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return dt.date(born.year + years, 3, 1)


def _best_date(
    spans: list[tuple[dt.date, dt.date | None]], as_of: dt.date
) -> tuple[dt.date | None, int]:
    """The latest date on or before ``as_of`` covered by the most spans (inclusive;
    None: no end), and how many cover it."""
    events: dict[dt.date, int] = defaultdict(int)
    for start, end in spans:
        if start > as_of or (end is not None and end < start):
            continue
        events[start] += 1
        if end is not None and end < as_of:
            events[end + ONE_DAY] -= 1
    best: tuple[dt.date | None, int] = (None, 0)  # the latest wins a tie
    count = 0
    days = sorted(events)
    for i, day in enumerate(days):
        count += events[day]
        last = min(days[i + 1] - ONE_DAY, as_of) if i + 1 < len(days) else as_of
        if count > 0 and count >= best[1]:
            best = (last, count)
    return best


def coverage(tables: ScreeningTables, as_of: dt.date, min_age: int, screened: int) -> Coverage:
    """Count who was left out on ``as_of`` and why, from the screening tables."""
    person = pq.read_table(
        tables.path("person"), columns=["person_id", "birth_date", "death_date"]
    ).to_pylist()
    periods: dict[str, list[tuple[dt.date, dt.date | None]]] = defaultdict(list)
    for row in pq.read_table(tables.path("observation_period")).to_pylist():
        periods[row["person_id"]].append((row["start_date"], row["end_date"]))
    counts = dict.fromkeys(("not_born", "dead", "too_young", "unobserved"), 0)
    spans: list[tuple[dt.date, dt.date | None]] = []
    for p in person:
        born, died = p["birth_date"], p["death_date"]
        own = periods.get(p["person_id"])
        if born is None or born > as_of:
            counts["not_born"] += 1
        elif died is not None and died <= as_of:
            counts["dead"] += 1
        elif _sixteenth(born, min_age) > as_of:
            counts["too_young"] += 1
        elif own and not any(s <= as_of and (e is None or e >= as_of) for s, e in own):
            counts["unobserved"] += 1
        if born is None:
            continue
        adult, last = _sixteenth(born, min_age), (died - ONE_DAY if died else None)
        for start, end in own or [(adult, None)]:
            ends = [e for e in (end, last) if e is not None]
            spans.append((max(start, adult), min(ends) if ends else None))
    ends = [e for spans_of in periods.values() for _, e in spans_of]
    periods_end = (
        max(e for e in ends if e is not None)
        if ends and None not in ends and max(e for e in ends if e is not None) < as_of
        else None
    )
    tops = [
        pc.max(pq.read_table(tables.path(name), columns=[column]).column(column)).as_py()
        for name, column in _DATED.items()
    ]
    latest = max((t for t in tops if t is not None), default=None)
    # Records that stop long before the date: screen as of the last of them.
    stale = periods_end is None and latest is not None and latest < as_of - STALE
    best, most = _best_date(spans, latest if stale and latest else as_of)
    return Coverage(
        as_of=as_of,
        min_age=min_age,
        records=len(person),
        screened=screened,
        has_periods=bool(periods),
        periods_end=periods_end,
        best_date=best if most > screened or (stale and most) else None,
        best_people=most,
        latest_record=latest,
        **counts,
    )
