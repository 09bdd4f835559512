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
