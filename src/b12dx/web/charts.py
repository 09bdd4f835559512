"""Chart geometry for the timeline page: lab trends with the profile's band thresholds,
symptom ratings over time, doses against the plan, recovery milestones. Pure functions
from values to coordinates and labels; the templates draw them as inline SVG and every
chart has a table with the same content under it.

Thresholds are the profile's band cut-offs for the person as the engine reads them
(``engine.labs.band_rule``), converted to the SI unit with the knowledge base's factors:
no number here is clinical.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from b12dx.engine.labs import band_rule
from b12dx.engine.units import family_base, find_unit
from b12dx.knowledge.loader import Knowledge
from b12dx.knowledge.wording import unit_words
from b12dx.models.assessment import LabItem
from b12dx.models.knowledge import Profile
from b12dx.models.patient import PatientRecord
from b12dx.numbers import format_si, rounded_float
from b12dx.store.tables import LabEntry, SymptomRatingEntry

# B12 (total and active), MMA, haemoglobin and MCV: the results that show a response.
CHART_TESTS = ("total_b12", "active_b12", "mma", "hemoglobin", "mcv")
RATING_LEVEL = {"none": 0, "mild": 1, "moderate": 2, "severe": 3}

WIDTH = 640
LEFT = 58  # room for the y-axis labels
RIGHT = 170  # room for the threshold labels
TOP = 16
PLOT_H = 160
BOTTOM = 30


def day_label(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    anchor: str = "middle"  # SVG text-anchor: the first and last date stay inside


@dataclass(frozen=True)
class TimeAxis:
    first: dt.date
    last: dt.date
    x0: float
    x1: float

    def x(self, day: dt.date) -> float:
        span = max((self.last - self.first).days, 1)
        return round(self.x0 + (self.x1 - self.x0) * (day - self.first).days / span, 1)

    def ticks(self, count: int = 5) -> list[Tick]:
        span = (self.last - self.first).days
        # A date label is ~75 px wide: keep ticks 120 px apart so none overlap.
        count = max(2, min(count, int((self.x1 - self.x0) // 120) + 1))
        if span <= 0:
            return [Tick(self.x(self.first), day_label(self.first))]
        days = sorted({round(span * i / (count - 1)) for i in range(count)})
        ticks = []
        for i, d in enumerate(days):
            day = self.first + dt.timedelta(days=d)
            anchor = "start" if i == 0 else "end" if i == len(days) - 1 else "middle"
            ticks.append(Tick(self.x(day), day_label(day), anchor))
        return ticks


def time_axis(days: Sequence[dt.date], x0: float, x1: float, pad_days: int = 14) -> TimeAxis:
    first, last = min(days), max(days)
    if (last - first).days < 2 * pad_days:
        first, last = first - dt.timedelta(days=pad_days), last + dt.timedelta(days=pad_days)
    return TimeAxis(first, last, x0, x1)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0):
        if step * power >= value:
            return step * power
    return 10.0 * power


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.4g}"


# -- lab trends ----------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    value_si: float
    y: float
    label: str  # e.g. "below 133: deficient"


@dataclass(frozen=True)
class LabPoint:
    x: float
    y: float
    day: dt.date
    recorded: str  # as recorded: "150 pg/mL"
    si: float
    band: str | None
    recorded_by: str
    title: str


@dataclass(frozen=True)
class LabChart:
    test: str
    name: str
    unit: str
    points: list[LabPoint]
    thresholds: list[Threshold]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    line: str  # SVG polyline points
    description: str
    width: int = WIDTH
    height: int = TOP + PLOT_H + BOTTOM
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = TOP + PLOT_H


def thresholds_si(
    kb: Knowledge, profile: Profile, record: PatientRecord, test_id: str
) -> list[tuple[float, str]]:
    """The profile's cut-offs for ``test_id`` and this person, in the SI unit, each with
    the band it closes ("below 133: deficient")."""
    test = kb.labs[test_id]
    if test_id not in profile.bands or test.si_unit is None:
        return []
    si = find_unit(kb, test, test.si_unit)
    rule = band_rule(profile, test_id, record, si.family if si else None)
    factor = family_base(test, rule.when.unit_family).factor if rule.when.unit_family else 1.0
    out = []
    for cut in rule.cutoffs:
        bound = cut.below if cut.below is not None else cut.upto
        assert bound is not None
        word = "below" if cut.below is not None else "up to"
        # One place more than a result, so a converted cut-off is not shown as a round
        # number it is not (180 ng/L is 132.8 pmol/L).
        value = rounded_float(bound * factor, test.si_decimals + 1)
        out.append((value, f"{word} {format_si(value, test.si_decimals + 1)}: {cut.band}"))
    return out


def _si_value(kb: Knowledge, lab: LabEntry) -> float | None:
    test = kb.labs.get(lab.test)
    if test is None or lab.value_number is None or lab.unit is None:
        return None
    unit = find_unit(kb, test, lab.unit)
    return None if unit is None else rounded_float(lab.value_number * unit.factor, test.si_decimals)


def _bands(items: Sequence[LabItem]) -> dict[tuple[str, dt.date | None, float], str]:
    return {(i.test, i.date, float(i.value)): i.band for i in items if not isinstance(i.value, str)}


def lab_charts(
    kb: Knowledge,
    profile: Profile,
    record: PatientRecord,
    labs: Sequence[LabEntry],
    assessed: Sequence[LabItem],
) -> list[LabChart]:
    """One chart per charted test that has results, in CHART_TESTS order. The band of each
    result is the engine's (from the current assessment)."""
    bands = _bands(assessed)
    charts = []
    for test_id in CHART_TESTS:
        rows = [
            (lab, si)
            for lab in labs
            if lab.test == test_id and (si := _si_value(kb, lab)) is not None
        ]
        if not rows:
            continue
        test = kb.labs[test_id]
        unit = test.si_unit or ""
        said = unit_words(unit)  # as a person writes it: µmol/L
        cuts = thresholds_si(kb, profile, record, test_id)
        top = _nice_ceiling(max([si for _, si in rows] + [v for v, _ in cuts]) * 1.15)
        axis = time_axis([lab.taken_on for lab, _ in rows], LEFT, WIDTH - RIGHT)

        def si_text(value: float, decimals: int = test.si_decimals) -> str:
            return format_si(value, decimals)

        def y(value: float, top: float = top) -> float:
            return round(TOP + PLOT_H * (1 - value / top), 1)

        points = []
        for lab, si in rows:
            assert lab.value_number is not None
            recorded = f"{lab.value_number:g} {unit_words(lab.unit)}"
            band = bands.get((test_id, lab.taken_on, lab.value_number))
            shown = recorded if lab.unit == unit else f"{recorded} = {si_text(si)} {said}"
            title = f"{day_label(lab.taken_on)}: {shown}" + (f" ({band})" if band else "")
            points.append(
                LabPoint(
                    axis.x(lab.taken_on), y(si), lab.taken_on, recorded, si, band,
                    lab.recorded_by, title,
                )
            )  # fmt: skip
        y_ticks = [Tick(y(top * i / 4), _fmt(top * i / 4)) for i in range(5)]
        first, last = points[0], points[-1]
        description = (
            f"{len(points)} result{'s' if len(points) != 1 else ''} from "
            f"{day_label(first.day)} to {day_label(last.day)}; latest {si_text(last.si)} {said}"
            + (f" ({last.band})" if last.band else "")
            + (f"; first {si_text(first.si)} {said}" if len(points) > 1 else "")
            + (
                ". Thresholds: " + "; ".join(label for _, label in cuts) + f" {said}"
                if cuts
                else ""
            )
            + "."
        )
        charts.append(
            LabChart(
                test=test_id,
                name=test.name,
                unit=unit,
                points=points,
                thresholds=[Threshold(v, y(v), label) for v, label in cuts],
                x_ticks=axis.ticks(),
                y_ticks=y_ticks,
                line=" ".join(f"{p.x},{p.y}" for p in points),
                description=description,
            )
        )
    return charts


# -- symptom ratings -----------------------------------------------------------------


@dataclass(frozen=True)
class RatingMark:
    x: float
    day: dt.date
    rating: str
    r: int
    title: str


@dataclass(frozen=True)
class SymptomTrack:
    symptom: str
    name: str
    y: float
    marks: list[RatingMark]
    summary: str  # "mild (3 Jan 2026) → none (2 Apr 2026)"


@dataclass(frozen=True)
class SymptomChart:
    tracks: list[SymptomTrack]
    x_ticks: list[Tick]
    width: int
    height: int
    plot_left: int
    plot_right: int


SYMPTOM_LEFT = 210  # room for the symptom names
ROW = 30


def symptom_chart(kb: Knowledge, ratings: Sequence[SymptomRatingEntry]) -> SymptomChart | None:
    if not ratings:
        return None
    axis = time_axis([r.rated_on for r in ratings], SYMPTOM_LEFT, WIDTH - 30)
    order: dict[str, list[SymptomRatingEntry]] = {}
    for r in sorted(ratings, key=lambda r: (r.rated_on, r.id)):
        order.setdefault(r.symptom_id, []).append(r)
    tracks = []
    for i, (sid, rows) in enumerate(order.items()):
        name = kb.symptoms[sid].name if sid in kb.symptoms else sid
        marks = [
            RatingMark(
                axis.x(r.rated_on),
                r.rated_on,
                r.rating,
                4 + 3 * RATING_LEVEL.get(r.rating, 0),
                f"{name}, {day_label(r.rated_on)}: {r.rating}",
            )
            for r in rows
        ]
        summary = " → ".join(f"{r.rating} ({day_label(r.rated_on)})" for r in rows)
        tracks.append(SymptomTrack(sid, name, 24 + ROW * i, marks, summary))
    return SymptomChart(
        tracks, axis.ticks(4), WIDTH, 24 + ROW * len(tracks) + 12, SYMPTOM_LEFT, WIDTH - 30
    )
