"""The medicine resources of one patient: which medicine each names, the courses the
orders and statements add up to, and the doses of B12 an administration records.

A medicine is found by its code (``b12dx.fhir.codes``: RxNorm, ATC, SNOMED CT, dm+d),
else by a name in its text. A course is the run of orders of one medicine at most
``medication_runs.gap_days`` apart (``knowledge/data/fhir.yaml``); only the latest run
counts, and only while it is current on as_of.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from b12dx.fhir.codes import CodeIndex, Meaning, code_index, qualifier
from b12dx.fhir.read import Resource, element
from b12dx.fhir.validate import NotUsed, ResourceNote, not_after, read_model
from b12dx.fhir.values import (
    coding_label,
    codings_of,
    dose_mg,
    drug_by_name,
    months_between,
    order_span,
    start_of,
    statement_span,
    to_date,
)
from b12dx.knowledge.loader import Knowledge


@dataclass
class Course:
    start: dt.date
    end: dt.date  # the last day the course is known to run
    ongoing: bool
    reference: str
    status: str


def _nowhere(_reference: str) -> Resource | None:
    return None


def medicine_named(raw: Resource, find: Callable[[str], Resource | None]) -> tuple[list[Any], str]:
    """The codings and text that name the medicine of a medicine resource: its
    medicationCodeableConcept, else the code of the Medication its medicationReference
    names (contained, or found with ``find``), else the reference's display."""
    concept = raw.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return codings_of(concept), str(concept.get("text") or "")
    ref = raw.get("medicationReference")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("reference"), str):
        return [], ""
    r = ref["reference"]
    if r.startswith("#"):
        contained = [c for c in raw.get("contained") or [] if isinstance(c, Mapping)]
        target = next((c for c in contained if c.get("id") == r[1:]), None)
    else:
        target = find(r)
    code = target.get("code") if isinstance(target, Mapping) else None
    if isinstance(code, Mapping):
        return codings_of(code), str(code.get("text") or "")
    display = ref.get("display")
    return [], display if isinstance(display, str) else ""


@dataclass
class Medicines:
    """Reads the medicine resources of one patient; ``find`` gives the resource a
    ``medicationReference`` names (a Medication in the same Bundle or shared)."""

    kb: Knowledge
    as_of: dt.date
    index: CodeIndex
    find: Callable[[str], Resource | None] = _nowhere
    born: dt.date | None = None  # Patient.birthDate: no dose is given before it
    courses: dict[str, list[Course]] = field(default_factory=dict)
    doses: list[dict[str, Any]] = field(default_factory=list)
    used: list[ResourceNote] = field(default_factory=list)
    ignored: list[ResourceNote] = field(default_factory=list)
    how: dict[str, str] = field(default_factory=dict)  # how each medicine record was matched
    later_starts: dict[str, list[dt.date]] = field(default_factory=dict)
    by_name: dict[str, tuple[str, str] | None] = field(default_factory=dict)

    def medicine(self, raw: Resource) -> tuple[Meaning | None, str, str]:
        """(meaning by code, medication id, how it was matched)."""
        return self._identify(*medicine_named(raw, self.find))

    def _identify(self, codings: list[Any], text: str) -> tuple[Meaning | None, str, str]:
        if self.index.first(codings, ("exposure",)) is not None:
            # Read as an exposure by the record's builder (medicine_exposure), not a course.
            raise NotUsed("an exposure (nitrous oxide), not a medicine course")
        meaning = self.index.first(codings, ("medication",))
        if meaning is not None:
            return meaning, meaning.id, f"{meaning.code.system} {meaning.code.code}"
        names = " ".join([text, *[str(element(c, "display") or "") for c in codings]])
        if names not in self.by_name:  # a long record repeats the same few drug names
            self.by_name[names] = next(
                (
                    (mid, found.group(0))
                    for mid, pattern in _name_patterns(self.kb)
                    if (found := pattern.search(names))
                ),
                None,
            )
        hit = self.by_name[names]
        if hit is not None:
            return None, hit[0], f"by name '{hit[1]}'"
        named = coding_label(codings, self.index) if codings else text or "no code"
        raise NotUsed(f"medicine not in b12dx's tables ({named})")

    def add_order(self, raw: Resource, reference: str) -> None:
        """A MedicationRequest or MedicationStatement, as part of a course (noted when
        the courses are added up)."""
        _, mid, how = self.medicine(raw)
        res = read_model(raw)
        st = self.kb.fhir.statuses
        status = str(res.status)
        if raw["resourceType"] == "MedicationRequest":
            if status in st.medication_request_ignored:
                raise NotUsed(f"status {status}")
            if res.intent in st.medication_request_intent_ignored:
                raise NotUsed(f"intent {res.intent}: not an order")
            start, end = order_span(raw)  # as the population loader reads it
            ongoing = status in st.medication_request_ongoing
        else:
            if status in st.medication_statement_ignored:
                raise NotUsed(f"status {status}")
            start, end = statement_span(raw)  # as the population loader reads it
            ongoing = status in st.medication_statement_ongoing
        if start is None:
            raise NotUsed("no date (authoredOn, effective or validity period)")
        if start > self.as_of:
            # A later order shows the course went on past as_of, whatever its status says
            # now (a record's status is today's, not the one on as_of).
            self.later_starts.setdefault(mid, []).append(start)
        not_after(start, self.as_of, "starts")
        course = Course(
            start,
            max(end or start, start),
            ongoing and (end is None or end >= self.as_of),
            reference,
            status,
        )
        self.courses.setdefault(mid, []).append(course)
        self.how[reference] = how

    def add_dose(self, raw: Resource) -> str:
        """A MedicationAdministration of B12: one dose given, with its drug and route."""
        codings, text = medicine_named(raw, self.find)
        _, mid, _how = self._identify(codings, text)
        if mid != "b12_supplement":
            raise NotUsed("only doses of B12 given are used from administrations")
        adm = read_model(raw)
        if adm.status not in self.kb.fhir.statuses.medication_administration_used:
            raise NotUsed(f"status {adm.status}")
        when, _ = to_date(start_of(adm, "effective"))
        if when is None:
            raise NotUsed("no date given")
        not_after(when, self.as_of, "given", self.born)
        drug = qualifier(self.index, self.kb.fhir.b12_drugs, codings) or drug_by_name(text)
        if drug is None:
            raise NotUsed("which B12 was given is not recorded")
        route = None
        if adm.dosage is not None:
            route = qualifier(self.index, self.kb.fhir.routes, codings_of(adm.dosage.route))
        how = ""
        if route is None:
            route = self.kb.fhir.route_when_unrecorded.get(drug)
            if route is None:
                raise NotUsed(f"route not recorded ({drug} is given more than one way)")
            how = f" (route not recorded: {drug} is given only {route.upper()})"
        dose: dict[str, Any] = {"date": when.isoformat(), "drug": drug, "route": route}
        mg = dose_mg(adm.dosage.dose if adm.dosage else None)
        if mg is not None:
            dose["dose_mg"] = mg
        self.doses.append(dose)
        return f"b12_treatment: {drug} {route} on {when}{how}"

    def finish_courses(self) -> list[dict[str, Any]]:
        """The contract's medications: each medicine whose latest run of orders is current,
        with its months on it; every order is noted in ``used`` or ``ignored``."""
        gap = self.kb.fhir.medication_runs.gap_days
        medications = []
        for mid, courses in self.courses.items():
            courses.sort(key=lambda c: (c.start, c.end))
            # One pass, each run's end kept as it grows: linear in the orders (the end
            # recomputed for every order made 16,000 overlapping orders take 12 s).
            runs: list[list[Course]] = []
            run_end = dt.date.min
            for c in courses:
                if runs and (c.start - run_end).days <= gap:
                    runs[-1].append(c)
                    run_end = max(run_end, c.end)
                else:
                    runs.append([c])
                    run_end = c.end
            last = runs[-1]
            for earlier in runs[:-1]:
                for c in earlier:
                    self.ignored.append(
                        ResourceNote(c.reference, f"an earlier course of {mid}, not current")
                    )
            latest = max(last, key=lambda c: (c.start, c.end))
            last_end = max(c.end for c in last)
            continued = any(
                (later - last_end).days <= gap for later in self.later_starts.get(mid, [])
            )
            current = any(c.ongoing for c in last) or last_end >= self.as_of or continued
            if not current:
                for c in last:
                    self.ignored.append(
                        ResourceNote(
                            c.reference,
                            f"{mid} not current: the latest record "
                            f"({latest.start}) is {latest.status}",
                        )
                    )
                continue
            start = min(c.start for c in last)
            months = months_between(start, self.as_of)
            medications.append({"id": mid, "duration_months": months})
            for c in last:
                self.used.append(
                    ResourceNote(
                        c.reference,
                        f"medications: {mid} ({self.how.get(c.reference, '')}; "
                        f"course since {start}, {months} months)",
                    )
                )
        return medications


def medicine_exposure(
    resource: Resource, index: CodeIndex, find: Callable[[str], Resource | None] = _nowhere
) -> str | None:
    """The exposure (risk_factors.yaml, e.g. nitrous_oxide) a medicine resource names, or
    None. Nitrous oxide inactivates B12 whoever gives it: taken for fun (what the person
    reports, a MedicationStatement), or ordered and given as an anaesthetic or for pain
    (Entonox: a MedicationRequest or MedicationAdministration), where repeated use brings
    on the same nerve damage in a person short of B12 (nice-ng239)."""
    meaning = index.first(medicine_named(resource, find)[0], ("exposure",))
    return meaning.id if meaning is not None else None


def exposure_status_used(resource: Resource, kb: Knowledge) -> str | None:
    """None when a medicine resource's status lets it count; else the status."""
    st = kb.fhir.statuses
    status = str(resource.get("status"))
    kind = resource.get("resourceType")
    if kind == "MedicationAdministration":
        return None if status in st.medication_administration_used else status
    ignored = (
        st.medication_request_ignored
        if kind == "MedicationRequest"
        else st.medication_statement_ignored
    )
    return status if status in ignored else None


def medicine_of(
    resource: Resource, kb: Knowledge, find: Callable[[str], Resource | None] = _nowhere
) -> str | None:
    """The medication id a medicine resource (e.g. a draft order) names, or None;
    ``find`` gives the Medication a ``medicationReference`` names."""
    try:
        return Medicines(kb, dt.date.max, code_index(kb), find).medicine(resource)[1]
    except NotUsed:
        return None


def _name_patterns(kb: Knowledge) -> list[tuple[str, re.Pattern[str]]]:
    key = ("fhir", "name_patterns")
    cached = kb.derived.get(key)
    if cached is None:
        cached = []
        for m in kb.medications.values():
            names = sorted({m.name.split("(")[0].strip(), *m.everyday_names}, key=len, reverse=True)
            alternatives = "|".join(re.escape(n) for n in names if len(n) >= 4)
            cached.append((m.id, re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)))
        kb.derived[key] = cached
    return list(cached)
