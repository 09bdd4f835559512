"""Whether the B12 recorded as given is a course of treatment for this presentation, and
where that course stands: which phase, the next dose due, and whether it has lapsed.

A course is under way only when what was given follows a regimen that is adequate for the
presentation (rule treatment.adequate_course: drug, route and dose, profiles.yaml
``adequate_regimens``): one 50 microgram tablet is no treatment for neurological
involvement. Its place in the regimen is found by counting the doses given into the
regimen's phases, so that a missed dose is found in loading as in maintenance (rule
treatment.course_lapsed).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from dataclasses import dataclass

from b12dx.engine.schedule import add_months, next_after
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Profile, Regimen, RegimenPhase
from b12dx.models.patient import TreatmentDose

# Routes of a dose given by injection (models.patient.Route): one route family, as a
# regimen given IM is also given by deep subcutaneous injection (fda-cyanocobalamin).
# Doses are compared in mg; "1000 micrograms" is 1 mg, give or take the float.
TOLERANCE_MG = 1e-9


def route_family(kb: Knowledge, route: str) -> str:
    """ "injection" for the routes one course of injections is kept up by (courses.yaml),
    else the route itself."""
    return "injection" if route in kb.courses.injection_routes else route


def fits(kb: Knowledge, dose: TreatmentDose, regimen: Regimen) -> bool:
    """The dose gives at least what the regimen gives: its drug (by injection, either
    cobalamin), its route family, and at least its dose (B12 has no toxicity: a larger
    dose is no less treatment; a dose whose amount is not recorded is taken at its drug
    and route)."""
    family = route_family(kb, dose.route)
    if family != route_family(kb, regimen.route):
        return False
    interchangeable = kb.courses.interchangeable_injections
    same = dose.drug == regimen.drug or (
        family == "injection" and dose.drug in interchangeable and regimen.drug in interchangeable
    )
    if not same:
        return False
    if dose.dose_mg is None:
        return True
    low, _high = _dose_range(regimen.dose)
    return float(dose.dose_mg) >= low - TOLERANCE_MG


@functools.lru_cache(maxsize=64)
def _dose_range(dose: str) -> tuple[float, float]:
    # A regimen's dose text is parsed once (models.knowledge.Regimen.dose_range_mg).
    return Regimen.range_of(dose)


def adequate_regimens(
    kb: Knowledge, profile: Profile, key: str, conditions: frozenset[str]
) -> list[Regimen]:
    """The regimens a course may follow for the presentation ``key`` (a regimen_by_cause
    key), less those the person's conditions contraindicate."""
    ids = profile.adequate_regimens.get(key) or [profile.regimen_by_cause[key]]
    return [
        kb.regimens[r]
        for r in ids
        if not set(kb.regimens[r].contraindicated_conditions) & conditions
    ]


def route_name(route: str) -> str:
    return route.upper() if len(route) <= 2 else route  # IM, SC, IV; oral, nasal...


def describe(dose: TreatmentDose) -> str:
    """``cyanocobalamin 50 micrograms oral on 2026-11-01``."""
    amount = ""
    if dose.dose_mg is not None:
        mg = float(dose.dose_mg)
        amount = f" {mg:g} mg" if mg >= 1 else f" {mg * 1000:g} micrograms"
    return f"{dose.drug}{amount} {route_name(dose.route)} on {dose.date}"


@dataclass(frozen=True)
class Position:
    """Where a course stands in its regimen: the phase of the next dose (its index in the
    regimen's phases and how many of that phase's doses were given) and its due date."""

    index: int
    taken: int
    due: dt.date

    def phase(self, regimen: Regimen) -> RegimenPhase:
        return regimen.phases[self.index]


def position(
    regimen: Regimen, dates: list[dt.date], review: dt.date, as_of: dt.date, grace_days: int
) -> Position:
    """Count the doses given (``dates``, oldest first, at least one) into the regimen's
    phases: fixed-count phases take their number of doses, a phase ``until: first_review``
    the doses before the review (and is over once the review date is reached), the last
    phase the rest. Doses already given at the maintenance interval (the last two at least
    the interval less its ``grace_days`` apart) are maintenance: a record that begins with
    maintenance, its loading given before the record, is not a loading course stopped
    early; a loading course with a missed week is still loading."""
    i = 0
    last = dates[0]
    phases = regimen.phases
    final = phases[-1]
    grace = dt.timedelta(days=grace_days)
    if len(phases) > 1 and len(dates) >= 2 and dates[-1] + grace >= next_after(dates[-2], final):
        return Position(len(phases) - 1, 0, next_after(dates[-1], final))
    for index, phase in enumerate(phases):
        remaining = dates[i:]
        if index == len(phases) - 1:
            last = dates[-1]
            return Position(index, len(remaining), next_after(last, phase))
        if phase.day_offsets is not None or phase.doses is not None:
            count = len(phase.day_offsets) if phase.day_offsets is not None else phase.doses
            assert count is not None
            taken = remaining[:count]
            if len(taken) < count:
                if not taken:
                    return Position(index, 0, _first_of(phase, last))
                return Position(index, len(taken), _next_in(phase, len(taken), taken[-1]))
            i += count
            last = taken[-1]
            continue
        assert phase.until == "first_review"
        taken = [d for d in remaining if d < review]
        i += len(taken)
        if taken:
            last = taken[-1]
        if as_of < review and i == len(dates):
            return Position(index, len(taken), next_after(last, phase))
    raise AssertionError("a regimen's last phase always returns")  # pragma: no cover


def _first_of(phase: RegimenPhase, last: dt.date) -> dt.date:
    """The first dose of a phase after the previous phase's last dose."""
    if phase.day_offsets is not None:
        return last + dt.timedelta(days=max(phase.day_offsets[0], 1))
    return next_after(last, phase)


def _next_in(phase: RegimenPhase, taken: int, last: dt.date) -> dt.date:
    if phase.day_offsets is not None:
        gap = phase.day_offsets[taken] - phase.day_offsets[taken - 1]
        return last + dt.timedelta(days=gap)
    return next_after(last, phase)


def remaining_phases(regimen: Regimen, at: Position) -> tuple[RegimenPhase, ...]:
    """The regimen's phases from the course's position on: the current phase less the
    doses already given, then the phases after it."""
    phase = at.phase(regimen)
    if phase.day_offsets is not None and at.taken:
        rest = phase.day_offsets[at.taken :]
        phase = phase.model_copy(update={"day_offsets": tuple(o - rest[0] for o in rest)})
    elif phase.doses is not None and at.taken:
        phase = phase.model_copy(update={"doses": phase.doses - at.taken})
    return (phase, *regimen.phases[at.index + 1 :])


@dataclass(frozen=True)
class Course:
    """The doses given, judged against the regimens adequate for the presentation."""

    counted: list[TreatmentDose]  # the course: doses of an adequate regimen, oldest first
    not_counted: list[TreatmentDose]  # given, but not treatment for this presentation
    regimen: Regimen | None  # the regimen the course follows (None without a course)
    at: Position | None
    overdue_since: dt.date | None  # the next dose's due date, passed beyond its allowance
    review: dt.date | None  # the course's first review (from its first counted dose)

    @property
    def under_way(self) -> bool:
        return bool(self.counted)

    @property
    def start(self) -> dt.date | None:
        return self.counted[0].date if self.counted else None

    @property
    def lapsed(self) -> bool:
        return self.overdue_since is not None

    def lapsed_phase(self) -> str | None:
        if self.overdue_since is None or self.regimen is None or self.at is None:
            return None
        return self.at.phase(self.regimen).phase


def judge(
    kb: Knowledge,
    profile: Profile,
    regimen: Regimen,
    adequate: list[Regimen],
    doses: list[TreatmentDose],
    as_of: dt.date,
    review_months: int,
) -> Course:
    """The course under way of ``regimen`` (the adequate regimen the last dose follows)."""
    # Doses of another adequate regimen (tablets before injections began) were an earlier
    # course; doses of no adequate regimen are not treatment for this presentation.
    counted = [d for d in doses if fits(kb, d, regimen)]
    not_counted = [d for d in doses if not any(fits(kb, d, r) for r in adequate)]
    if not counted:
        return Course([], not_counted, None, None, None, None)
    dates = current_course(regimen, sorted({d.date for d in counted}), profile)
    counted = [d for d in counted if d.date >= dates[0]]
    review = add_months(dates[0], review_months)
    # Loading "until the first review" runs to the review that judges whether improvement
    # has stopped (the profile's review_after_months): the earlier review in pregnancy
    # checks the response and does not end loading (rule treatment.loading_to_review).
    assert profile.review_after_months is not None
    judged = add_months(dates[0], max(review_months, profile.review_after_months))
    at = position(regimen, dates, judged, as_of, profile.maintenance_grace_days or 0)
    phase = at.phase(regimen).phase
    allowance = profile.loading_grace_days if phase == "loading" else profile.maintenance_grace_days
    overdue = at.due if at.due + dt.timedelta(days=allowance or 0) < as_of else None
    return Course(counted, not_counted, regimen, at, overdue, review)


def current_course(regimen: Regimen, dates: list[dt.date], profile: Profile) -> list[dt.date]:
    """The dates of the current course. Loading started again after a lapse begins a new
    course, whose phases and milestones count from it: a dose given later than the
    maintenance interval and its allowance after the one before it, followed by the next
    dose within the first loading interval and the loading allowance."""
    grace = dt.timedelta(days=profile.maintenance_grace_days or 0)
    reloading = dt.timedelta(days=loading_step_days(regimen) + (profile.loading_grace_days or 0))
    last_phase = regimen.phases[-1]
    start = 0
    for i in range(1, len(dates) - 1):
        lapsed = next_after(dates[i - 1], last_phase) + grace < dates[i]
        if lapsed and dates[i + 1] - dates[i] <= reloading:
            start = i
    return dates[start:]


def loading_step_days(regimen: Regimen) -> int:
    """The longest interval between doses of the regimen's first phase, in days."""
    phase = regimen.phases[0]
    if phase.day_offsets is not None and len(phase.day_offsets) > 1:
        o = phase.day_offsets
        return max(b - a for a, b in itertools.pairwise(o))
    if phase.every_days is not None:
        return phase.every_days
    return 31 * (phase.every_months or 1)


def loaded_as(
    kb: Knowledge, profile: Profile, neuro: Regimen, other: Regimen, doses: list[TreatmentDose]
) -> bool:
    """Whether the current injection course was given as ``neuro`` rather than ``other``
    (rule treatment.neurological_course, read from the doses when no symptom was rated):
    more loading doses, at ``neuro``'s loading interval, than ``other``'s loading holds, or
    its maintenance doses given at ``neuro``'s maintenance interval and its allowance while
    ``other``'s is longer (alternate-day loading, then 2-monthly), judged by the middle
    (median) gap between them: one dose given early in a 3-monthly course does not make
    it 2-monthly."""
    given = sorted({d.date for d in doses if fits(kb, d, neuro)})
    if len(given) < 2 or neuro.phases[-1] == other.phases[-1]:
        return False
    dates = current_course(neuro, given, profile)
    step = dt.timedelta(days=loading_step_days(neuro) + (profile.loading_grace_days or 0))
    run = 1
    while run < len(dates) and dates[run] - dates[run - 1] <= step:
        run += 1
    first = other.phases[0]
    other_loading = len(first.day_offsets or []) or (first.doses or 0)
    if other_loading and run > other_loading:
        return True
    grace = dt.timedelta(days=profile.maintenance_grace_days or 0)
    kept = dates[run - 1 :]  # the last loading dose, then the maintenance doses
    if len(kept) < 2:
        return False
    gaps = sorted(b - a for a, b in itertools.pairwise(kept))
    middle = gaps[(len(gaps) - 1) // 2]  # the lower median: a tie reads as the shorter
    return step < middle and kept[0] + middle <= next_after(kept[0], neuro.phases[-1]) + grace
