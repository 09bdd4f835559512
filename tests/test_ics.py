"""The schedule a clinician downloads for a calendar (`/clinician/schedule.ics`): a clinic
calendar holds many patients' schedules, so no two schedules share an event id; lifelong
maintenance repeats with no end; each event has a reminder; a reference chosen by the
clinic (never the name) may go into the titles."""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar

from b12dx.engine import assess
from b12dx.knowledge import Knowledge
from b12dx.web.ics import schedule_calendar

AS_OF = dt.date(2026, 11, 21)


def _treatment(kb: Knowledge, neurological: bool = True):  # type: ignore[no-untyped-def]
    record = {
        "age_years": 60,
        "conditions": [{"id": "pernicious_anemia"}],
        "symptoms": [{"id": "paresthesia", "onset": "gradual", "duration_weeks": 12}]
        if neurological
        else [{"id": "fatigue"}],
        "labs": [{"test": "total_b12", "value": 90, "unit": "pg/mL", "date": "2026-11-14"}],
    }
    a = assess(record, as_of=AS_OF)
    assert a.treatment is not None
    return a.treatment, kb.regimens[a.treatment.regimen]


def _events(ics: bytes) -> list:  # type: ignore[type-arg]
    return list(Calendar.from_ical(ics).walk("VEVENT"))


def test_two_patients_starting_on_one_day_share_no_event(kb: Knowledge) -> None:
    treatment, regimen = _treatment(kb)
    first = {str(e["UID"]) for e in _events(schedule_calendar(treatment, AS_OF, regimen))}
    second = {str(e["UID"]) for e in _events(schedule_calendar(treatment, AS_OF, regimen))}
    assert first and second and not first & second


def test_a_reference_keeps_the_ids_stable_and_names_the_events(kb: Knowledge) -> None:
    treatment, regimen = _treatment(kb)
    one = _events(schedule_calendar(treatment, AS_OF, regimen, "AB 1234"))
    again = _events(schedule_calendar(treatment, AS_OF, regimen, "AB 1234"))
    other = _events(schedule_calendar(treatment, AS_OF, regimen, "CD 5678"))
    assert [str(e["UID"]) for e in one] == [str(e["UID"]) for e in again]
    assert not {str(e["UID"]) for e in one} & {str(e["UID"]) for e in other}
    assert all(str(e["SUMMARY"]).endswith("· AB 1234") for e in one)


def test_lifelong_maintenance_repeats_with_no_end_and_every_event_reminds(kb: Knowledge) -> None:
    treatment, regimen = _treatment(kb)
    assert treatment.duration == "lifelong"
    events = _events(schedule_calendar(treatment, AS_OF, regimen))
    repeating = [e for e in events if "RRULE" in e]
    assert len(repeating) == 1
    rule = repeating[0]["RRULE"]
    assert rule["FREQ"] == ["MONTHLY"] and rule["INTERVAL"] == [2]
    assert "COUNT" not in rule and "UNTIL" not in rule, "never stops silently"
    first_maintenance = next(d.date for d in treatment.schedule if d.phase == "maintenance")
    assert repeating[0]["DTSTART"].dt == first_maintenance
    loading = [d for d in treatment.schedule if d.phase == "loading"]
    assert len(events) == len(loading) + 1 + len(treatment.review_dates)
    assert all(list(e.walk("VALARM")) for e in events)
