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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from b12dx.errors import FieldError, InputError
from b12dx.fhir.codes import CodeIndex, Meaning, code_index, in_codes, qualifier
from b12dx.fhir.findings import check_pregnancy, latest_diet
from b12dx.fhir.medicines import Medicines, exposure_status_used, medicine_exposure
from b12dx.fhir.read import Resource, another_patient, by_reference
from b12dx.fhir.results import (
    numeric_result,
    qualitative_result,
    recorded_absent,
    result_unit,
)
from b12dx.fhir.validate import (
    NotUsed,
    NotValid,
    ResourceNote,
    is_resource,
    label_of,
    model_of,
    not_after,
    read_model,
)
from b12dx.fhir.values import (
    abated_on,
    age_on,
    coding_label,
    codings_of,
    months_between,
    observed,
    plain_number,
    raw_codings_of,
    start_of,
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


def _malformed(resource: Mapping[str, Any], exc: Exception) -> str:
    """Why a resource that broke the reader is not used: FHIR R4 validation's first
    problem (the field and what is wrong), else the kind of fault."""
    try:
        model_of(resource)
    except NotValid as invalid:
        if invalid.where:
            return f"not valid FHIR R4 ({invalid})"
    except Exception:
        pass
    return f"not valid FHIR R4 (a field of the wrong shape: {type(exc).__name__})"


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
    labs: list[dict[str, Any]] = field(default_factory=list)
    diet: tuple[dt.date, str] | None = None
    pregnant_by: str | None = None
    sex: str = "unknown"
    born: dt.date | None = None  # Patient.birthDate: nothing is dated before it
    medicines: Medicines = field(init=False)

    def __post_init__(self) -> None:
        by_url, shared = self.by_url, self.shared

        def find(reference: str) -> Resource | None:
            return by_url.get(reference) or shared.get(reference)

        # ``find`` holds the two indexes, not the builder: a reference back to the builder
        # would make a cycle, and a long record would then wait for the garbage collector
        # instead of being freed when its import is done (slower collections in a server).
        self.medicines = Medicines(self.kb, self.as_of, self.index, find)

    # -- helpers ---------------------------------------------------------------------

    def _when(self, date: dt.date | None, what: str = "recorded") -> dt.date | None:
        return not_after(date, self.as_of, what, self.born)

    def _meaning(self, codings: list[Any], kinds: Iterable[str]) -> Meaning:
        meaning = self.index.first(codings, kinds)
        if meaning is None:
            raise NotUsed(f"code not in b12dx's tables ({coding_label(codings, self.index)})")
        return meaning

    # -- per resource type -----------------------------------------------------------

    def add(self, resource: Resource, position: int) -> None:
        reference = label_of(resource, position)
        try:
            note = self._dispatch(resource, reference)
        except NotUsed as skip:
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
            raise NotUsed(f"{rtype} is not used by the assessment")
        if rtype == "Observation":
            return self._observation(resource)
        if rtype == "Condition":
            return self._condition(resource)
        if rtype == "Procedure":
            return self._procedure(resource)
        exposure = medicine_exposure(resource, self.index, self.medicines.find)
        if exposure is not None:
            status = exposure_status_used(resource, self.kb)
            if status is not None:
                raise NotUsed(f"status {status}")
            return self._exposure(exposure)
        if rtype == "MedicationAdministration":
            return self.medicines.add_dose(resource)
        self.medicines.add_order(resource, reference)
        return None  # noted when the courses are added up

    def _observation(self, raw: Resource) -> str | None:
        codings = raw_codings_of(raw, "code")
        symptom_form = in_codes(self.index, self.kb.fhir.symptom_observation, codings)
        if symptom_form:
            codings = raw_codings_of(raw, "valueCodeableConcept")
        meaning = self._meaning(codings, ("lab", "symptom", "pregnancy", "diet", "exposure"))
        obs = read_model(raw)
        status = str(obs.status)
        if meaning.kind == "lab" and status not in self.kb.fhir.statuses.observation_used:
            accepted = ", ".join(self.kb.fhir.statuses.observation_used)
            raise NotUsed(f"status {status}: only {accepted} results are used")
        if status not in self.kb.fhir.statuses.finding_used:
            raise NotUsed(f"status {status}")
        when, _ = to_date(observed(obs))
        self._when(when, "dated")
        if meaning.kind == "lab":
            return self._lab(meaning.id, obs, when)
        if meaning.kind == "pregnancy":
            if meaning.code.system == "LOINC":  # pregnancy status: the value says which
                value = codings_of(obs.valueCodeableConcept)
                if self.index.first(value, ("pregnancy",)) is None:
                    raise NotUsed("pregnancy status is not 'pregnant'")
            return self._pregnancy(when, None, "Observation")
        if recorded_absent(self.kb, self.index, obs):
            raise NotUsed("records the finding as absent")
        if meaning.kind == "diet":
            return self._diet(meaning.id, when)
        if meaning.kind == "exposure":
            return self._exposure(meaning.id)
        months = self.kb.fhir.symptom_observation_months
        if when is not None and months_between(when, self.as_of) >= months:
            raise NotUsed(f"symptom observed {when}, more than {months} months before as_of")
        # The finding is known from its first observation on: its tempo counts from there
        # (rule triage.new_finding), as a Condition's counts from its onset.
        return self._symptom(meaning.id, when, None)

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
        number, unit = numeric_result(self.kb, test, obs)
        entry.update(value=number, unit=unit.unit)
        for rng in obs.referenceRange or []:
            for bound, key in ((rng.low, "reference_low"), (rng.high, "reference_high")):
                if bound is None or bound.value is None:
                    continue
                # A limit with no unit is in the result's unit; one in another unit is left.
                same = result_unit(self.kb, test, bound) if bound.code or bound.unit else unit
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
        value = qualitative_result(self.kb, self.index, obs)
        if value is None:
            raise NotUsed("no positive or negative result")
        return value

    def _clinical_status(self, cond: Any) -> str | None:
        codes = codings_of(cond.clinicalStatus)
        return str(codes[0].code) if codes else None

    def _condition(self, raw: Resource) -> str | None:
        codings = raw_codings_of(raw, "code")
        meaning = self._meaning(codings, ("condition", "symptom", "pregnancy", "diet", "exposure"))
        cond = read_model(raw)
        fm = self.kb.fhir
        verification = codings_of(cond.verificationStatus)
        if verification and verification[0].code in fm.statuses.condition_verification_ignored:
            raise NotUsed(f"verification status {verification[0].code}")
        onset, _ = to_date(start_of(cond, "onset") or cond.recordedDate)
        self._when(onset, "onset")
        lasting = meaning.kind == "condition" and meaning.id in fm.lasting_conditions
        status = self._clinical_status(cond)
        if not lasting:
            if status in fm.statuses.condition_clinical_ignored:
                raise NotUsed(f"clinical status {status}")
            ended, _ = to_date(abated_on(cond))
            if ended is not None and ended <= self.as_of:
                raise NotUsed(f"resolved on {ended}")
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
        proc = read_model(raw)
        if proc.status not in self.kb.fhir.statuses.procedure_used:
            raise NotUsed(f"status {proc.status}")
        when, _ = to_date(start_of(proc, "performed"))
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
        self.diet = latest_diet(self.diet, diet, when)
        return f"diet: {diet}"

    def _pregnancy(self, start: dt.date | None, _end: dt.date | None, kind: str) -> str:
        check_pregnancy(self.kb, self.sex, start, self.as_of)
        self.pregnant_by = self.pregnant_by or kind
        return "pregnant: true"

    def _symptom(self, sid: str, onset: dt.date | None, severity: str | None) -> str:
        # A finding with no date at all is read as the contract reads a symptom with no
        # onset or duration: a red-flag finding then counts as new (triage.yaml
        # red_flag_new_within_days), as the same record typed by a clinician would.
        entry = self.symptoms.setdefault(sid, {"id": sid})
        if onset is not None:
            # A date says the day, never the hour: a finding dated today began within a
            # day (acute), and is read as sudden only where the source says so.
            days = max((self.as_of - onset).days, 1)
            weeks = days // 7 if days % 7 == 0 else round(days / 7, 2)
            entry["duration_weeks"] = max(entry.get("duration_weeks", 0), weeks)
        if severity is not None and SEVERITY_ORDER[severity] > SEVERITY_ORDER.get(
            entry.get("severity", ""), 0
        ):
            entry["severity"] = severity
        detail = ", ".join(
            p
            for p in (
                f"{entry['duration_weeks']:g} weeks"
                if "duration_weeks" in entry
                else "no date recorded",
                severity or "",
            )
            if p
        )
        return f"symptoms: {sid}" + (f" ({detail})" if detail else "")


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
    not_resources = [i for i, r in enumerate(resources) if not is_resource(r)]
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
        patient = read_model(raw_patient)
    except NotUsed as skip:
        raise InputError([FieldError("Patient", str(skip))]) from None
    builder = _Builder(kb, as_of, code_index(kb), shared or {})
    record: dict[str, Any] = {"as_of": as_of.isoformat()}
    pid = patient.id
    _patient_fields(patient, as_of, kb, builder, record)

    builder.by_url.update(by_reference(resources))
    about_another = another_patient(raw_patient)
    for position, resource in enumerate(resources):
        if resource is raw_patient:
            continue
        other = about_another(resource)
        if other is not None:
            builder.ignored.append(
                ResourceNote(label_of(resource, position), f"about another patient ({other})")
            )
            continue
        builder.add(resource, position)

    medications = builder.medicines.finish_courses()
    builder.used.extend(builder.medicines.used)
    builder.ignored.extend(builder.medicines.ignored)
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
        ("b12_treatment", sorted(builder.medicines.doses, key=lambda d: str(d["date"]))),
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
    builder.born = builder.medicines.born = birth
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
