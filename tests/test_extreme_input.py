"""Valid but extreme input at every JSON and FHIR door: a medicine supply of 3,000,000
days (valid FHIR, past the calendar's end when counted from today) and JSON nested 1,000
deep (10 kB). Each door answers with a 4xx naming the problem, or leaves the one
resource out saying why and reads the rest; never a 5xx, a traceback, or a stopped
population."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from b12dx.cds.feedback import FeedbackStore
from b12dx.cds.routes import CdsSettings
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings

AS_OF = dt.date(2026, 12, 7)
DEEP = "[" * 1000 + "]" * 1000  # 2 kB, 1,000 levels
EMPTY = {"resourceType": "Bundle", "type": "searchset", "entry": []}
KB = load_knowledge()


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path / "b12dx-data"))


def patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "birthDate": "1960-03-01", "gender": "female"}


def long_supply(days: float = 3_000_000, rid: str = "m1") -> dict[str, Any]:
    """Metformin ordered with a supply of ``days`` days: valid FHIR R4."""
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}],
            "text": "Metformin 500 mg tablets",
        },
        "authoredOn": "2026-01-10",
        "dispenseRequest": {
            "expectedSupplyDuration": {
                "value": days,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            }
        },
    }


def b12_result() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2132-9"}]},
        "effectiveDateTime": "2026-11-20",
        "valueQuantity": {"value": 150, "unit": "pg/mL", "code": "pg/mL"},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


# -- a supply longer than the calendar ---------------------------------------------------


@pytest.mark.parametrize("days", [3_000_000, 1e300, 2_900_000 * 7])
def test_a_supply_past_the_calendar_leaves_that_order_out_and_reads_the_rest(days) -> None:
    imported = record_from_resources([patient(), long_supply(days), b12_result()], AS_OF, KB)
    ignored = {n.reference: n.note for n in imported.ignored}
    assert "past the end of the calendar" in ignored["MedicationRequest/m1"]
    assert [lab["test"] for lab in imported.record["labs"]] == ["total_b12"]


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b12dx.cli.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_line_reads_a_record_with_a_supply_past_the_calendar(tmp_path) -> None:
    done = _cli(
        "assess",
        "-",
        "--json",
        "--as-of",
        AS_OF.isoformat(),
        stdin=json.dumps(bundle(patient(), long_supply(), b12_result())),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["labs"][0]["test"] == "total_b12"
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(patient()) + "\n")
    (export / "MedicationRequest.ndjson").write_text(json.dumps(long_supply()) + "\n")
    (export / "Observation.ndjson").write_text(json.dumps(b12_result()) + "\n")
    imported = _cli(
        "fhir-import", str(export), "--out", str(tmp_path / "records"), "--as-of", AS_OF.isoformat()
    )
    assert imported.returncode == 0, imported.stderr
    screened = _cli(
        "screen", str(export), "--out", str(tmp_path / "gaps"), "--as-of", AS_OF.isoformat()
    )
    assert screened.returncode == 0, screened.stderr
    assert "Traceback" not in screened.stderr + imported.stderr + done.stderr
    assert (tmp_path / "gaps" / "report.html").exists()


def _cds_app(tmp_path: Path) -> Any:
    return create_app(
        CdsSettings(feedback=FeedbackStore(tmp_path / "f.sqlite3"), today=lambda: AS_OF)
    )


async def _post(app: Any, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        return await c.post(path, **kw)


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r} for r in resources]}  # fmt: skip


def hook_call(
    hook: str, prefetch: dict[str, Any], draft: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A CDS Hooks request for patient p1; for the order hooks ``draft`` is the draft
    order (and, for order-select, the one selected)."""
    context: dict[str, Any] = {"userId": "Practitioner/1", "patientId": "p1"}
    if draft is not None:
        context["draftOrders"] = bundle(draft)
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{draft['id']}"]
    return {"hook": hook, "hookInstance": "extreme", "context": context, "prefetch": prefetch}


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_every_cds_hook_answers_a_record_and_an_order_past_the_calendar(tmp_path, hook) -> None:
    draft = long_supply(rid="d1") | {"status": "draft"} if hook != "patient-view" else None
    prefetch = {
        "patient": patient(),
        "medicationRequests": searchset(long_supply()),
        "labs": searchset(b12_result()),
        "conditions": None,
        "procedures": None,
    }
    body = hook_call(hook, prefetch, draft)
    r = asyncio.run(_post(_cds_app(tmp_path), f"/cds-services/b12dx-{hook}", json=body))
    assert r.status_code == 200, r.text[:500]
    assert isinstance(r.json()["cards"], list)


# -- JSON nested 1,000 deep --------------------------------------------------------------


def _followup_app(tmp_path: Path) -> Any:
    settings = FollowupSettings(
        database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}", require_login=False
    )
    return create_app(followup_settings=settings)


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/api/v1/assess", False),
        ("/api/v1/patients", False),
        ("/cds-services/b12dx-patient-view/feedback", False),
        ("/cds-services/b12dx-patient-view", False),
        ("/clinician", True),
        ("/clinician/schedule.ics", True),
    ],
)
def test_json_nested_1000_deep_is_a_4xx_at_every_web_door(tmp_path, path, form) -> None:
    app = _followup_app(tmp_path)
    if form:
        kw: dict[str, Any] = {"data": {"record_json": DEEP, "profile": "nice-ng239"}}
    else:
        kw = {"content": DEEP, "headers": {"content-type": "application/json"}}
    r = asyncio.run(_post(app, path, **kw))
    assert 400 <= r.status_code < 500 or (form and r.status_code == 200), r.status_code
    assert "nested more than 64 levels deep" in r.text


def test_json_nested_1000_deep_is_refused_by_every_command(tmp_path) -> None:
    deep_file = tmp_path / "deep.json"
    deep_file.write_text(DEEP)
    for args in (
        ["assess", str(deep_file)],
        ["patient", "import", str(deep_file), "--db", str(tmp_path / "f.sqlite3")],
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "nested more than 64 levels deep" in done.stderr and "Traceback" not in done.stderr
    # A bulk export line nested 1,000 deep is one unreadable line; the rest is read.
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text(json.dumps(patient()) + "\n")
    (export / "Observation.ndjson").write_text(
        '{"resourceType": "Observation", "extension": '
        + DEEP
        + "}\n"
        + json.dumps(b12_result())
        + "\n"
    )
    imported = _cli(
        "fhir-import", str(export), "--out", str(tmp_path / "records"), "--as-of", AS_OF.isoformat()
    )
    assert imported.returncode == 0, imported.stderr
    screened = _cli(
        "screen", str(export), "--out", str(tmp_path / "gaps"), "--as-of", AS_OF.isoformat()
    )
    assert screened.returncode == 0, screened.stderr
    # A backup whose row is nested 1,000 deep is refused, and nothing is restored.
    backup = tmp_path / "deep.b12dx-backup"
    backup.write_text(DEEP + "\n")
    restored = _cli("restore", str(backup), "--db", str(tmp_path / "r.sqlite3"))
    assert restored.returncode == 2, restored.stderr
    assert "Traceback" not in restored.stderr + screened.stderr + imported.stderr


# -- draft orders of the wrong JSON types ------------------------------------------------


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("key", ["code", "system"])
@pytest.mark.parametrize("value", [5, 1.5, True, [1], {"a": 1}])
def test_a_draft_order_of_the_wrong_json_type_is_a_400_naming_it(tmp_path, hook, key, value):
    draft = long_supply(days=30, rid="d1") | {"status": "draft"}
    coding = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6809"}
    draft["medicationCodeableConcept"] = {"coding": [coding | {key: value}]}
    prefetch = {"patient": patient()} | {
        k: EMPTY for k in ("conditions", "labs", "medicationRequests", "procedures")
    }
    body = hook_call(hook, prefetch, draft)
    r = asyncio.run(_post(_cds_app(tmp_path), f"/cds-services/b12dx-{hook}", json=body))
    assert r.status_code == 400, r.text[:300]
    assert (
        f"context.draftOrders.entry[0].resource.medicationCodeableConcept.coding[0].{key}" in r.text
    )


# -- what one hook call may bring in from a FHIR server -------------------------------------


def test_paging_large_answers_stops_at_the_calls_byte_budget() -> None:
    """A FHIR server paging 3 MB answers without end: the call reads until its byte budget
    (here 10 MB, by default 32 MB, the largest CDS body) is spent and then stops, instead of
    MAX_PAGES pages of whatever size the server sends."""
    from b12dx.cds import fetch

    filler = [
        {"resourceType": "Condition", "id": f"c{i}", "note": "x" * 100} for i in range(25_000)
    ]
    pages: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        pages.append(str(request.url))
        n = len(pages)
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in filler],
            "link": [{"relation": "next", "url": f"http://fhir.test/fhir/Condition?page={n}"}],
        }
        return httpx.Response(200, json=body)

    async def search() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as client:
            await fetch._search(
                client,
                "http://fhir.test/fhir",
                "Condition?patient=p1",
                fetch._Budget(bytes_left=10 * 1024 * 1024),
            )

    with pytest.raises(ValueError, match="answers for this call are larger than"):
        asyncio.run(search())
    assert 3 <= len(pages) <= 4  # about 3 MB a page: stopped at the fourth
