"""FHIR R4 resources of one patient -> a b12dx patient record (contract JSON, version 1).

Every resource is accounted for: it is either used (and says what it became) or
ignored (and says why: not a code b12dx maps, not final, resolved, dated after as_of,
an earlier course of a medicine, ...). The mapping tables are knowledge-base data; the
rules for dates and statuses are FHIR R4's, as named in ``knowledge/data/fhir.yaml``.

Only resources whose codes b12dx maps are validated with the ``fhir.resources`` models
(R4B models, which read R4): a Synthea patient has hundreds of resources, and checking
only the relevant ones keeps a CDS Hooks call well inside its time budget.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from b12dx.engine.units import accepted_units, find_unit
from b12dx.errors import FieldError, InputError
from b12dx.fhir.codes import CodeIndex, Meaning, code_index, in_codes, qualifier
from b12dx.fhir.read import Resource, patient_reference, reference_id
from b12dx.fhir.values import (
    age_on,
    coding_label,
    codings_of,
    dose_mg,
    drug_by_name,
    months_between,
    plain_number,
    raw_codings_of,
    supply_days,
    to_date,
)
from b12dx.knowledge.loader import Knowledge

SEVERITY_ORDER = {"mild": 1, "moderate": 2, "severe": 3}
USED_TYPES = frozenset(
    {
        "Observation",
        "Condition",
        "Procedure",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
    }
)


@dataclass(frozen=True)
class ResourceNote:
    """One resource and what became of it."""

    reference: str
    note: str

    def to_json(self) -> dict[str, str]:
        return {"resource": self.reference, "note": self.note}


@dataclass
class FhirImport:
    """A patient record built from FHIR, with an account of every resource."""

    patient_id: str | None
    record: dict[str, Any]
    used: list[ResourceNote] = field(default_factory=list)
    ignored: list[ResourceNote] = field(default_factory=list)
    # How the assessment refers to this patient: Patient/id, else the Bundle entry's
    # fullUrl (urn:uuid:...) when the Patient has no id, else None.
    patient_reference: str | None = None

    def report(self) -> dict[str, Any]:
        return {
            "patient": self.patient_reference,
            "used": [n.to_json() for n in self.used],
            "ignored": [n.to_json() for n in self.ignored],
        }


class _Skip(Exception):
    """This resource is not used; the message says why."""


def _ref(resource: Mapping[str, Any], position: int) -> str:
    rid = resource.get("id")
    rtype = resource.get("resourceType", "Resource")
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else f"{rtype} #{position + 1}"


# The elements b12dx reads, per resource type. Only these are validated: a health record's
# orders carry dosage, requester and encounter detail that nothing here uses, and checking
# it would cost most of a CDS Hooks call's time budget on a long record.
_READ = {
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
    "MedicationRequest": {
        "status",
        "intent",
        "subject",
        "medicationCodeableConcept",
        "medicationReference",
        "authoredOn",
        "dispenseRequest",
    },
    "MedicationStatement": {
        "status",
        "subject",
        "medicationCodeableConcept",
        "medicationReference",
        "effectiveDateTime",
        "effectivePeriod",
        "dateAsserted",
    },
    "MedicationAdministration": {
        "status",
        "subject",
        "medicationCodeableConcept",
        "medicationReference",
        "effectiveDateTime",
        "effectivePeriod",
        "dosage",
    },
}


def _parse(resource: Mapping[str, Any]) -> Any:
    """The fhir.resources model of a resource; _Skip with the first problem when invalid."""
    read = _READ.get(str(resource.get("resourceType")))
    data = {
        k: v
        for k, v in resource.items()
        if not k.startswith("_") and (read is None or k in read or k in ("resourceType", "id"))
    }
    try:
        return get_fhir_model_class(str(resource["resourceType"])).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "resource"
        raise _Skip(f"not valid FHIR R4 ({where}: {first['msg']})") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise _Skip(f"not valid FHIR R4 ({exc})") from None


def _is_resource(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("resourceType"), str)


def _malformed(resource: Mapping[str, Any], exc: Exception) -> str:
    """Why a resource that broke the reader is not used: FHIR R4 validation's first
    problem (the field and what is wrong), else the kind of fault."""
    try:
        data = {k: v for k, v in resource.items() if not str(k).startswith("_")}
        get_fhir_model_class(str(resource["resourceType"])).model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "resource"
        return f"not valid FHIR R4 ({where}: {first['msg']})"
    except Exception:
        pass
    return f"not valid FHIR R4 (a field of the wrong shape: {type(exc).__name__})"


@dataclass
class _Course:
    start: dt.date
    end: dt.date  # the last day the course is known to run
    ongoing: bool
    reference: str
    status: str


@dataclass
class _Builder:
    kb: Knowledge
    as_of: dt.date
    index: CodeIndex
    shared: Mapping[str, Resource]
    by_url: dict[str, Resource] = field(default_factory=dict)
    used: list[ResourceNote] = field(default_factory=list)
    ignored: list[ResourceNote] = field(default_factory=list)
    symptoms: dict[str, dict[str, Any]] = field(default_factory=dict)
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    exposures: dict[str, dict[str, Any]] = field(default_factory=dict)
    courses: dict[str, list[_Course]] = field(default_factory=dict)
    labs: list[dict[str, Any]] = field(default_factory=list)
    doses: list[dict[str, Any]] = field(default_factory=list)
    diet: tuple[dt.date, str] | None = None
    pregnant_by: str | None = None
    sex: str = "unknown"
    how: dict[str, str] = field(default_factory=dict)  # how each medicine record was matched
    later_starts: dict[str, list[dt.date]] = field(default_factory=dict)
    by_name: dict[str, tuple[str, str] | None] = field(default_factory=dict)

    # -- helpers ---------------------------------------------------------------------

    def _when(self, date: dt.date | None, what: str = "recorded") -> dt.date | None:
        if date is not None and date > self.as_of:
            raise _Skip(f"{what} {date}, after as_of {self.as_of}")
        return date

    def _meaning(self, codings: list[Any], kinds: Iterable[str]) -> Meaning:
        meaning = self.index.first(codings, kinds)
        if meaning is None:
            raise _Skip(f"code not in b12dx's tables ({coding_label(codings, self.index)})")
        return meaning

    # -- per resource type -----------------------------------------------------------

    def add(self, resource: Resource, position: int) -> None:
        reference = _ref(resource, position)
        try:
            note = self._dispatch(resource, reference)
        except _Skip as skip:
            self.ignored.append(ResourceNote(reference, str(skip)))
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
            # A malformed resource (a field of the wrong shape where the reader looks
            # before validating) is not used, and says which field: never a traceback,
            # and the rest of the record still stands.
            self.ignored.append(ResourceNote(reference, _malformed(resource, exc)))
        else:
            if note:
                self.used.append(ResourceNote(reference, note))

    def _dispatch(self, resource: Resource, reference: str) -> str | None:
        rtype = resource["resourceType"]
        if rtype not in USED_TYPES:
            raise _Skip(f"{rtype} is not used by the assessment")
        if rtype == "Observation":
            return self._observation(resource)
        if rtype == "Condition":
            return self._condition(resource)
        if rtype == "Procedure":
            return self._procedure(resource)
        if rtype == "MedicationAdministration":
            return self._administration(resource)
        return self._medication(resource, reference)

    def _observation(self, raw: Resource) -> str | None:
        codings = raw_codings_of(raw, "code")
        symptom_form = in_codes(self.index, self.kb.fhir.symptom_observation, codings)
        if symptom_form:
            codings = raw_codings_of(raw, "valueCodeableConcept")
        meaning = self._meaning(codings, ("lab", "symptom", "pregnancy", "diet", "exposure"))
        obs = _parse(raw)
        status = str(obs.status)
        if meaning.kind == "lab" and status not in self.kb.fhir.statuses.observation_used:
            accepted = ", ".join(self.kb.fhir.statuses.observation_used)
            raise _Skip(f"status {status}: only {accepted} results are used")
        if status in ("cancelled", "entered-in-error"):
            raise _Skip(f"status {status}")
        when, _ = to_date(
            obs.effectiveDateTime
            or (obs.effectivePeriod.start if obs.effectivePeriod else None)
            or obs.effectiveInstant
            or obs.issued
        )
        self._when(when, "dated")
        if meaning.kind == "lab":
            return self._lab(meaning.id, obs, when)
        if meaning.kind == "pregnancy":
            if meaning.code.system == "LOINC":  # pregnancy status: the value says which
                value = codings_of(obs.valueCodeableConcept)
                if self.index.first(value, ("pregnancy",)) is None:
                    raise _Skip("pregnancy status is not 'pregnant'")
            return self._pregnancy(when, None, "Observation")
        if self._absent(obs):
            raise _Skip("records the finding as absent")
        if meaning.kind == "diet":
            return self._diet(meaning.id, when)
        if meaning.kind == "exposure":
            return self._exposure(meaning.id)
        months = self.kb.fhir.symptom_observation_months
        if when is not None and months_between(when, self.as_of) >= months:
            raise _Skip(f"symptom observed {when}, more than {months} months before as_of")
        if self.kb.symptoms[meaning.id].role == "red_flag":
            return self._symptom(meaning.id, when, None)
        return self._symptom(meaning.id, None, None)

    def _absent(self, obs: Any) -> bool:
        if obs.valueBoolean is False:
            return True
        if in_codes(self.index, self.kb.fhir.absent, codings_of(obs.valueCodeableConcept)):
            return True
        return any(
            in_codes(self.index, self.kb.fhir.absent, codings_of(i))
            for i in obs.interpretation or []
        )

    def _lab(self, test_id: str, obs: Any, when: dt.date | None) -> str:
        test = self.kb.labs[test_id]
        entry: dict[str, Any] = {"test": test_id}
        if when is not None:
            entry["date"] = when.isoformat()
        if test.kind == "qualitative":
            value = self._qualitative(obs)
            entry["value"] = value
            self.labs.append(entry)
            return f"labs: {test_id} {value}" + (f" on {when}" if when else "")
        q = obs.valueQuantity
        if q is None or q.value is None:
            raise _Skip("no numeric value (valueQuantity)")
        if q.comparator:
            raise _Skip(f"value {q.comparator}{q.value} is a bound, not a result")
        unit_text = q.code if q.code and (not q.system or "unitsofmeasure" in q.system) else q.unit
        if not unit_text:
            raise _Skip(f"no unit (accepted: {accepted_units(test)})")
        aliases = self.kb.fhir.lab_unit_aliases.get(test_id, {})
        unit_text = aliases.get(str(unit_text), unit_text)
        unit = find_unit(self.kb, test, str(unit_text))
        if unit is None:
            raise _Skip(f"unit {unit_text!r} is not a unit of {test_id} ({accepted_units(test)})")
        number = plain_number(q.value)
        assert test.plausible_si is not None
        low, high = test.plausible_si
        if not low <= number * unit.factor <= high:
            raise _Skip(f"{number:g} {unit.unit} is outside what is possible for {test_id}")
        entry.update(value=number, unit=unit.unit)
        for rng in obs.referenceRange or []:
            for bound, key in ((rng.low, "reference_low"), (rng.high, "reference_high")):
                if bound is None or bound.value is None:
                    continue
                bound_unit = (
                    aliases.get(str(bound.code or bound.unit), bound.code or bound.unit)
                    or unit_text
                )
                same = find_unit(self.kb, test, str(bound_unit))
                if same is not None and same.unit == unit.unit and plain_number(bound.value) > 0:
                    entry.setdefault(key, plain_number(bound.value))
        if (
            "reference_low" in entry
            and "reference_high" in entry
            and entry["reference_low"] >= entry["reference_high"]
        ):
            del entry["reference_low"], entry["reference_high"]
        self.labs.append(entry)
        return f"labs: {test_id} {number:g} {unit.unit}" + (f" on {when}" if when else "")

    def _qualitative(self, obs: Any) -> str:
        fm = self.kb.fhir
        concepts = [codings_of(obs.valueCodeableConcept)] + [
            codings_of(i) for i in obs.interpretation or []
        ]
        for codings in concepts:
            if in_codes(self.index, fm.positive, codings):
                return "positive"
            if in_codes(self.index, fm.negative, codings):
                return "negative"
        text = (obs.valueString or "").strip().lower()
        if text in ("positive", "negative"):
            return text
        raise _Skip("no positive or negative result")

    def _clinical_status(self, cond: Any) -> str | None:
        codes = codings_of(cond.clinicalStatus)
        return str(codes[0].code) if codes else None

    def _condition(self, raw: Resource) -> str | None:
        codings = raw_codings_of(raw, "code")
        meaning = self._meaning(codings, ("condition", "symptom", "pregnancy", "diet", "exposure"))
        cond = _parse(raw)
        fm = self.kb.fhir
        verification = codings_of(cond.verificationStatus)
        if verification and verification[0].code in fm.statuses.condition_verification_ignored:
            raise _Skip(f"verification status {verification[0].code}")
        onset, _ = to_date(
            cond.onsetDateTime
            or (cond.onsetPeriod.start if cond.onsetPeriod else None)
            or cond.recordedDate
        )
        self._when(onset, "onset")
        lasting = meaning.kind == "condition" and meaning.id in fm.lasting_conditions
        status = self._clinical_status(cond)
        if not lasting:
            if status in fm.statuses.condition_clinical_ignored:
                raise _Skip(f"clinical status {status}")
            ended, _ = to_date(
                cond.abatementDateTime
                or (cond.abatementPeriod.end if cond.abatementPeriod else None)
            )
            if ended is not None and ended <= self.as_of:
                raise _Skip(f"resolved on {ended}")
        if meaning.kind == "condition":
            return "; ".join(self._add_condition(cid) for cid in meaning.ids)
        if meaning.kind == "pregnancy":
            return self._pregnancy(onset, None, "Condition")
        if meaning.kind == "diet":
            return self._diet(meaning.id, onset)
        if meaning.kind == "exposure":
            return self._exposure(meaning.id)
        severity = qualifier(self.index, fm.severity, codings_of(cond.severity))
        return self._symptom(meaning.id, onset, severity)

    def _procedure(self, raw: Resource) -> str | None:
        meaning = self._meaning(raw_codings_of(raw, "code"), ("condition",))
        proc = _parse(raw)
        if proc.status not in self.kb.fhir.statuses.procedure_used:
            raise _Skip(f"status {proc.status}")
        when, _ = to_date(
            proc.performedDateTime or (proc.performedPeriod.start if proc.performedPeriod else None)
        )
        self._when(when, "performed")
        added = "; ".join(self._add_condition(cid) for cid in meaning.ids)
        return added + (f" (performed {when})" if when else "")

    def _add_condition(self, cid: str) -> str:
        self.conditions.setdefault(cid, {"id": cid})
        return f"conditions: {cid}"

    def _exposure(self, eid: str) -> str:
        self.exposures.setdefault(eid, {"id": eid})
        return f"exposures: {eid}"

    def _diet(self, diet: str, when: dt.date | None) -> str:
        day = when or dt.date.min
        if self.diet is None or day >= self.diet[0]:
            self.diet = (day, diet)
        return f"diet: {diet}"

    def _pregnancy(self, start: dt.date | None, _end: dt.date | None, kind: str) -> str:
        limit = self.kb.fhir.pregnancy_max_days
        if self.sex == "male":
            raise _Skip("pregnancy recorded for a male patient")
        if start is not None and (self.as_of - start).days > limit:
            raise _Skip(f"pregnancy recorded {start}, more than {limit} days before as_of")
        self.pregnant_by = self.pregnant_by or kind
        return "pregnant: true"

    def _symptom(self, sid: str, onset: dt.date | None, severity: str | None) -> str:
        if self.kb.symptoms[sid].role == "red_flag":
            days = self.kb.fhir.red_flag_recent_days
            if onset is None:
                raise _Skip(f"red-flag finding {sid} with no date: it counts only when new")
            if (self.as_of - onset).days > days:
                raise _Skip(
                    f"red-flag finding {sid} from {onset}: it counts only when new "
                    f"(within {days} days)"
                )
        entry = self.symptoms.setdefault(sid, {"id": sid})
        if onset is not None:
            weeks = (self.as_of - onset).days // 7
            entry["duration_weeks"] = max(entry.get("duration_weeks", 0), weeks)
        if severity is not None and SEVERITY_ORDER[severity] > SEVERITY_ORDER.get(
            entry.get("severity", ""), 0
        ):
            entry["severity"] = severity
        detail = ", ".join(
            p
            for p in (
                f"{entry['duration_weeks']} weeks" if "duration_weeks" in entry else "",
                severity or "",
            )
            if p
        )
        return f"symptoms: {sid}" + (f" ({detail})" if detail else "")

    # -- medicines -------------------------------------------------------------------

    def _medicine_codings_of(self, raw: Resource) -> tuple[list[Any], str]:
        """The codings and text that name the medicine, following medicationReference."""
        concept = raw.get("medicationCodeableConcept")
        if isinstance(concept, Mapping):
            return codings_of(concept), str(concept.get("text") or "")
        ref = raw.get("medicationReference")
        target: Mapping[str, Any] | None = None
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            r = ref["reference"]
            if r.startswith("#"):
                target = next((c for c in raw.get("contained") or [] if c.get("id") == r[1:]), None)
            else:
                target = self.by_url.get(r) or self.shared.get(r)
            if target is None and isinstance(ref.get("display"), str):
                return [], str(ref["display"])
        if target is None:
            return [], ""
        code = target.get("code")
        if not isinstance(code, Mapping):
            return [], ""
        return codings_of(code), str(code.get("text") or "")

    def _medicine(self, raw: Resource) -> tuple[Meaning | None, str, str]:
        """(meaning by code, medication id, how it was matched)."""
        codings, text = self._medicine_codings_of(raw)
        if self.index.first(codings, ("exposure",)) is not None:
            # Nitrous oxide given as an anaesthetic is not the recreational exposure.
            raise _Skip("a medicine that b12dx records only as an exposure the patient reports")
        meaning = self.index.first(codings, ("medication",))
        if meaning is not None:
            return meaning, meaning.id, f"{meaning.code.system} {meaning.code.code}"
        names = " ".join(
            [text, *[str(getattr(c, "display", None) or c.get("display") or "") for c in codings]]
        )
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
        raise _Skip(f"medicine not in b12dx's tables ({named})")

    def _medication(self, raw: Resource, reference: str) -> str | None:
        _, mid, how = self._medicine(raw)
        res = _parse(raw)
        st = self.kb.fhir.statuses
        status = str(res.status)
        if raw["resourceType"] == "MedicationRequest":
            if status in st.medication_request_ignored:
                raise _Skip(f"status {status}")
            if res.intent in st.medication_request_intent_ignored:
                raise _Skip(f"intent {res.intent}: not an order")
            validity = res.dispenseRequest.validityPeriod if res.dispenseRequest else None
            start, _ = to_date((validity.start if validity else None) or res.authoredOn)
            end, _ = to_date(validity.end if validity else None)
            ongoing = status in st.medication_request_ongoing
            supply = res.dispenseRequest.expectedSupplyDuration if res.dispenseRequest else None
            if end is None and start is not None and supply is not None and supply.value:
                days = supply_days(supply)
                repeats = res.dispenseRequest.numberOfRepeatsAllowed or 0
                if days:
                    end = start + dt.timedelta(days=days * (repeats + 1))
        else:
            if status in st.medication_statement_ignored:
                raise _Skip(f"status {status}")
            period = res.effectivePeriod
            start, _ = to_date(
                (period.start if period else None) or res.effectiveDateTime or res.dateAsserted
            )
            end, _ = to_date(period.end if period else None)
            ongoing = status in st.medication_statement_ongoing
        if start is None:
            raise _Skip("no date (authoredOn, effective or validity period)")
        if start > self.as_of:
            # A later order shows the course went on past as_of, whatever its status says
            # now (a record's status is today's, not the one on as_of).
            self.later_starts.setdefault(mid, []).append(start)
        self._when(start, "starts")
        course = _Course(
            start,
            max(end or start, start),
            ongoing and (end is None or end >= self.as_of),
            reference,
            status,
        )
        self.courses.setdefault(mid, []).append(course)
        self.how[reference] = how
        return None  # noted when the courses are added up

    def _administration(self, raw: Resource) -> str | None:
        _, mid, _how = self._medicine(raw)
        if mid != "b12_supplement":
            raise _Skip("only doses of B12 given are used from administrations")
        adm = _parse(raw)
        if adm.status not in self.kb.fhir.statuses.medication_administration_used:
            raise _Skip(f"status {adm.status}")
        when, _ = to_date(
            adm.effectiveDateTime or (adm.effectivePeriod.start if adm.effectivePeriod else None)
        )
        if when is None:
            raise _Skip("no date given")
        self._when(when, "given")
        codings, text = self._medicine_codings_of(raw)
        drug = qualifier(self.index, self.kb.fhir.b12_drugs, codings) or drug_by_name(text)
        if drug is None:
            raise _Skip("which B12 was given is not recorded")
        route = None
        if adm.dosage is not None:
            route = qualifier(self.index, self.kb.fhir.routes, codings_of(adm.dosage.route))
        if route is None:
            raise _Skip("route not recorded")
        dose: dict[str, Any] = {"date": when.isoformat(), "drug": drug, "route": route}
        mg = dose_mg(adm.dosage.dose if adm.dosage else None)
        if mg is not None:
            dose["dose_mg"] = mg
        self.doses.append(dose)
        return f"b12_treatment: {drug} {route} on {when}"

    def finish_courses(self) -> list[dict[str, Any]]:
        gap = self.kb.fhir.medication_runs.gap_days
        medications = []
        for mid, courses in self.courses.items():
            courses.sort(key=lambda c: (c.start, c.end))
            # One pass, each run's end kept as it grows: linear in the orders (the end
            # recomputed for every order made 16,000 overlapping orders take 12 s).
            runs: list[list[_Course]] = []
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


def medicine_of(resource: Resource, kb: Knowledge) -> str | None:
    """The medication id a medicine resource (e.g. a draft order) names, or None."""
    builder = _Builder(kb, dt.date.max, code_index(kb), {})
    try:
        return builder._medicine(resource)[1]
    except _Skip:
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


def record_from_resources(
    resources: Sequence[Resource],
    as_of: dt.date,
    kb: Knowledge,
    *,
    shared: Mapping[str, Resource] | None = None,
) -> FhirImport:
    """Build the patient record of the one Patient among ``resources``, as of ``as_of``.

    Raises InputError when there is no single Patient, no usable birth date, or the
    patient had died by ``as_of``. Everything else that cannot be used is reported as
    ignored, with the reason, and the rest of the record still stands.
    """
    not_resources = [i for i, r in enumerate(resources) if not _is_resource(r)]
    if not_resources:
        i = not_resources[0]
        raise InputError(
            [
                FieldError(
                    f"entry[{i}]",
                    "is not a FHIR resource (a JSON object with a resourceType)",
                    "FHIR R4 resources",
                )
            ]
        )
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        found = "no Patient resource" if not patients else f"{len(patients)} Patient resources"
        raise InputError(
            [FieldError("Patient", f"the input holds {found}", "exactly one Patient per Bundle")]
        )
    raw_patient = patients[0]
    try:
        patient = _parse(raw_patient)
    except _Skip as skip:
        raise InputError([FieldError("Patient", str(skip))]) from None
    builder = _Builder(kb, as_of, code_index(kb), shared or {})
    record: dict[str, Any] = {"as_of": as_of.isoformat()}
    pid = patient.id
    patient_refs = {f"Patient/{pid}", str(raw_patient.get("_fullUrl", ""))} - {"", "Patient/None"}
    _patient_fields(patient, as_of, kb, builder, record)

    for r in resources:
        url = r.get("_fullUrl")
        if isinstance(url, str):
            builder.by_url[url] = r
        if r.get("id"):
            builder.by_url[f"{r['resourceType']}/{r['id']}"] = r
    for position, resource in enumerate(resources):
        if resource is raw_patient:
            continue
        ref = patient_reference(resource)
        if (
            ref is not None
            and ref not in patient_refs
            and (pid is None or reference_id(ref) != pid)
        ):
            builder.ignored.append(
                ResourceNote(_ref(resource, position), f"about another patient ({ref})")
            )
            continue
        builder.add(resource, position)

    medications = builder.finish_courses()
    if builder.diet is not None:
        record["diet"] = builder.diet[1]
    if builder.pregnant_by is not None:
        record["pregnant"] = True
    for key, values in (
        ("symptoms", list(builder.symptoms.values())),
        ("conditions", list(builder.conditions.values())),
        ("medications", medications),
        ("exposures", list(builder.exposures.values())),
        ("labs", builder.labs),
        ("b12_treatment", sorted(builder.doses, key=lambda d: str(d["date"]))),
    ):
        if values:
            record[key] = values
    url = raw_patient.get("_fullUrl")
    reference = f"Patient/{pid}" if pid else (url if isinstance(url, str) and url else None)
    return FhirImport(pid, record, builder.used, builder.ignored, reference)


def _patient_fields(
    patient: Any, as_of: dt.date, kb: Knowledge, builder: _Builder, record: dict[str, Any]
) -> None:
    reference = f"Patient/{patient.id}" if patient.id else "Patient"
    notes: list[str] = []
    birth, partial = to_date(patient.birthDate)
    if birth is None:
        raise InputError(
            [FieldError("Patient.birthDate", "is missing", "the birth date, to work out the age")]
        )
    if birth > as_of:
        raise InputError([FieldError("Patient.birthDate", f"{birth} is after as_of {as_of}")])
    died, _ = to_date(patient.deceasedDateTime)
    if patient.deceasedBoolean is True or (died is not None and died <= as_of):
        when = f" on {died}" if died else ""
        raise InputError(
            [
                FieldError(
                    "Patient.deceased",
                    f"the patient died{when}",
                    "an as_of date before the death" if died else "a living patient",
                )
            ]
        )
    record["age_years"] = age_on(birth, as_of)
    notes.append(f"age_years: {record['age_years']}")
    if partial:
        notes.append(f"birthDate {patient.birthDate} is partial, read as {birth}")
    if patient.gender in ("female", "male", "other", "unknown"):
        record["sex"] = patient.gender
        builder.sex = patient.gender
        notes.append(f"sex: {patient.gender}")
    fm = kb.fhir
    for ext in patient.extension or []:
        if ext.url not in fm.ethnicity_extensions:
            continue
        codings = [sub.valueCoding for sub in ext.extension or [] if sub.valueCoding is not None]
        found = qualifier(builder.index, fm.ethnicity, codings)
        record["ethnicity"] = found or "other"
        notes.append(f"ethnicity: {record['ethnicity']}")
    builder.used.append(ResourceNote(reference, "; ".join(notes)))
