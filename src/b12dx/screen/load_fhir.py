"""FHIR Bulk Data export (NDJSON) -> screening tables.

Resources are streamed once through the shared reader (``b12dx.fhir.read.iter_export``;
the shared Medication files are read first), each mapped with the reading layer the
single-patient import uses (``b12dx.fhir``: the code index, the status lists, dates,
results, how long an order runs, medicine matching), and written to Parquet in batches,
so memory stays flat however large the export. Unlike the
single-patient import nothing is decided as of a date here: every dated fact is kept
and the rules choose by as_of.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from b12dx.fhir.codes import CodeIndex, code_index, in_codes, qualifier
from b12dx.fhir.medicines import exposure_status_used, medicine_exposure, medicine_of
from b12dx.fhir.read import (
    REFERENCED_TYPES,
    Resource,
    iter_export,
    iter_ndjson,
    ndjson_files,
    patient_reference,
    reference_id,
)
from b12dx.fhir.results import numeric_result, qualitative_result, recorded_absent
from b12dx.fhir.validate import NotUsed
from b12dx.fhir.values import (
    abated_on,
    observed,
    order_span,
    raw_codings_of,
    start_of,
    statement_span,
    to_date,
)
from b12dx.knowledge.loader import Knowledge
from b12dx.screen.model import SCHEMAS, ScreeningTables

BATCH_ROWS = 50_000


class _Writers:
    """One Parquet writer per screening table, fed in batches."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
        self.writers = {
            name: pq.ParquetWriter(directory / f"{name}.parquet", schema)
            for name, schema in SCHEMAS.items()
        }
        self.counts = dict.fromkeys(SCHEMAS, 0)
        self.kinds = {
            name: [(f.name, _python_kind(f.type)) for f in schema]
            for name, schema in SCHEMAS.items()
        }

    def add(self, table: str, row: dict[str, Any]) -> None:
        # A value of the wrong shape (a resource's field that is not what FHIR says) is
        # refused here, where the resource can still be counted as not used, not when the
        # batch is written and the whole screen would stop.
        for name, kind in self.kinds[table]:
            value = row.get(name)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ValueError(f"{table}.{name}: {type(value).__name__}")
        buffer = self.rows[table]
        buffer.append(row)
        if len(buffer) >= BATCH_ROWS:
            self.flush(table)

    def flush(self, table: str) -> None:
        buffer = self.rows[table]
        if buffer:
            self.writers[table].write_table(pa.Table.from_pylist(buffer, schema=SCHEMAS[table]))
            self.counts[table] += len(buffer)
            buffer.clear()

    def close(self) -> None:
        for name in SCHEMAS:
            self.flush(name)
            self.writers[name].close()


def _python_kind(kind: pa.DataType) -> type | tuple[type, ...]:
    """The Python values a column of this Arrow type accepts from the mapper."""
    if pa.types.is_string(kind):
        return str
    if pa.types.is_date(kind):
        return dt.date
    if pa.types.is_integer(kind):
        return int
    if pa.types.is_floating(kind):
        return (int, float)
    return object


def _object(resource: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = resource.get(key)
    return value if isinstance(value, Mapping) else {}


def _date(value: Any) -> dt.date | None:
    return to_date(value)[0]


def _care_site(patient: Mapping[str, Any]) -> str | None:
    """Where the patient is registered: managingOrganization, else the first
    generalPractitioner that is an Organization (the practice), else the first one (a
    named GP); by its display, else its reference."""
    gps = [g for g in patient.get("generalPractitioner") or [] if isinstance(g, Mapping)]
    gps.sort(key=lambda g: not str(g.get("reference", "")).startswith("Organization/"))
    refs = [_object(patient, "managingOrganization"), *gps]
    for ref in refs:
        for key in ("display", "reference"):
            value = ref.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return None


def _period_start(resource: Mapping[str, Any], prefix: str) -> dt.date | None:
    return _date(start_of(resource, prefix))


class _Mapper:
    def __init__(self, kb: Knowledge, out: _Writers) -> None:
        self.kb = kb
        self.index: CodeIndex = code_index(kb)
        self.out = out
        self.st = kb.fhir.statuses
        self.medicines: dict[str, str | None] = {}  # medicine concept JSON -> medication id
        self.skipped: dict[str, int] = {}
        self.shared: dict[str, Resource] = {}  # Medication and the like, by Type/id

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def map(self, r: dict[str, Any]) -> None:
        """Map one resource; a malformed one is counted as not used (by its type), never
        the end of the screen."""
        try:
            self._map(r)
        except NotUsed as not_used:  # a date past the calendar's end, and the like
            kind = r.get("resourceType") if isinstance(r, dict) else None
            self.skip(f"{kind if isinstance(kind, str) else 'resource'}: {not_used.reason}")
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            kind = r.get("resourceType") if isinstance(r, dict) else None
            self.skip(
                f"{kind if isinstance(kind, str) else 'resource'}: malformed (not valid FHIR R4)"
            )

    def _map(self, r: dict[str, Any]) -> None:
        handler: Callable[[dict[str, Any], str], None] | None = getattr(
            self, f"_{r['resourceType']}", None
        )
        if r["resourceType"] == "Patient":
            self._patient(r)
            return
        ref = patient_reference(r)
        if handler is None or ref is None:
            self.skip(f"{r['resourceType']} not used")
            return
        handler(r, reference_id(ref))

    def _patient(self, r: dict[str, Any]) -> None:
        pid = r.get("id")
        if not isinstance(pid, str):
            self.skip("Patient without an id")
            return
        self.out.add(
            "person",
            {
                "person_id": pid,
                "birth_date": _date(r.get("birthDate")),
                "sex": r.get("gender"),
                "death_date": _date(r.get("deceasedDateTime")),
                "care_site": _care_site(r),
            },
        )

    def _Condition(self, r: dict[str, Any], pid: str) -> None:
        verification = {c.get("code") for c in raw_codings_of(r, "verificationStatus")}
        if verification & set(self.st.condition_verification_ignored):
            self.skip("Condition refuted or entered in error")
            return
        meaning = self.index.first(raw_codings_of(r, "code"))
        if meaning is None:
            self.skip("Condition code not in the knowledge base")
            return
        start = _period_start(r, "onset") or _date(r.get("recordedDate"))
        if meaning.kind in ("symptom", "diet", "exposure", "pregnancy"):
            self.out.add(
                "finding", {"person_id": pid, "kind": meaning.kind, "id": meaning.id, "date": start}
            )
            return
        if meaning.kind != "condition":
            self.skip(f"Condition coded as {meaning.kind}")
            return
        end = _date(abated_on(r))
        clinical = {c.get("code") for c in raw_codings_of(r, "clinicalStatus")}
        if (
            end is None
            and clinical & set(self.st.condition_clinical_ignored)
            and meaning.id not in self.kb.fhir.lasting_conditions
        ):
            end = start  # resolved, date unknown: not active after it was recorded
        if meaning.id in self.kb.fhir.lasting_conditions:
            end = None
        for cid in meaning.ids:
            self.out.add(
                "condition",
                {"person_id": pid, "condition_id": cid, "start_date": start, "end_date": end},
            )

    def _Procedure(self, r: dict[str, Any], pid: str) -> None:
        if r.get("status") not in self.st.procedure_used:
            self.skip("Procedure not done")
            return
        meaning = self.index.first(raw_codings_of(r, "code"), ("condition",))
        if meaning is None:
            self.skip("Procedure code not in the knowledge base")
            return
        for cid in meaning.ids:
            self.out.add(
                "condition",
                {
                    "person_id": pid,
                    "condition_id": cid,
                    "start_date": _period_start(r, "performed"),
                    "end_date": None,
                },
            )

    def _medicine(self, r: dict[str, Any]) -> str | None:
        key = json.dumps(
            [r.get("medicationCodeableConcept"), r.get("medicationReference")], sort_keys=True
        )
        if key not in self.medicines:
            self.medicines[key] = medicine_of(r, self.kb, self.shared.get)
        return self.medicines[key]

    def _MedicationRequest(self, r: dict[str, Any], pid: str) -> None:
        if self._exposure(r, pid, _date(r.get("authoredOn"))):
            return
        status = r.get("status")
        if status in self.st.medication_request_ignored:
            self.skip(f"MedicationRequest {status}")
            return
        if r.get("intent") in self.st.medication_request_intent_ignored:
            self.skip("MedicationRequest proposal")
            return
        mid = self._medicine(r)
        if mid is None:
            self.skip("medicine not in the knowledge base")
            return
        start, end = order_span(r)  # as the one-patient record reads it
        if start is None:
            self.skip("MedicationRequest without a date")
            return
        self._course(pid, mid, start, end, status in self.st.medication_request_ongoing)

    def _exposure(self, r: dict[str, Any], pid: str, when: dt.date | None) -> bool:
        """Whether a medicine resource names an exposure (nitrous oxide), kept as a finding
        as the one-patient record reads it (fhir.medicines.medicine_exposure)."""
        exposure = medicine_exposure(r, self.index, self.shared.get)
        if exposure is None:
            return False
        if exposure_status_used(r, self.kb) is None:
            self.out.add(
                "finding", {"person_id": pid, "kind": "exposure", "id": exposure, "date": when}
            )
        else:
            self.skip(f"{r.get('resourceType')} of {exposure}: status not used")
        return True

    def _MedicationStatement(self, r: dict[str, Any], pid: str) -> None:
        status = r.get("status")
        if status in self.st.medication_statement_ignored:
            self.skip(f"MedicationStatement {status}")
            return
        if self._exposure(r, pid, statement_span(r)[0]):
            return
        mid = self._medicine(r)
        if mid is None:
            self.skip("medicine not in the knowledge base")
            return
        start, end = statement_span(r)  # as the one-patient record reads it
        if start is None:
            self.skip("MedicationStatement without a date")
            return
        self._course(pid, mid, start, end, status in self.st.medication_statement_ongoing)

    def _course(
        self, pid: str, mid: str, start: dt.date, end: dt.date | None, ongoing: bool
    ) -> None:
        # Open (null end) only while ongoing; a stopped order with no end ends on its start,
        # as b12dx.fhir.medicines counts courses.
        if end is None and not ongoing:
            end = start
        self.out.add(
            "medication",
            {"person_id": pid, "medication_id": mid, "start_date": start, "end_date": end},
        )

    def _MedicationAdministration(self, r: dict[str, Any], pid: str) -> None:
        if self._exposure(r, pid, _period_start(r, "effective")):
            return
        if self._medicine(r) != "b12_supplement":
            self.skip("MedicationAdministration not of B12")
            return
        if r.get("status") not in self.st.medication_administration_used:
            self.skip("MedicationAdministration not completed")
            return
        when = _period_start(r, "effective")
        dosage = _object(r, "dosage")
        route = qualifier(self.index, self.kb.fhir.routes, raw_codings_of(dosage, "route"))
        concept = r.get("medicationCodeableConcept") or {}
        drug = qualifier(self.index, self.kb.fhir.b12_drugs, concept.get("coding") or [])
        if route is None and drug is not None:
            # A drug given only one way is read by it, as the one-patient record reads it.
            route = self.kb.fhir.route_when_unrecorded.get(drug)
        if when is None:
            self.skip("MedicationAdministration without a date")
            return
        self.out.add("b12_dose", {"person_id": pid, "date": when, "route": route, "drug": drug})

    def _Observation(self, r: dict[str, Any], pid: str) -> None:
        # Read as the one-patient record reads it: a symptom may be the value of an
        # Observation coded "symptom"; a finding counts unless only registered, cancelled
        # or recorded as absent; a lab value only when final.
        codings = raw_codings_of(r, "code")
        if in_codes(self.index, self.kb.fhir.symptom_observation, codings):
            codings = raw_codings_of(r, "valueCodeableConcept")
        meaning = self.index.first(codings)
        when = _date(observed(r))
        if meaning is None:
            self.skip("Observation code not in the knowledge base")
            return
        if meaning.kind in ("symptom", "diet", "exposure"):
            if r.get("status") not in self.st.finding_used:
                self.skip("Observation of a finding not made (status)")
                return
            if recorded_absent(self.kb, self.index, r):
                self.skip("Observation records the finding as absent")
                return
            self.out.add(
                "finding", {"person_id": pid, "kind": meaning.kind, "id": meaning.id, "date": when}
            )
            return
        if meaning.kind != "lab":
            self.skip(f"Observation coded as {meaning.kind}")
            return
        if r.get("status") not in self.st.observation_used:
            self.skip("Observation not final")
            return
        test = self.kb.labs[meaning.id]
        row: dict[str, Any] = {"person_id": pid, "test": test.id, "date": when}
        try:
            if test.kind == "numeric":
                value, unit = numeric_result(self.kb, test, r)
                row |= {"value_si": float(value) * unit.factor, "unit_family": unit.family}
            else:
                row["value_text"] = qualitative_result(self.kb, self.index, r)
                if row["value_text"] is None:
                    self.skip("lab result: not positive or negative")
                    return
        except NotUsed as not_used:  # read as the one-patient record reads it
            self.skip(f"lab result: {not_used.reason}")
            return
        self.out.add("lab", row)


def _shared_resources(source: Path) -> dict[str, Resource]:
    """The Medication resources of an export by "Type/id", read first from their own
    files (a Bulk export writes one file or more per type), so that a medicationReference
    is followed wherever its file comes in the folder."""
    shared: dict[str, Resource] = {}
    for path in ndjson_files(source):
        if path.name.split(".")[0] not in REFERENCED_TYPES:
            continue
        for _n, resource, _problem in iter_ndjson(path):
            if resource is not None and isinstance(resource.get("id"), str):
                shared[f"{resource['resourceType']}/{resource['id']}"] = resource
    return shared


def load_fhir(kb: Knowledge, source: Path, work: Path) -> tuple[ScreeningTables, dict[str, int]]:
    """Map an export folder into the screening tables in ``work``; returns the tables and
    the count of resources not used, by reason."""
    out = _Writers(work)
    mapper = _Mapper(kb, out)
    try:
        mapper.shared = _shared_resources(source)
        for _where, resource, problem in iter_export(source):
            if resource is None:
                mapper.skip(problem or "unreadable line")
                continue
            mapper.map(resource)
    finally:
        out.close()
    return ScreeningTables(work), mapper.skipped
