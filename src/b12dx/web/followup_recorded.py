"""What a nurse is told after recording something, and how it is taken back.

Every recording is answered by name: "Dose recorded for Ann Smith (id): 21 Nov 2026,
hydroxocobalamin 1 mg IM, batch AB12, left deltoid", with an *Undo* button. Undo is the
store's "entered in error" (``entries.void_entry``): the entry is kept, marked with why
and by whom, and left out of the assessment; nothing is deleted.

A dose's batch number and (for an injection) its site are asked for on every door that
records one (the forms, the JSON API, ``b12dx record dose``); a nurse who does not have
them says "not recorded", so a blank is always a decision, never an oversight.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from b12dx.engine.course import route_family
from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.store import entries
from b12dx.store.audit import Actor
from b12dx.store.tables import DoseEntry, LabEntry, Patient, SymptomRatingEntry

UNDO_REASON = "undone just after it was recorded"
NOT_RECORDED = "not recorded"
MAX_REFS = 20  # a review rates at most as many symptoms as are followed
WHAT = {"batch": "batch number", "site": "injection site"}


@dataclass(frozen=True)
class Recorded:
    """Entries just recorded for one patient, as the notice shows them."""

    patient_id: str
    patient_name: str
    refs: list[str]  # "dose:12": what the Undo button marks entered in error
    lines: list[str]  # "21 Nov 2026: hydroxocobalamin 1 mg IM, batch AB12, left deltoid"
    undone: bool  # already marked entered in error


def needed_batch_and_site(
    kb: Knowledge,
    route: str,
    batch: str | None,
    site: str | None,
    *,
    batch_not_recorded: bool,
    site_not_recorded: bool,
    accepted: Callable[[str], str],
) -> tuple[str | None, str | None]:
    """The rule every door to a dose follows (web form, JSON API, command line): the batch
    and, for an injection, the site as given, or None where the user said "not recorded";
    an InputError naming each one left out without that. ``accepted(field)`` says, in the
    door's own words, what is accepted."""
    typed = {"batch": (batch or "").strip(), "site": (site or "").strip()}
    said = {"batch": batch_not_recorded, "site": site_not_recorded}
    needed = ("batch", "site") if route_family(kb, route) == "injection" else ("batch",)
    errors = [
        FieldError(field, f"the {WHAT[field]} is needed", accepted(field))
        for field in needed
        if not typed[field] and not said[field]
    ]
    if errors:
        raise InputError(errors)
    return typed["batch"] or None, typed["site"] or None


def batch_and_site(
    kb: Knowledge, form: Mapping[str, str], route: str
) -> tuple[str | None, str | None]:
    """``needed_batch_and_site`` for a web form, where "not recorded" is a ticked box."""
    return needed_batch_and_site(
        kb,
        route,
        form.get("batch"),
        form.get("site"),
        batch_not_recorded=form.get("batch_not_recorded") == "yes",
        site_not_recorded=form.get("site_not_recorded") == "yes",
        accepted=lambda _field: f"type it, or tick '{NOT_RECORDED}'",
    )


def ref(kind: str, entry_id: int) -> str:
    return f"{kind}:{entry_id}"


def _parse(refs: str) -> list[tuple[str, int]]:
    out = []
    for token in refs.replace("\n", ",").split(",")[:MAX_REFS]:
        kind, _, number = token.strip().partition(":")
        if kind in entries.VOIDABLE and number.isdigit():
            out.append((kind, int(number)))
    return out


def _line(entry: LabEntry | DoseEntry | SymptomRatingEntry, kb: Knowledge) -> str:
    if isinstance(entry, DoseEntry):
        parts = [f"{entry.given_on}: {entry.drug} {entry.dose_mg:g} mg {entry.route.upper()}"]
        parts.append(f"batch {entry.batch}" if entry.batch else f"batch {NOT_RECORDED}")
        if route_family(kb, entry.route) == "injection":
            parts.append(entry.site or f"site {NOT_RECORDED}")
        return ", ".join(parts)
    if isinstance(entry, LabEntry):
        name = kb.labs[entry.test].name if entry.test in kb.labs else entry.test
        if entry.value_number is not None:
            return f"{entry.taken_on}: {name} {entry.value_number:g} {entry.unit or ''}".rstrip()
        return f"{entry.taken_on}: {name} {entry.value_text}"
    name = (
        kb.symptoms[entry.symptom_id].name if entry.symptom_id in kb.symptoms else entry.symptom_id
    )
    return f"{entry.rated_on}: {name} {entry.rating}"


def recorded(s: Session, kb: Knowledge, patient: Patient, refs: str) -> Recorded | None:
    """The entries ``refs`` names ("dose:12,rating:3"), if they are this patient's."""
    found: list[tuple[str, LabEntry | DoseEntry | SymptomRatingEntry]] = []
    for kind, number in _parse(refs):
        model = entries.VOIDABLE[kind][0]
        entry = s.get(model, number)
        if not isinstance(entry, LabEntry | DoseEntry | SymptomRatingEntry):
            continue
        if entry.patient_id == patient.id:
            found.append((ref(kind, number), entry))
    if not found:
        return None
    return Recorded(
        patient.id,
        patient.name,
        [r for r, _ in found],
        [_line(e, kb) for _, e in found],
        all(e.voided_at is not None for _, e in found),
    )


def undo(s: Session, actor: Actor, now: dt.datetime, patient: Patient, refs: str) -> int:
    """Mark each entry of ``refs`` entered in error (UNDO_REASON); how many were."""
    wanted = _parse(refs)
    if not wanted:
        raise InputError.single("entry", "nothing to undo")
    for kind, number in wanted:
        entries.void_entry(s, actor, now, patient, kind=kind, entry_id=number, reason=UNDO_REASON)
    return len(wanted)
