"""The dose schedule as an iCalendar file (all-day events; no patient identifiers)."""

from __future__ import annotations

import datetime as dt
import uuid

from icalendar import Alarm, Calendar, Event

from b12dx.engine.course import route_family
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.assessment import Treatment
from b12dx.models.knowledge import Regimen, RegimenPhase

# Event UIDs of a downloaded schedule: from the reference when one is given (the same
# patient's schedule downloaded again updates its events rather than adding copies),
# else random. Never from dates alone: two patients starting on one day would overwrite
# each other's injections in a clinic calendar.
UID_NAMESPACE = uuid.UUID("6b1f3c52-2f0e-4c4a-9d55-b12d0b12d0b1")
OPEN_ENDED = ("lifelong", "while_cause_persists")


def _reminder(text: str) -> Alarm:
    """9 am the day before an all-day event."""
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", text)
    alarm.add("trigger", dt.timedelta(hours=-15))
    return alarm


def schedule_calendar(
    treatment: Treatment,
    generated: dt.date,
    regimen: Regimen | None = None,
    reference: str | None = None,
) -> bytes:
    """The schedule for a clinic or personal calendar: each loading dose, the maintenance
    as one event repeating at the regimen's interval (with no end when the treatment is
    for life or while its cause lasts, so it never stops silently after the doses listed
    on screen), the reviews, and a reminder the day before each. ``reference`` (initials
    or a number the clinic chooses) goes into each title; nothing else identifies the
    patient."""
    ref = " ".join((reference or "").split())[:40]
    base = (
        uuid.uuid5(UID_NAMESPACE, f"{ref}|{treatment.start}|{treatment.regimen}")
        if ref
        else (uuid.uuid4())
    )
    suffix = f" · {ref}" if ref else ""
    cal = Calendar()
    cal.add("prodid", "-//b12dx//B12 treatment schedule//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"B12: {treatment.name}{suffix}")
    what = f"{treatment.drug} {treatment.dose} {treatment.route.upper()}"
    stamp = dt.datetime.combine(generated, dt.time(), tzinfo=dt.UTC)
    last = regimen.phases[-1] if regimen is not None else None
    repeat = (
        last is not None
        and last.phase == "maintenance"
        and (last.every_months or last.every_days)
        and treatment.duration in OPEN_ENDED
    )
    first_maintenance = next((d for d in treatment.schedule if d.phase == "maintenance"), None)
    for i, dose in enumerate(treatment.schedule):
        if repeat and dose.phase == "maintenance" and dose is not first_maintenance:
            continue  # the recurrence below carries them
        event = Event()
        event.add("uid", f"{base}-dose-{i}@b12dx")
        event.add("dtstamp", stamp)
        event.add("dtstart", dose.date)
        event.add("dtend", dose.date + dt.timedelta(days=1))
        title = f"B12 dose: {what} ({dose.phase}){suffix}"
        event.add("summary", title)
        event.add("transp", "TRANSPARENT")
        if repeat and dose is first_maintenance and last is not None:
            if last.every_months:
                event.add("rrule", {"freq": "monthly", "interval": last.every_months})
            else:
                event.add("rrule", {"freq": "daily", "interval": last.every_days})
            event.add(
                "description",
                f"{what} every {_interval(last)} for {treatment.duration_text}: no end date.",
            )
        event.add_component(_reminder(title))
        cal.add_component(event)
    for i, review in enumerate(treatment.review_dates):
        event = Event()
        event.add("uid", f"{base}-review-{i}@b12dx")
        event.add("dtstamp", stamp)
        event.add("dtstart", review)
        event.add("dtend", review + dt.timedelta(days=1))
        title = f"B12 treatment review (symptoms, not a B12 level){suffix}"
        event.add("summary", title)
        event.add_component(_reminder(title))
        cal.add_component(event)
    return bytes(cal.to_ical())


def _interval(phase: RegimenPhase) -> str:
    if phase.every_months:
        return "month" if phase.every_months == 1 else f"{phase.every_months} months"
    return "day" if phase.every_days == 1 else f"{phase.every_days} days"


def followup_calendar(patient_id: str, treatment: Treatment | None, now: dt.datetime) -> bytes:
    """A stored patient's planned doses and reviews, for a calendar subscription.

    Only what a calendar needs: "B12 injection" (or "B12 dose" for other routes), the
    drug, dose and phase, and the patient's id, which means nothing outside the practice.
    No name, birth date or clinical detail: calendar apps sync to phones and clouds."""
    cal = Calendar()
    cal.add("prodid", "-//b12dx//B12 follow-up schedule//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"B12 schedule · patient {patient_id}")
    cal.add("refresh-interval", dt.timedelta(days=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "P1D")
    if treatment is None:
        return bytes(cal.to_ical())
    injection = route_family(load_knowledge(), treatment.route) == "injection"
    kind = "B12 injection" if injection else "B12 dose"
    what = f"{treatment.drug} {treatment.dose} {treatment.route.upper()}"
    for dose in treatment.schedule:
        event = Event()
        event.add("uid", f"{patient_id}-{dose.date.isoformat()}-dose@b12dx")
        event.add("dtstamp", now)
        event.add("dtstart", dose.date)
        event.add("dtend", dose.date + dt.timedelta(days=1))
        event.add("summary", f"{kind} · patient {patient_id}")
        event.add("description", f"{what}, {dose.phase} dose")
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    for review in treatment.review_dates:
        event = Event()
        event.add("uid", f"{patient_id}-{review.isoformat()}-review@b12dx")
        event.add("dtstamp", now)
        event.add("dtstart", review)
        event.add("dtend", review + dt.timedelta(days=1))
        event.add("summary", f"B12 treatment review · patient {patient_id}")
        cal.add_component(event)
    return bytes(cal.to_ical())
