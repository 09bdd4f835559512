"""The dose schedule as an iCalendar file (all-day events; no patient identifiers)."""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar, Event

from b12dx.models.assessment import Treatment


def schedule_calendar(treatment: Treatment, generated: dt.date) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//b12dx//B12 treatment schedule//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"B12: {treatment.name}")
    what = f"{treatment.drug} {treatment.dose} {treatment.route.upper()}"
    for i, dose in enumerate(treatment.schedule):
        event = Event()
        event.add("uid", f"{dose.date.isoformat()}-{i}-dose@b12dx")
        event.add("dtstamp", dt.datetime.combine(generated, dt.time(), tzinfo=dt.UTC))
        event.add("dtstart", dose.date)
        event.add("dtend", dose.date + dt.timedelta(days=1))
        event.add("summary", f"B12 dose: {what} ({dose.phase})")
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    for i, review in enumerate(treatment.review_dates):
        event = Event()
        event.add("uid", f"{review.isoformat()}-{i}-review@b12dx")
        event.add("dtstamp", dt.datetime.combine(generated, dt.time(), tzinfo=dt.UTC))
        event.add("dtstart", review)
        event.add("dtend", review + dt.timedelta(days=1))
        event.add("summary", "B12 treatment review (symptoms, not a B12 level)")
        cal.add_component(event)
    return bytes(cal.to_ical())


INJECTED = ("im", "sc", "iv")


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
    kind = "B12 injection" if treatment.route in INJECTED else "B12 dose"
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
