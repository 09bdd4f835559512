"""What is due across a practice on a date: doses due and overdue, reviews due and
overdue, and people whose assessment needs acting on. The dates come from the engine's
own assessment of each person's stored history (one rule, one place); review dates
already passed come from the last stored assessment, whose plan they were."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from b12dx.errors import InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.store import patients
from b12dx.store.audit import Actor
from b12dx.store.snapshots import current, latest
from b12dx.store.tables import AssessmentSnapshot, Patient

Kind = Literal[
    "maintenance_overdue",
    "test_overdue",
    "test_due",
    "dose_due",
    "review_overdue",
    "review_due",
    "start_treatment",
    "act_now",
    "recovery_behind",
    "cannot_assess",
]
# The order a clinic works through the list: what is already late first.
KIND_ORDER: tuple[str, ...] = (
    "cannot_assess",
    "act_now",
    "maintenance_overdue",
    "test_overdue",
    "review_overdue",
    "start_treatment",
    "recovery_behind",
    "dose_due",
    "test_due",
    "review_due",
)
RECOVERY_NOTE = "recovery_behind"


@dataclass(frozen=True)
class DueItem:
    patient_id: str
    patient_name: str
    kind: Kind
    date: dt.date
    text: str
    urgency: str
    # For a dose row: what to give, so the dose can be recorded from the list.
    drug: str | None = None
    dose: str | None = None
    route: str | None = None

    @property
    def overdue(self) -> bool:
        return self.kind in (
            "maintenance_overdue",
            "test_overdue",
            "review_overdue",
            "act_now",
            "cannot_assess",
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("drug", "dose", "route"):
            d.pop(key)
        d["date"] = self.date.isoformat()
        d["overdue"] = self.overdue
        return d


def items_for(
    kb: Knowledge,
    patient: Patient,
    as_of: dt.date,
    until: dt.date,
    last: AssessmentSnapshot | None,
) -> list[DueItem]:
    """Everything due for one person from ``as_of`` up to and including ``until``."""
    a = current(kb, patient, as_of).assessment
    out: list[DueItem] = []

    def item(kind: Kind, day: dt.date, text: str, give: tuple[str, str, str] | None = None) -> None:
        drug, dose, route = give or (None, None, None)
        out.append(DueItem(patient.id, patient.name, kind, day, text, a.urgency, drug, dose, route))

    _follow_up_tests(kb, patient, a, as_of, until, item)
    t = a.treatment
    if t is not None and t.under_way:
        what = f"{t.drug} {t.dose} {t.route.upper()}"
        give = (t.drug, t.dose, t.route)
        if t.overdue_since is not None:
            late = (as_of - t.overdue_since).days
            item(
                "maintenance_overdue",
                t.overdue_since,
                f"{(t.overdue_phase or 'maintenance').capitalize()} {what} was due "
                f"{t.overdue_since} ({late} days ago)",
                give,
            )
        # The schedule of a course under way starts on as_of, whose dose may already have
        # been given: a dose recorded on a date is done, not due.
        given = {d.given_on for d in patient.doses if d.given_on <= as_of}
        for dose in t.schedule:
            if t.overdue_since is not None and dose.date == as_of:
                continue  # the overdue dose itself, listed above
            if dose.date in given:
                continue
            if as_of <= dose.date <= until:
                item("dose_due", dose.date, f"{dose.phase.capitalize()} dose: {what}", give)
    elif t is not None:
        steps = {s.id for s in a.next_steps}
        if "start_treatment_now" in steps or "start_treatment" in steps:
            item("start_treatment", as_of, f"Start treatment: {t.name} ({t.drug} {t.dose})")
    if t is not None:
        for day in t.review_dates:
            if as_of <= day <= until:
                item("review_due", day, "Review: symptoms, adherence and blood count")
    if last is not None and not (t is not None and t.review_dates):
        stored = json.loads(last.assessment).get("treatment") or {}
        for raw in stored.get("review_dates", []):
            day = dt.date.fromisoformat(raw)
            # A review is done once symptoms are rated on or after its date (the review
            # form rates every followed symptom), even before an assessment is saved.
            reviewed = any(day <= r.rated_on <= as_of for r in patient.ratings)
            if day < as_of and last.as_of < day and not reviewed:
                item("review_overdue", day, f"Review planned for {day} has not been done")
    if a.urgency in ("emergency", "urgent") and not (t is not None and t.under_way):
        item(
            "act_now",
            as_of,
            f"Assessment is {a.urgency}: " + a.urgency_reasons[0].text
            if a.urgency_reasons
            else f"Assessment is {a.urgency}",
        )
    if any(n.id == RECOVERY_NOTE for n in a.notes):
        note = next(n for n in a.notes if n.id == RECOVERY_NOTE)
        item("recovery_behind", as_of, note.text)
    return out


def _follow_up_tests(
    kb: Knowledge,
    patient: Patient,
    a: Any,
    as_of: dt.date,
    until: dt.date,
    item: Any,
) -> None:
    """An indeterminate result needs its follow-up test (screening.yaml follow_up_tests:
    MMA or active B12 after a total B12), within follow_up_days: due until then, overdue
    after, as `b12dx screen`'s indeterminate_not_followed_up rule has it."""
    sc = kb.screening
    if a.treatment is not None and a.treatment.under_way:
        return  # on treatment a B12 level says little, and treatment goes on regardless
    for lab in a.labs:
        follow = sc.follow_up_tests.get(lab.test)
        if not follow or lab.band != "indeterminate" or lab.date is None:
            continue
        later = [x for x in patient.labs if x.test == lab.test and x.taken_on > lab.date]
        if later:
            continue  # a newer result of the same test is the one that counts
        done = [x for x in patient.labs if x.test in follow and x.taken_on >= lab.date]
        if done:
            continue
        names = " or ".join(kb.labs[t].name.split(" (")[0] for t in follow)
        deadline = lab.date + dt.timedelta(days=sc.windows.follow_up_days)
        text = f"Indeterminate {kb.labs[lab.test].name.split(' (')[0]} on {lab.date}: order {names}"
        if deadline < as_of:
            item(
                "test_overdue",
                deadline,
                text + f" (not done within {sc.windows.follow_up_days} days)",
            )
        elif lab.date <= until:
            item("test_due", max(lab.date, as_of), text)


def due(
    session: Session,
    kb: Knowledge,
    actor: Actor,
    as_of: dt.date,
    within_days: int = 7,
) -> list[DueItem]:
    """What is due across the actor's practice, the most pressing first."""
    if not 0 <= within_days <= 366:
        raise InputError.single("within", f"{within_days} days", "0 to 366 days")
    until = as_of + dt.timedelta(days=within_days)
    people = patients.all_in_practice(session, actor, full=True)
    last = latest(session, [p.id for p in people])
    out: list[DueItem] = []
    for p in people:
        if p.birth_date > as_of:
            continue
        try:
            out.extend(items_for(kb, p, as_of, until, last.get(p.id)))
        except InputError as exc:
            # One record the engine refuses (e.g. an age past the contract's range) must
            # not hide everyone else's doses; the clinic sees it, first, with the reason.
            out.append(
                DueItem(p.id, p.name, "cannot_assess", as_of, f"Cannot assess: {exc}", "unknown")
            )
    return sorted(out, key=lambda i: (KIND_ORDER.index(i.kind), i.date, i.patient_name))
