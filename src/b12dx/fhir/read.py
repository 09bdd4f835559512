"""Reading FHIR R4 JSON: a Bundle (one patient) or a Bulk Data export (NDJSON, many).

Resources stay plain JSON objects here (``b12dx.fhir.validate`` checks the ones a reader
uses against the ``fhir.resources`` models). Nothing is guessed: a line that is not JSON, a
resource without a type or without a patient is reported with where it was.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b12dx.errors import FieldError, InputError
from b12dx.jsonio import loads

Resource = dict[str, Any]


def element(obj: Any, name: str) -> Any:
    """An element of a resource or datatype, read alike from its JSON or its model."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def is_fhir(obj: object) -> bool:
    """True for any FHIR resource (it carries resourceType); the contract's record does not."""
    return isinstance(obj, Mapping) and "resourceType" in obj


def bundle_resources(obj: Mapping[str, Any]) -> list[Resource]:
    """The resources of a Bundle, each with its fullUrl kept under ``_fullUrl``."""
    if obj.get("resourceType") != "Bundle":
        raise InputError(
            [
                FieldError(
                    "resourceType",
                    f"is {obj.get('resourceType')!r}; a FHIR input must be a Bundle",
                    "a Bundle of the patient's resources, or the b12dx patient record",
                )
            ]
        )
    entries = obj.get("entry", [])
    if not isinstance(entries, list):
        raise InputError([FieldError("entry", "must be a list of entries")])
    resources: list[Resource] = []
    problems: list[FieldError] = []
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            problems.append(FieldError(f"entry[{i}].resource", "must be a FHIR resource"))
            continue
        item = dict(resource)
        if isinstance(entry.get("fullUrl"), str):
            item["_fullUrl"] = entry["fullUrl"]
        resources.append(item)
    if problems:
        raise InputError(problems)
    return resources


def patient_reference(resource: Mapping[str, Any]) -> str | None:
    """The reference of the patient a resource is about ("Patient/123", "urn:uuid:..")."""
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            return str(ref["reference"])
    return None


def reference_id(reference: str) -> str:
    """The id in a reference: "Patient/123" -> "123", "urn:uuid:abc" -> "abc"."""
    return reference.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


def by_reference(resources: Iterable[Resource]) -> dict[str, Resource]:
    """The resources by every reference that can name them: the Bundle entry's fullUrl
    and ``Type/id``."""
    found: dict[str, Resource] = {}
    for r in resources:
        if isinstance(r.get("_fullUrl"), str):
            found[r["_fullUrl"]] = r
        if r.get("id"):
            found[f"{r['resourceType']}/{r['id']}"] = r
    return found


def another_patient(patient: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], str | None]:
    """A check of the resources of ``patient``'s record: it gives the reference of the
    other patient a resource is about, or None when the resource is about ``patient``
    (by ``Patient/id``, the entry's fullUrl or the id alone) or names no patient."""
    pid = patient.get("id")
    mine = {f"Patient/{pid}", str(patient.get("_fullUrl", ""))} - {"", "Patient/None"}

    def other(resource: Mapping[str, Any]) -> str | None:
        about = patient_reference(resource)
        if about is None or about in mine or (pid is not None and reference_id(about) == pid):
            return None
        return about

    return other


@dataclass
class BulkProblem:
    where: str  # file:line
    message: str


@dataclass
class BulkExport:
    """A Bulk Data export folder, grouped by patient."""

    directory: Path
    patients: dict[str, Resource] = field(default_factory=dict)
    by_patient: dict[str, list[Resource]] = field(default_factory=lambda: defaultdict(list))
    problems: list[BulkProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # The Medication resources, about no one patient, by "Type/id": what a patient's
    # medicationReference may name (the only reference a reader follows).
    shared: dict[str, Resource] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[str, list[Resource]]]:
        """(patient id, the Patient and every resource about them), in file order."""
        for pid, patient in self.patients.items():
            yield pid, [patient, *self.by_patient.get(pid, [])]


def ndjson_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise InputError([FieldError(str(directory), "is not a folder")])
    files = sorted(p for p in directory.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
    if not files:
        raise InputError(
            [
                FieldError(
                    str(directory),
                    "holds no .ndjson files",
                    "a FHIR Bulk Data export: one NDJSON file (or several) per resource type",
                )
            ]
        )
    return files


def iter_ndjson(path: Path) -> Iterator[tuple[int, Resource | None, str | None]]:
    """(line number, resource or None, problem or None) for each non-blank line."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                yield n, None, f"not JSON ({exc.msg} at column {exc.colno})"
                continue
            except ValueError as exc:  # nested too deeply, NaN
                yield n, None, f"not JSON b12dx reads ({exc})"
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str):
                yield n, None, "not a FHIR resource (no resourceType)"
                continue
            yield n, obj, None


def iter_export(directory: Path) -> Iterator[tuple[str, Resource | None, str | None]]:
    """Every resource of an export, streamed file by file without grouping by patient:
    (where as file:line, resource or None, problem or None). For readers that go through
    millions of resources once (population screening)."""
    for path in ndjson_files(directory):
        for n, resource, problem in iter_ndjson(path):
            yield f"{path.name}:{n}", resource, problem


def read_bulk_export(directory: Path) -> BulkExport:
    """Read every NDJSON file of an export and group the resources by patient."""
    export = BulkExport(directory, files=ndjson_files(directory))
    orphans: list[tuple[str, Resource]] = []
    for path in export.files:
        for n, resource, problem in iter_ndjson(path):
            where = f"{path.name}:{n}"
            if resource is None:
                export.problems.append(BulkProblem(where, problem or "unreadable"))
                continue
            rtype = resource["resourceType"]
            export.counts[rtype] += 1
            if rtype == "Patient":
                pid = resource.get("id")
                if not isinstance(pid, str) or not pid:
                    export.problems.append(BulkProblem(where, "Patient without an id"))
                    continue
                if pid in export.patients:
                    export.problems.append(BulkProblem(where, f"Patient/{pid} appears twice"))
                    continue
                export.patients[pid] = resource
                continue
            ref = patient_reference(resource)
            if ref is None:
                orphans.append((where, resource))
                continue
            export.by_patient[reference_id(ref)].append(resource)
    for where, resource in orphans:
        if resource["resourceType"] not in SHARED_TYPES:
            export.problems.append(
                BulkProblem(where, f"{resource['resourceType']} names no patient; not used")
            )
        elif resource["resourceType"] in REFERENCED_TYPES and isinstance(resource.get("id"), str):
            export.shared[f"{resource['resourceType']}/{resource['id']}"] = resource
    for pid in list(export.by_patient):
        if pid not in export.patients:
            n = len(export.by_patient.pop(pid))
            export.problems.append(
                BulkProblem(f"Patient/{pid}", f"{n} resources about a patient not in the export")
            )
    return export


# Resources that are shared rather than about one patient (a Bulk export's Medication,
# Practitioner, Organization files): not an error when they name no patient.
SHARED_TYPES = frozenset(
    {"Medication", "Practitioner", "PractitionerRole", "Organization", "Location", "Device"}
)
# Of those, what a reader follows a reference to: the Medication a medicationReference names.
REFERENCED_TYPES = frozenset({"Medication"})
