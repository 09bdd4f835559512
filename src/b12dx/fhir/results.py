"""A lab result's value read from an Observation the same way by every reader of FHIR
(the one-patient record, the store's Bundle import, the population loader), whether
the Observation is JSON or a ``fhir.resources`` model.

- A number: its ``valueQuantity``, never a bound (``<5``), in a unit of the test found
  by its UCUM code, else by the unit as written (through ``fhir.yaml``
  ``lab_unit_aliases``), and within what is possible for the test (``plausible_si``).
- Positive or negative: the value first (a coded value, then the interpretation flags,
  then the value written as text), so that a flag never overrides the result it flags.
- Recorded as absent: ``valueBoolean`` false, or an absent code as the value or a flag.
"""

from __future__ import annotations

from typing import Any

from b12dx.engine.units import accepted_units, find_unit
from b12dx.fhir.codes import CodeIndex, in_codes
from b12dx.fhir.read import element
from b12dx.fhir.validate import NotUsed
from b12dx.fhir.values import codings_of, plain_number
from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import LabTest, LabUnit


def result_unit(kb: Knowledge, test: LabTest, quantity: Any) -> LabUnit | None:
    """The test's unit a Quantity is in: by its UCUM code (a code with no system is read
    as UCUM), else by its unit text; None when neither is a unit of the test."""
    aliases = kb.fhir.lab_unit_aliases.get(test.id, {})
    system = element(quantity, "system")
    code = element(quantity, "code")
    if code and system and "unitsofmeasure" not in str(system):
        code = None
    for written in (code, element(quantity, "unit")):
        if written:
            unit = find_unit(kb, test, aliases.get(str(written), str(written)))
            if unit is not None:
                return unit
    return None


def result_quantity(obs: Any) -> Any:
    """The Quantity of a numeric result; NotUsed when there is no number or it is a bound
    (``<5``), not a result."""
    q = element(obs, "valueQuantity")
    value = element(q, "value")
    if q is None or value is None or isinstance(value, bool):
        raise NotUsed("no numeric value (valueQuantity)", "no number")
    comparator = element(q, "comparator")
    if comparator:
        raise NotUsed(
            f"value {comparator}{value} is a bound, not a result", "a bound, not a result"
        )
    return q


def numeric_result(kb: Knowledge, test: LabTest, obs: Any) -> tuple[float | int, LabUnit]:
    """(the number, its unit) of a numeric result; NotUsed saying why there is none."""
    q = result_quantity(obs)
    value = element(q, "value")
    if not (element(q, "code") or element(q, "unit")):
        raise NotUsed(f"no unit (accepted: {accepted_units(test)})", "no unit")
    unit = result_unit(kb, test, q)
    if unit is None:
        written = element(q, "code") or element(q, "unit")
        raise NotUsed(
            f"unit {written!r} is not a unit of {test.id} ({accepted_units(test)})",
            "not a unit of the test",
        )
    try:
        number = plain_number(value)
    except (TypeError, ValueError):
        raise NotUsed("no numeric value (valueQuantity)", "no number") from None
    assert test.plausible_si is not None
    low, high = test.plausible_si
    if not low <= number * unit.factor <= high:
        raise NotUsed(
            f"{number:g} {unit.unit} is outside what is possible for {test.id}",
            "outside what is possible for the test",
        )
    return number, unit


def qualitative_result(kb: Knowledge, index: CodeIndex, obs: Any) -> str | None:
    """ "positive" or "negative": the coded value, else the interpretation flags in
    order, else the value written as text; None when none says."""
    fm = kb.fhir
    concepts = [codings_of(element(obs, "valueCodeableConcept"))] + [
        codings_of(flag) for flag in element(obs, "interpretation") or []
    ]
    for codings in concepts:
        if in_codes(index, fm.positive, codings):
            return "positive"
        if in_codes(index, fm.negative, codings):
            return "negative"
    text = element(obs, "valueString")
    text = text.strip().lower() if isinstance(text, str) else ""
    return text if text in ("positive", "negative") else None


def recorded_absent(kb: Knowledge, index: CodeIndex, obs: Any) -> bool:
    """The Observation records its finding as absent."""
    if element(obs, "valueBoolean") is False:
        return True
    absent = kb.fhir.absent
    if in_codes(index, absent, codings_of(element(obs, "valueCodeableConcept"))):
        return True
    return any(
        in_codes(index, absent, codings_of(flag)) for flag in element(obs, "interpretation") or []
    )
