"""Lab units: read the unit a result was given in and convert it to the SI unit.

A unit is matched to the test's accepted units ignoring case and spaces, with µ/μ read as
u and the spellings in ``unit_spellings.yaml``. A missing unit, or one that does not belong
to the test, is an error: a value is never converted on a guess.
"""

from __future__ import annotations

from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import LabTest, LabUnit


def normalise_spelling(unit: str) -> str:
    return unit.replace("µ", "u").replace("μ", "u").replace(" ", "").lower()


def find_unit(kb: Knowledge, test: LabTest, unit: str) -> LabUnit | None:
    """The accepted unit that ``unit`` spells, or None if it does not belong to ``test``."""
    key = normalise_spelling(unit)
    canonical = kb.unit_spellings.get(key, unit)
    for accepted in test.units:
        if normalise_spelling(accepted.unit) in (key, normalise_spelling(canonical)):
            return accepted
    return None


def accepted_units(test: LabTest) -> str:
    return ", ".join(u.unit for u in test.units)


def family_base(test: LabTest, family: str) -> LabUnit:
    """The unit a profile's cut-offs for ``family`` are written in (first listed)."""
    return next(u for u in test.units if u.family == family)
