"""What a recorded finding says on a date, the same for the one-patient record and the
store's Bundle import: whether a pregnancy is still current, and which diet is the
latest recorded. (The population loader keeps every dated finding and lets the
screening rules choose by as_of.)"""

from __future__ import annotations

import datetime as dt

from b12dx.fhir.validate import NotUsed
from b12dx.knowledge.loader import Knowledge


def check_pregnancy(kb: Knowledge, sex: str | None, when: dt.date | None, on: dt.date) -> None:
    """NotUsed when a recorded pregnancy cannot be current on ``on``: recorded for a male
    patient, or longer ago than a pregnancy lasts (``fhir.yaml`` pregnancy_max_days)."""
    limit = kb.fhir.pregnancy_max_days
    if sex == "male":
        raise NotUsed("pregnancy recorded for a male patient")
    if when is not None and (on - when).days > limit:
        raise NotUsed(f"pregnancy recorded {when}, more than {limit} days before {on}: over")


def latest_diet(
    current: tuple[dt.date, str] | None, diet: str, when: dt.date | None
) -> tuple[dt.date, str]:
    """The diet recorded last (an undated one counts as the earliest)."""
    day = when or dt.date.min
    return (day, diet) if current is None or day >= current[0] else current
