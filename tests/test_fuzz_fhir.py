"""Seeded mutation fuzz of the FHIR readers and the CDS routes: real Synthea resources
(tests/fixtures/synthea-bulk-10) with one field at a time replaced by a value of another
shape (null, a number, an empty string, an impossible date, a list, an object) or
removed. The single-patient reader either builds a record (the malformed resource listed
as not used, naming the field where FHIR validation can) or refuses with InputError; the
CDS routes never answer 5xx; a population screen counts a malformed resource as not used
and goes on. Never a traceback."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from b12dx.cds.feedback import FeedbackStore
from b12dx.cds.routes import CdsSettings
from b12dx.errors import B12dxError
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.load_fhir import load_fhir
from b12dx.web.app import create_app


@pytest.fixture(autouse=True)
def _cds_data_dir(tmp_path, monkeypatch) -> None:
    """The CDS service's own files (card and record state, replay cache, feedback) go
    under the test's folder, never the user's data directory."""
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path / "b12dx-data"))


SYNTHEA = Path(__file__).parent / "fixtures" / "synthea-bulk-10"
# Wrong JSON types, and valid but extreme values: a huge number, far dates.
VALUES: list[Any] = [None, 0, -1, 1.5, "", "x", "2020-13-45", [], {}, [1], {"a": 1}, True]
VALUES += [3_000_000, 1e300, -1e300, "9999-12-31", "0001-01-01", "9999-12-31T23:59:59Z"]
AS_OF = dt.date(2020, 1, 1)


def _by_patient() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for f in sorted(SYNTHEA.glob("*.ndjson")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r["resourceType"] == "Patient":
                pid = r["id"]
            else:
                pid = r.get("subject", {}).get("reference", "").split("/")[-1]
            out[pid].append(r)
    return dict(out)


PATIENTS = _by_patient()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _mutate(rng: random.Random, value: Any) -> Any:
    value = copy.deepcopy(value)
    paths = list(_paths(value))
    if not paths:
        return value
    path = rng.choice(paths)
    node = value
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) and rng.random() < 0.2:
        del node[path[-1]]
    else:
        node[path[-1]] = rng.choice(VALUES)
    return value


def test_the_patient_reader_never_crashes_on_a_malformed_resource() -> None:
    rng = random.Random(20261206)
    kb = load_knowledge()
    pids = sorted(PATIENTS)
    refused = used_with_notes = 0
    for _ in range(1500):
        resources = list(PATIENTS[rng.choice(pids)])
        k = rng.randrange(len(resources))
        resources[k] = _mutate(rng, resources[k])
        try:
            imported = record_from_resources(resources, AS_OF, kb)
        except B12dxError:
            refused += 1
            continue
        used_with_notes += any("not valid FHIR R4" in n.note for n in imported.ignored)
    assert refused + used_with_notes > 0  # the mutations did reach the reader's checks


@pytest.mark.asyncio
async def test_the_cds_routes_never_answer_5xx_to_a_mutated_call(tmp_path: Path) -> None:
    rng = random.Random(7)
    app = create_app(
        CdsSettings(feedback=FeedbackStore(tmp_path / "f.sqlite3"), today=lambda: AS_OF)
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    statuses: collections.Counter[int] = collections.Counter()

    def bundle(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in rs],
        }

    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        for _ in range(300):
            pid = rng.choice(sorted(PATIENTS))
            rs = PATIENTS[pid]
            hook = rng.choice(["patient-view", "order-select", "order-sign"])
            context: dict[str, Any] = {"userId": "Practitioner/1", "patientId": pid}
            if hook != "patient-view":
                draft = {
                    "resourceType": "MedicationRequest",
                    "id": "d1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{pid}"},
                    "medicationCodeableConcept": {"text": "Folic acid 5 mg tablets"},
                }
                context["draftOrders"] = bundle([draft])
                if hook == "order-select":
                    context["selections"] = ["MedicationRequest/d1"]
            body = {
                "hook": hook,
                "hookInstance": "fuzz",
                "context": context,
                "prefetch": {
                    "patient": next(r for r in rs if r["resourceType"] == "Patient"),
                    "conditions": bundle([r for r in rs if r["resourceType"] == "Condition"]),
                    "medicationRequests": bundle(
                        [r for r in rs if r["resourceType"] == "MedicationRequest"]
                    ),
                    "procedures": bundle([r for r in rs if r["resourceType"] == "Procedure"]),
                    "labs": None,
                },
            }
            r = await c.post(f"/cds-services/b12dx-{hook}", json=_mutate(rng, body))
            statuses[r.status_code] += 1
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 200


def test_a_malformed_resource_is_counted_and_the_screen_goes_on(tmp_path: Path) -> None:
    rng = random.Random(11)
    kb = load_knowledge()
    for trial in range(8):
        folder = tmp_path / f"export-{trial}"
        folder.mkdir()
        for f in sorted(SYNTHEA.glob("*.ndjson")):
            lines = []
            for line in f.read_text().splitlines():
                r = json.loads(line)
                lines.append(json.dumps(_mutate(rng, r) if rng.random() < 0.05 else r))
            (folder / f.name).write_text("\n".join(lines) + "\n")
        _tables, skipped = load_fhir(kb, folder, tmp_path / f"work-{trial}")
        assert isinstance(skipped, dict)
