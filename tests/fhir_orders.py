"""FHIR resources built in bulk for the tests that bound the work of one record."""

from __future__ import annotations

import datetime as dt
from typing import Any


def overlapping_metformin_orders(n: int, pid: str) -> list[dict[str, Any]]:
    """n overlapping metformin orders for Patient/pid, current until 1995 (the shape that
    made course building quadratic)."""
    out = []
    for i in range(n):
        day = (dt.date(1980, 1, 1) + dt.timedelta(days=i % 4000)).isoformat()
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"mr-{i}",
                "status": "active",
                "intent": "order",
                "subject": {"reference": f"Patient/{pid}"},
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]
                },
                "authoredOn": day,
                "dispenseRequest": {"validityPeriod": {"start": day, "end": "1995-01-01"}},
            }
        )
    return out
