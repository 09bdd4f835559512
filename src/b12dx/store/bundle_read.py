"""A FHIR R4 Bundle of one patient read into a plan of what to store (pure: no database).
The mapping is the one ``b12dx.store.bundle`` writes; ``b12dx.store.bundle_import`` writes
the plan through the store's own checks.

b12dx's own codings (``https://b12dx.org/fhir/CodeSystem/...``) are read first, so an
export comes back exactly; otherwise the standard codes are looked up in the knowledge
base's tables (``b12dx.fhir.codes``: SNOMED CT, ICD-10 by hierarchy, LOINC, ATC, RxNorm,
UCUM), as ``b12dx assess`` reads a Bundle. Each resource is planned, ignored with the
reason, or refused with an InputError naming the resource and field (the rules are in
``b12dx.store.bundle_import``'s docstring).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from b12dx.engine.units import find_unit
from b12dx.errors import FieldError, InputError
from b12dx.fhir.codes import code_index, in_codes, qualifier
from b12dx.fhir.findings import check_pregnancy, latest_diet
from b12dx.fhir.medicines import medicine_named, medicine_of
from b12dx.fhir.read import Resource, another_patient, bundle_resources, by_reference, element
from b12dx.fhir.results import (
    qualitative_result,
    recorded_absent,
    result_quantity,
    result_unit,
)
from b12dx.fhir.validate import NotUsed, NotValid, ResourceNote, label_of, model_of
from b12dx.fhir.values import (
    abated_on,
    coding_label,
    codings_of,
    drug_by_name,
    observed,
    start_of,
    to_date,
)
from b12dx.knowledge.loader import Knowledge
from b12dx.models.patient import PatientRecord
from b12dx.store.bundle import EXTENSION, PATIENT_ID_SYSTEM, SYSTEM

Kind = Literal["lab", "rating", "dose", "medication", "exposure"]
NOT_KEPT = {
    "MedicationRequest": "an order is not a record of what was taken or given",
    "Medication": "read where a statement or administration refers to it",
}
NO_GIVER = "not recorded"


@dataclass(frozen=True)
class Action:
    """One entry to store for the new patient, from one resource: ``values`` are the
    arguments of the store function for ``kind``."""

    reference: str
    kind: Kind
    values: dict[str, Any]


@dataclass
class Plan:
    """What an import will write, worked out before anything is."""

    patient_ref: str = "Patient"
    # The b12dx id the Bundle's Patient carries as an identifier (b12dx's own export):
    # how an import recognises a patient it already holds.
    identifier: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # patients.add's arguments
    pregnant: bool = False
    breastfeeding: bool = False
    # (resource, condition id, recorded on, eGFR)
    conditions: list[tuple[str, str, dt.date | None, float | None]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    used: list[ResourceNote] = field(default_factory=list)
    ignored: list[ResourceNote] = field(default_factory=list)


def refused(reference: str, path: str, message: str, accepted: str | None = None) -> InputError:
    """An InputError naming the resource and its element."""
    return InputError([FieldError(f"{reference}.{path}" if path else reference, message, accepted)])


def _model(resource: Resource, reference: str) -> Any:
    """The fhir.resources model of a resource, or an InputError naming the bad field."""
    try:
        return model_of(resource)
    except NotValid as bad:
        message = bad.message.removeprefix("Value error, ")
        raise refused(reference, bad.where, f"not valid FHIR R4: {message}") from None


def _own(codings: list[Any], kind: str) -> str | None:
    """The code of b12dx's own coding of ``kind``, if the concept has one."""
    for c in codings:
        if element(c, "system") == SYSTEM[kind] and element(c, "code"):
            return str(element(c, "code"))
    return None


class Reader:
    """Reads the resources into a Plan; touches no database."""

    def __init__(self, kb: Knowledge, today: dt.date, by_url: Mapping[str, Resource]) -> None:
        self.kb = kb
        self.today = today
        self.index = code_index(kb)
        self.by_url = by_url
        self.plan = Plan()
        self.diet: tuple[dt.date, str] | None = None
        self.seen: dict[tuple[Any, ...], str] = {}

    # -- helpers -----------------------------------------------------------------------

    def _id(self, codings: list[Any], kind: str, table: Mapping[str, Any], ref: str) -> str | None:
        """The knowledge-base id a concept names: b12dx's coding (which must name an id b12dx
        knows), else the first standard code of that kind."""
        own = _own(codings, kind)
        if own is not None:
            if own not in table:
                raise refused(ref, "code", f"unknown b12dx {kind} {own!r}", ", ".join(table))
            return own
        meaning = self.index.first(codings, (kind,))
        return meaning.id if meaning is not None else None

    def _date(self, value: Any, ref: str, path: str) -> dt.date | None:
        day, _partial = to_date(value)
        if day is not None and day > self.today:
            raise refused(ref, path, f"{day} is in the future (today is {self.today})")
        return day

    def _once(self, key: tuple[Any, ...], ref: str) -> None:
        """An exact repeat of a resource already read (a record holding the same result
        twice) is ignored; a different value under the same key is for the checks."""
        earlier = self.seen.get(key)
        if earlier is not None:
            raise NotUsed(f"the same as {earlier}, already imported")
        self.seen[key] = ref

    def _add(self, ref: str, kind: Kind, note: str, **values: Any) -> None:
        self.plan.actions.append(Action(ref, kind, values))
        self.plan.used.append(ResourceNote(ref, note))

    # -- the person --------------------------------------------------------------------

    def patient(self, raw: Resource, ref: str) -> None:
        p = _model(raw, ref)
        self.plan.patient_ref = ref
        name = next((n for n in p.name or [] if n.use != "old"), None)
        text = ""
        if name is not None:
            text = name.text or " ".join([*(name.given or []), name.family or ""]).strip()
        if not text:
            raise refused(ref, "name", "is missing", "a name (name.text or given and family)")
        birth, _ = to_date(p.birthDate)
        if birth is None:
            raise refused(ref, "birthDate", "is missing", "the birth date as YYYY-MM-DD")
        own = [i.value for i in p.identifier or [] if i.system == PATIENT_ID_SYSTEM and i.value]
        self.plan.identifier = str(own[0]) if own else None
        d = self.plan.details
        d.update(name=text, birth_date=birth, sex=p.gender or "unknown")
        if p.deceasedBoolean or p.deceasedDateTime:
            raise refused(ref, "deceased", "the patient has died", "a living patient")
        fm = self.kb.fhir
        for ext in p.extension or []:
            if ext.url == EXTENSION["diet"]:
                d["diet"] = _own(codings_of(ext.valueCodeableConcept), "diet") or "omnivore"
            elif ext.url == EXTENSION["ethnicity"] and ext.valueCoding is not None:
                d["ethnicity"] = str(ext.valueCoding.code)
            elif ext.url == EXTENSION["breastfeeding"]:
                self.plan.breastfeeding = bool(ext.valueBoolean)
            elif ext.url == EXTENSION["profile"]:
                d["profile"] = ext.valueString
            elif ext.url in fm.ethnicity_extensions and "ethnicity" not in d:
                codings = [s.valueCoding for s in ext.extension or [] if s.valueCoding]
                found = qualifier(self.index, fm.ethnicity, codings)
                d["ethnicity"] = found or "other"
        self.plan.used.append(ResourceNote(ref, f"patient: {text}, born {birth}, {d['sex']}"))

    # -- per resource ------------------------------------------------------------------

    def read(self, resource: Resource, ref: str) -> None:
        rtype = str(resource["resourceType"])
        handler = {
            "Condition": self._condition,
            "Procedure": self._procedure,
            "Observation": self._observation,
            "MedicationStatement": self._statement,
            "MedicationAdministration": self._administration,
        }.get(rtype)
        try:
            if handler is None:
                why = NOT_KEPT.get(rtype, "b12dx does not keep this kind of resource")
                raise NotUsed(f"{rtype} is not imported: {why}")
            handler(resource, ref)
        except NotUsed as skip:
            self.plan.ignored.append(ResourceNote(ref, str(skip)))

    def _condition(self, raw: Resource, ref: str) -> None:
        codings = codings_of(raw.get("code"))
        cid = self._id(codings, "condition", self.kb.conditions, ref)
        other = self.index.first(codings, ("exposure", "diet", "pregnancy", "symptom"))
        if cid is None and other is None:
            raise NotUsed(f"code not in b12dx's tables ({coding_label(codings, self.index)})")
        cond = _model(raw, ref)
        fm = self.kb.fhir
        verification = codings_of(cond.verificationStatus)
        if verification and verification[0].code in fm.statuses.condition_verification_ignored:
            raise NotUsed(f"verification status {verification[0].code}")
        status = codings_of(cond.clinicalStatus)
        clinical = str(status[0].code) if status else None
        ended, _ = to_date(abated_on(cond))
        over = clinical in fm.statuses.condition_clinical_ignored or (
            ended is not None and ended <= self.today
        )
        why_over = f"clinical status {clinical}" if ended is None else f"ended on {ended}"
        onset = self._date(start_of(cond, "onset"), ref, "onsetDateTime")
        recorded = self._date(cond.recordedDate, ref, "recordedDate")
        if cid is None:
            assert other is not None
            if other.kind == "symptom":
                raise NotUsed(
                    f"symptom {other.id} as a Condition: b12dx keeps symptoms as ratings on "
                    "dates (an Observation coded LOINC 75325-1 Symptom, with a severity)"
                )
            if over:
                raise NotUsed(why_over)
            if other.kind == "exposure":
                return self._exposure(ref, other.id, True)
            if other.kind == "diet":
                return self._diet(ref, other.id, onset or recorded)
            return self._pregnancy(ref, onset or recorded)
        if over and cid not in fm.lasting_conditions:
            raise NotUsed(why_over)
        egfr = None
        for ext in cond.extension or []:
            if ext.url == EXTENSION["egfr"] and ext.valueQuantity is not None:
                egfr = float(ext.valueQuantity.value)
        self._condition_id(ref, cid, recorded or onset, egfr)
        self._also(codings, cid, ref, recorded or onset)

    def _also(self, codings: list[Any], cid: str, ref: str, day: dt.date | None) -> None:
        """The other conditions a combination code records (ICD-10-CM E10.42: type 1
        diabetes beside the neuropathy), each added once."""
        meaning = self.index.first(codings, ("condition",))
        if meaning is None or meaning.id != cid:
            return
        for extra in meaning.code.also:
            if ("condition", extra) not in self.seen:
                self._condition_id(ref, extra, day, None)

    def _condition_id(self, ref: str, cid: str, day: dt.date | None, egfr: float | None) -> None:
        self._once(("condition", cid), ref)
        self.plan.conditions.append((ref, cid, day, egfr))
        self.plan.used.append(ResourceNote(ref, f"condition: {cid}"))

    def _procedure(self, raw: Resource, ref: str) -> None:
        codings = codings_of(raw.get("code"))
        cid = self._id(codings, "condition", self.kb.conditions, ref)
        if cid is None:
            raise NotUsed(f"code not in b12dx's tables ({coding_label(codings, self.index)})")
        proc = _model(raw, ref)
        if proc.status not in self.kb.fhir.statuses.procedure_used:
            raise NotUsed(f"status {proc.status}")
        when = self._date(start_of(proc, "performed"), ref, "performedDateTime")
        self._condition_id(ref, cid, when, None)
        self._also(codings, cid, ref, when)

    def _observation(self, raw: Resource, ref: str) -> None:
        code = codings_of(raw.get("code"))
        value = codings_of(raw.get("valueCodeableConcept"))
        fm = self.kb.fhir
        if in_codes(self.index, fm.symptom_observation, code):
            sid = self._id(value, "symptom", self.kb.symptoms, ref)
            if sid is None:
                raise NotUsed(f"symptom not in b12dx's tables ({coding_label(value, self.index)})")
            return self._rating(raw, ref, sid)
        test = self._id(code, "lab", self.kb.labs, ref)
        if test is not None:
            return self._lab(raw, ref, test)
        exposure = self._id(code, "exposure", self.kb.exposures, ref)
        meaning = self.index.first(code, ("symptom", "pregnancy", "diet"))
        if exposure is None and meaning is None:
            raise NotUsed(f"code not in b12dx's tables ({coding_label(code, self.index)})")
        if meaning is not None and meaning.kind == "symptom":
            return self._rating(raw, ref, meaning.id)
        obs = _model(raw, ref)
        if str(obs.status) not in fm.statuses.finding_used:
            raise NotUsed(f"status {obs.status}")
        when = self._date(observed(obs), ref, "effectiveDateTime")
        if recorded_absent(self.kb, self.index, obs):
            raise NotUsed("records the finding as absent")
        if exposure is not None:
            state = _own(value, "exposure-status")
            return self._exposure(ref, exposure, None if state is None else state == "ongoing")
        assert meaning is not None
        if meaning.kind == "diet":
            return self._diet(ref, meaning.id, when)
        if meaning.code.system == "LOINC" and self.index.first(value, ("pregnancy",)) is None:
            raise NotUsed("pregnancy status is not 'pregnant'")
        return self._pregnancy(ref, when)

    def _lab(self, raw: Resource, ref: str, test_id: str) -> None:
        obs = _model(raw, ref)
        fm = self.kb.fhir
        used = fm.statuses.observation_used
        if str(obs.status) not in used:
            raise NotUsed(f"status {obs.status}: only {', '.join(used)} results are kept")
        when = self._date(observed(obs), ref, "effectiveDateTime")
        if when is None:
            raise NotUsed("no date (effectiveDateTime)")
        test = self.kb.labs[test_id]
        notes: list[str] = []
        value: str | float
        unit: str | None = None
        limits: dict[str, float] = {}
        if test.kind == "qualitative":
            found = qualitative_result(self.kb, self.index, obs)
            if found is None:
                raise NotUsed("no positive or negative result")
            value = found
        else:
            q = result_quantity(obs)
            value = float(q.value)
            unit = self._unit(test_id, q)
            for rng in obs.referenceRange or []:
                for name, bound in (("low", rng.low), ("high", rng.high)):
                    if bound is None or bound.value is None or name in limits:
                        continue
                    unitless = bound.unit is None and bound.code is None
                    if unitless or self._unit(test_id, bound) == unit:
                        limits[name] = float(bound.value)
                    else:
                        notes.append(f"reference {name} in another unit, not kept")
        self._once(("lab", test_id, when, value, unit), ref)
        shown = f"{value:g} {unit}" if isinstance(value, float) else value
        self._add(
            ref,
            "lab",
            f"lab: {test_id} {shown} on {when}" + "".join(f" ({n})" for n in notes),
            test=test_id,
            value=value,
            unit=unit,
            taken_on=when,
            reference_low=limits.get("low"),
            reference_high=limits.get("high"),
        )

    def _unit(self, test_id: str, q: Any) -> str | None:
        """The unit as written when it is the test's unit the result is in (read as every
        FHIR reader reads it, ``fhir.results.result_unit``), so an export comes back
        exactly; else that unit; else the text as given (which the checks then refuse,
        naming the accepted units)."""
        test = self.kb.labs[test_id]
        unit = result_unit(self.kb, test, q)
        text = str(q.unit) if q.unit else None
        if unit is None:
            ucum = not q.system or "unitsofmeasure" in q.system
            return text or (str(q.code) if q.code and ucum else None)
        written = self.kb.fhir.lab_unit_aliases.get(test_id, {}).get(str(text), text)
        same = find_unit(self.kb, test, written) if written else None
        return written if same is not None and same.unit == unit.unit else unit.unit

    def _rating(self, raw: Resource, ref: str, symptom: str) -> None:
        obs = _model(raw, ref)
        fm = self.kb.fhir
        if str(obs.status) not in fm.statuses.finding_used:
            raise NotUsed(f"status {obs.status}")
        when = self._date(observed(obs), ref, "effectiveDateTime")
        if when is None:
            raise NotUsed("no date (effectiveDateTime): a rating is kept with its date")
        rating = self._grade(obs)
        if rating is None:
            raise NotUsed(
                "no rating: a severity (mild, moderate, severe) or absent, as a component "
                "coded SNOMED CT 246112005 Severity"
            )
        self._once(("rating", symptom, when, rating), ref)
        note = f"symptom rating: {symptom} {rating} on {when}"
        self._add(ref, "rating", note, symptom=symptom, rating=rating, rated_on=when)

    def _grade(self, obs: Any) -> str | None:
        """none, mild, moderate or severe: b12dx's rating coding, else a severity code in a
        component, else the finding recorded as absent."""
        fm = self.kb.fhir
        for comp in obs.component or []:
            codings = codings_of(comp.valueCodeableConcept)
            own = _own(codings, "symptom-rating")
            if own is not None:
                return own  # an unknown one is refused by the rating check, naming the values
            found = qualifier(self.index, fm.severity, codings)
            if found is not None:
                return found
            if in_codes(self.index, fm.absent, codings):
                return "none"
        if recorded_absent(self.kb, self.index, obs):
            return "none"
        return None

    # -- medicines and doses -----------------------------------------------------------

    def _medicine_concept(self, raw: Resource) -> Resource:
        """The resource with a referenced Medication's code in place of the reference,
        so the knowledge base's lookups (codes, then names) see it."""
        if not isinstance(raw.get("medicationReference"), Mapping):
            return raw
        codings, text = medicine_named(raw, self.by_url.get)
        concept = {"coding": codings, "text": text}
        return {k: v for k, v in raw.items() if k != "medicationReference"} | {
            "medicationCodeableConcept": concept
        }

    def _statement(self, raw: Resource, ref: str) -> None:
        named = self._medicine_concept(raw)
        codings = codings_of(named.get("medicationCodeableConcept"))
        mid = _own(codings, "medication") or medicine_of(named, self.kb)
        if mid is None or mid not in self.kb.medications:
            raise NotUsed(f"medicine not in b12dx's tables ({coding_label(codings, self.index)})")
        res = _model(raw, ref)
        st = self.kb.fhir.statuses
        if res.status in st.medication_statement_ignored:
            raise NotUsed(f"status {res.status}")
        period = res.effectivePeriod
        start = self._date(
            (period.start if period else None) or res.effectiveDateTime,
            ref,
            "effectivePeriod.start",
        )
        end, _ = to_date(period.end if period else None)
        note = ""
        if end is not None and end > self.today:
            note, end = f" (planned to end {end}: taken now)", None
        if res.status not in st.medication_statement_ongoing and end is None:
            end, _ = to_date(res.dateAsserted)
            end = end or start
            if end is None:
                raise NotUsed(f"status {res.status} with no dates: when it was taken is unknown")
            note = f" (status {res.status} with no end date: taken as stopped on {end})"
        span = f"since {start}" if start else "start unknown"
        span += f", stopped {end}" if end else ""
        note = f"medication: {mid} ({span}){note}"
        self._add(ref, "medication", note, medication=mid, since=start, stopped=end)

    def _administration(self, raw: Resource, ref: str) -> None:
        named = self._medicine_concept(raw)
        concept = named.get("medicationCodeableConcept")
        codings = codings_of(concept)
        text = str(concept.get("text") or "") if isinstance(concept, Mapping) else ""
        fm = self.kb.fhir
        drug = (
            _own(codings, "drug")
            or qualifier(self.index, fm.b12_drugs, codings)
            or drug_by_name(text)
        )
        if drug is None:
            if medicine_of(named, self.kb) == "b12_supplement":
                raise NotUsed("which B12 was given is not recorded")
            raise NotUsed(
                f"not a dose of B12 ({coding_label(codings, self.index) if codings else text})"
            )
        adm = _model(raw, ref)
        if adm.status not in fm.statuses.medication_administration_used:
            raise NotUsed(f"status {adm.status}")
        when = self._date(start_of(adm, "effective"), ref, "effectiveDateTime")
        if when is None:
            raise NotUsed("no date given")
        dosage = adm.dosage
        route_codings = codings_of(dosage.route) if dosage is not None else []
        route = _own(route_codings, "route") or qualifier(self.index, fm.routes, route_codings)
        if route is None:
            # A drug given only one way is read by it (fhir.yaml route_when_unrecorded).
            route = fm.route_when_unrecorded.get(drug)
            if route is None:
                raise NotUsed(
                    f"route not recorded (dosage.route; {drug} is given more than one way)"
                )
        q = dosage.dose if dosage is not None else None
        if q is None or q.value is None:
            raise NotUsed("dose not recorded (dosage.dose)")
        dose = f"{q.value} {q.code or q.unit or ''}".strip()
        performers = [p.actor.display for p in adm.performer or [] if p.actor.display]
        given_by = performers[0] if performers else NO_GIVER
        self._once(("dose", when, drug, route), ref)
        note = f"dose: {drug} {dose} {route} on {when}"
        self._add(
            ref, "dose", note, given_on=when, drug=drug, dose=dose, route=route, given_by=given_by
        )

    # -- qualifiers of the person ------------------------------------------------------

    def _exposure(self, ref: str, eid: str, ongoing: bool | None) -> None:
        self._once(("exposure", eid), ref)
        state = {True: "ongoing", False: "ended", None: "ongoing unknown"}[ongoing]
        self._add(ref, "exposure", f"exposure: {eid} ({state})", exposure=eid, ongoing=ongoing)

    def _diet(self, ref: str, diet: str, when: dt.date | None) -> None:
        self.diet = latest_diet(self.diet, diet, when)
        self.plan.used.append(ResourceNote(ref, f"diet: {diet}"))

    def _pregnancy(self, ref: str, when: dt.date | None) -> None:
        check_pregnancy(self.kb, self.plan.details.get("sex"), when, self.today)
        self.plan.pregnant = True
        self.plan.used.append(ResourceNote(ref, "pregnant"))


class NotABundle(InputError):
    """The file is some other JSON (``what`` says what: often the contract's record,
    which ``b12dx assess`` reads and the import does not)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__([FieldError("", f"the file is {what}, not a FHIR Bundle", IMPORT_ACCEPTS)])


IMPORT_ACCEPTS = "a FHIR R4 Bundle of one patient, as `b12dx patient export` writes"
CONTRACT_RECORD = "a b12dx patient record (contract JSON)"


def not_a_bundle(data: Any) -> str | None:
    """What ``data`` is when it is not a FHIR Bundle; None for a Bundle."""
    if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
        return None
    if isinstance(data, Mapping) and isinstance(data.get("resourceType"), str):
        return f"a FHIR {data['resourceType']} resource"
    if isinstance(data, Mapping) and data and set(data) <= set(PatientRecord.model_fields):
        return CONTRACT_RECORD
    if isinstance(data, Mapping):
        return "a JSON object with no resourceType"
    kinds = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return f"a JSON {kinds.get(type(data), 'number')}"


def read_bundle(kb: Knowledge, data: Any, today: dt.date) -> Plan:
    """Work out what importing ``data`` (a Bundle's JSON) would write; InputError when it
    cannot be imported (NotABundle when it is other JSON). Pure: no database."""
    what = not_a_bundle(data)
    if what is not None:
        raise NotABundle(what)
    resources = bundle_resources(data)
    found = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(found) != 1:
        what = "no Patient resource" if not found else f"{len(found)} Patient resources"
        raise InputError.single("Patient", f"the Bundle holds {what}", "exactly one Patient")
    reader = Reader(kb, today, by_reference(resources))
    raw_patient = found[0]
    reader.patient(raw_patient, label_of(raw_patient, resources.index(raw_patient)))
    about_another = another_patient(raw_patient)
    for position, resource in enumerate(resources):
        if resource is raw_patient:
            continue
        ref = label_of(resource, position)
        other = about_another(resource)
        if other is not None:
            reader.plan.ignored.append(ResourceNote(ref, f"about another patient ({other})"))
            continue
        reader.read(resource, ref)
    if reader.diet is not None and "diet" not in reader.plan.details:
        reader.plan.details["diet"] = reader.diet[1]
    return reader.plan
