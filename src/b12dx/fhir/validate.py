"""One FHIR R4 resource checked and named, the same way by every reader of FHIR.

``model_of`` gives the ``fhir.resources`` model of a resource (R4B models, which read
R4) or ``NotValid`` naming the first bad field; ``label_of`` is how a report names the
resource ("Observation/o-1", or "Observation #3" when it has no id); ``ResourceNote``
says what became of it, and ``NotUsed`` why a resource is left out (``not_after``: one
dated after as_of, as the record stood then). The one-patient record
(``b12dx.fhir.record``) and the store's Bundle import (``b12dx.store.bundle_read``) read
resources this way; the population loader reads JSON unvalidated, for speed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


@dataclass(frozen=True)
class ResourceNote:
    """One resource and what became of it."""

    reference: str
    note: str

    def to_json(self) -> dict[str, str]:
        return {"resource": self.reference, "note": self.note}


class NotValid(Exception):
    """A resource that is not valid FHIR R4: ``where`` is the element (dotted, "" when
    the fault is not tied to one), ``message`` what is wrong with it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


def label_of(resource: Mapping[str, Any], position: int) -> str:
    """How a report names a resource: by type and id, else by its place in the input."""
    rid = resource.get("id")
    rtype = resource.get("resourceType", "Resource")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype} #{position + 1}"


def is_resource(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("resourceType"), str)


def model_of(resource: Mapping[str, Any], elements: Collection[str] | None = None) -> Any:
    """The fhir.resources model of a resource, built from ``elements`` only when given
    (with its type and id); b12dx's own keys (``_fullUrl``) and FHIR's primitive
    extensions (``_birthDate``) are left out. Raises NotValid with the first problem."""
    data = {
        k: v
        for k, v in resource.items()
        if not str(k).startswith("_")
        and (elements is None or k in elements or k in ("resourceType", "id"))
    }
    try:
        return get_fhir_model_class(str(resource["resourceType"])).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
        raise NotValid(where, str(first["msg"])) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise NotValid("", str(exc)) from None


class NotUsed(Exception):
    """This resource is not used; the message says why. ``reason``, when given, is the
    same in a few words that do not quote the resource, for counting many of them."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def not_after(
    date: dt.date | None, as_of: dt.date, what: str = "recorded", born: dt.date | None = None
) -> dt.date | None:
    """``date``, or NotUsed when it is after ``as_of`` (a record is read as it stood then)
    or before the patient's birth date (a typing slip the engine would refuse: the rest
    of the record is still read)."""
    if date is not None and date > as_of:
        raise NotUsed(f"{what} {date}, after as_of {as_of}")
    if date is not None and born is not None and date < born:
        raise NotUsed(f"{what} {date}, before the birth date {born}")
    return date


# The elements b12dx reads, per resource type. Only these are validated: a health record's
# orders carry dosage, requester and encounter detail that nothing here uses, and checking
# it would cost most of a CDS Hooks call's time budget on a long record.
_MEDICINE = frozenset({"status", "subject", "medicationCodeableConcept", "medicationReference"})
_EFFECTIVE = frozenset({"effectiveDateTime", "effectivePeriod"})
READ_ELEMENTS = {
    "Observation": {
        "code",
        "status",
        "subject",
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveInstant",
        "issued",
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "valueBoolean",
        "interpretation",
        "referenceRange",
    },
    "Condition": {
        "code",
        "subject",
        "clinicalStatus",
        "verificationStatus",
        "onsetDateTime",
        "onsetPeriod",
        "recordedDate",
        "abatementDateTime",
        "abatementPeriod",
        "severity",
    },
    "Procedure": {"code", "status", "subject", "performedDateTime", "performedPeriod"},
    "MedicationRequest": _MEDICINE | {"intent", "authoredOn", "dispenseRequest"},
    "MedicationStatement": _MEDICINE | _EFFECTIVE | {"dateAsserted"},
    "MedicationAdministration": _MEDICINE | _EFFECTIVE | {"dosage"},
}


def read_model(resource: Mapping[str, Any]) -> Any:
    """The model of the elements b12dx reads from a resource; NotUsed naming the first
    problem when they are not valid FHIR R4."""
    try:
        return model_of(resource, READ_ELEMENTS.get(str(resource.get("resourceType"))))
    except NotValid as bad:
        raise NotUsed(f"not valid FHIR R4 ({bad})") from None
