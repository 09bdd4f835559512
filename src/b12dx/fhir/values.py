"""Values read from FHIR R4 resources the same way wherever a resource is read (one
patient, a bundle for the store, a population): dates as written, codings, quantities
(dose in mg, supply in days), a B12 drug named in free text and how long an order runs."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from b12dx.fhir.codes import CodeIndex
from b12dx.fhir.read import Resource, element
from b12dx.fhir.validate import NotUsed
from b12dx.numbers import DAYS_PER_MONTH


def to_date(value: Any) -> tuple[dt.date | None, bool]:
    """A FHIR date, dateTime or instant as a date (the date as written), and whether partial."""
    if value is None:
        return None, False
    if isinstance(value, dt.datetime):
        return value.date(), False
    if isinstance(value, dt.date):
        return value, False
    text = str(value)
    m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T.*)?", text)
    if not m:
        return None, False
    year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
    try:
        return dt.date(year, month, day), m[3] is None
    except ValueError:
        return None, False


def age_on(birth: dt.date, when: dt.date) -> float:
    """Age in completed years; under 2, completed months as a fraction of a year (the
    infant thresholds are in months: WHO's haemoglobin from 6 months, who-hb-2011), so a
    9-month-old is 0.75, never 0. The one rule for every door that has a birth date."""
    years = when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))
    if years >= 2:
        return years
    months = (when.year - birth.year) * 12 + when.month - birth.month - (when.day < birth.day)
    return round(months / 12, 4)


def months_between(start: dt.date, end: dt.date) -> int:
    return max(0, math.floor((end - start).days / DAYS_PER_MONTH))


def start_of(obj: Any, prefix: str) -> Any:
    """When a choice of dateTime or Period begins: ``{prefix}DateTime``, else the start of
    ``{prefix}Period`` (onset, performed, effective), as written."""
    return element(obj, f"{prefix}DateTime") or element(element(obj, f"{prefix}Period"), "start")


def abated_on(condition: Any) -> Any:
    """When a condition ended, as written: abatementDateTime, else the end of
    abatementPeriod (it abated over that period; until its end it is still there)."""
    return element(condition, "abatementDateTime") or element(
        element(condition, "abatementPeriod"), "end"
    )


def observed(obs: Any) -> Any:
    """When an Observation was made: effective[x], else the instant it was issued."""
    return start_of(obs, "effective") or element(obs, "effectiveInstant") or element(obs, "issued")


def codings_of(concept: Any) -> list[Any]:
    if concept is None:
        return []
    if isinstance(concept, Mapping):
        codings = concept.get("coding")
        return list(codings) if isinstance(codings, list) else []
    return list(concept.coding or [])


def raw_codings_of(resource: Mapping[str, Any], key: str) -> list[Any]:
    concept = resource.get(key)
    return codings_of(concept) if isinstance(concept, Mapping) else []


def coding_label(codings: Iterable[Any], index: CodeIndex) -> str:
    for c in codings:
        # Called for every resource whose code is not in the tables: one type check a coding.
        get = c.get if isinstance(c, Mapping) else lambda name, c=c: getattr(c, name, None)
        system = index.system_of(get("system")) or get("system") or "no system"
        display = get("display")
        return f"{system} {get('code')}" + (f" '{display}'" if display else "")
    return "no coded value"


def _dispense(order: Resource) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """(dispenseRequest, its validityPeriod), each {} when absent or not an object."""
    dispense = order.get("dispenseRequest")
    dispense = dispense if isinstance(dispense, Mapping) else {}
    validity = dispense.get("validityPeriod")
    return dispense, validity if isinstance(validity, Mapping) else {}


class OutsideCalendar(NotUsed, ValueError):
    """A date or duration that runs past what the calendar holds (the year 9999): valid
    FHIR (a supply of 3,000,000 days), but no date can be counted from it. The resource is
    left out, saying so; never an exception past the reading layer."""


# The longest span of days any date arithmetic here is asked to make.
CALENDAR_DAYS = (dt.date.max - dt.date.min).days


def days_after(start: dt.date, days: float, what: str) -> dt.date:
    """``start`` plus ``days``, or OutsideCalendar naming ``what`` when that is past the
    calendar's end. Every date counted forward from a FHIR value goes through here."""
    try:
        return start + dt.timedelta(days=days)
    except (OverflowError, ValueError):
        raise OutsideCalendar(
            f"{what}: {days:g} days after {start} is past the end of the calendar",
            f"{what} past the end of the calendar",
        ) from None


def _supplied_days(dispense: Mapping[str, Any]) -> int | None:
    """The days an order's supply lasts over all its fills (the first and each repeat);
    OutsideCalendar when that is longer than the calendar holds."""
    supply = dispense.get("expectedSupplyDuration")
    if isinstance(supply, Mapping) and isinstance(supply.get("value"), int | float):
        factor = {"d": 1, "day": 1, "days": 1, "wk": 7, "week": 7, "mo": 30, "month": 30}
        unit = str(supply.get("code") or supply.get("unit") or "").lower()
        if unit in factor:
            repeats = dispense.get("numberOfRepeatsAllowed")
            fills = 1 + (repeats if isinstance(repeats, int) and repeats > 0 else 0)
            days = supply["value"] * factor[unit] * fills
            if not math.isfinite(days) or abs(days) > CALENDAR_DAYS:
                raise OutsideCalendar(
                    f"expectedSupplyDuration: {days:g} days runs past the end of the calendar",
                    "expectedSupplyDuration past the end of the calendar",
                )
            return int(days)
    return None


def planned_days(order: Resource) -> int | None:
    """How long a MedicationRequest is meant to run: validity period, or supply x fills."""
    dispense, validity = _dispense(order)
    start, _ = to_date(validity.get("start"))
    end, _ = to_date(validity.get("end"))
    if start and end and end >= start:
        return (end - start).days
    return _supplied_days(dispense)


def statement_span(statement: Resource) -> tuple[dt.date | None, dt.date | None]:
    """When a MedicationStatement says the medicine was taken from (effective[x], else
    when it was asserted) and to (the effective period's end)."""
    period = statement.get("effectivePeriod")
    period = period if isinstance(period, Mapping) else {}
    start, _ = to_date(start_of(statement, "effective") or statement.get("dateAsserted"))
    end, _ = to_date(period.get("end"))
    return start, end


def order_span(order: Resource) -> tuple[dt.date | None, dt.date | None]:
    """When a MedicationRequest starts (its validity period's start, else when it was
    authored) and the last day it is known to run: the validity period's end, else the
    start plus its supply over all its fills; None where the order does not say."""
    dispense, validity = _dispense(order)
    start, _ = to_date(validity.get("start") or order.get("authoredOn"))
    end, _ = to_date(validity.get("end"))
    if end is None and start is not None:
        days = _supplied_days(dispense)
        if days:
            end = days_after(start, days, "expectedSupplyDuration")
    if start is not None and end is not None and end < start:
        end = start  # a period written the wrong way round runs no longer than its start
    return start, end


def plain_number(value: Decimal | float | int) -> float | int:
    f = float(value)
    return int(f) if f.is_integer() else f


def dose_mg(q: Any) -> float | None:
    if q is None or q.value is None:
        return None
    unit = str(q.code or q.unit or "").lower()
    factor = {"mg": 1.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001, "microgram": 0.001}.get(unit)
    if factor is None:
        return None
    mg = float(q.value) * factor
    return mg if 0 < mg <= 10 else None


def drug_by_name(text: str) -> str | None:
    low = text.lower()
    for name in ("hydroxocobalamin", "cyanocobalamin", "methylcobalamin"):
        if name in low:
            return name
    return "cyanocobalamin" if re.search(r"\bvitamin b\s*12\b", low) else None
