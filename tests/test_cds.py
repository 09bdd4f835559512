"""CDS Hooks 2.0.1 over HTTP, end to end: discovery, patient-view cards for real Synthea
patients, the order checks, prefetch versus a real FHIR server on loopback (auth, paging,
timeouts, errors, 412), bad requests, feedback and client JWTs.

Every call goes through the whole app (``create_app``) in process with httpx's ASGI
transport; only the FHIR server stand-in listens on a socket (uvicorn, 127.0.0.1). What a
card should say is worked out from the engine (``b12dx.assess``) on the record that
``record_from_resources`` builds, never hard-coded from the service's own output.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import math
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
import uvicorn
from cryptography.hazmat.primitives import serialization
from fhir.resources.R4B import get_fhir_model_class
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from b12dx import Assessment, assess, load_knowledge
from b12dx.cds.auth import ClientAuthenticator, TrustedIssuer
from b12dx.cds.feedback import FeedbackStore
from b12dx.cds.fhir_servers import FhirServer
from b12dx.cds.routes import CdsSettings
from b12dx.cds.state import CdsState
from b12dx.fhir.read import patient_reference, read_bulk_export, reference_id
from b12dx.fhir.record import record_from_resources
from b12dx.web.app import create_app
from jwt_keys import handmade, public_jwk


@pytest.fixture(autouse=True)
def _cds_data_dir(tmp_path, monkeypatch) -> None:
    """The CDS service's own files (card and record state, replay cache, feedback) go
    under the test's folder, never the user's data directory."""
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path / "b12dx-data"))


pytestmark = pytest.mark.asyncio

KB = load_knowledge()
SYNTHEA = Path(__file__).parent / "fixtures" / "synthea-bulk-10"
SPEC = Path(__file__).parent / "fixtures" / "cds_spec"

# Woman born 1927: type 2 diabetes, CKD, metformin ordered 1969..1993, died 1994-11-11.
METFORMIN_PATIENT = "79a66c97-6131-3213-f3c9-4606946ab056"
THEN = dt.date(1994, 1, 1)
CHILD = "63ee2253-bdd5-da55-2ad2-b4984d0ad700"  # boy born 2011, nothing on record for B12
ADULT = "cbc86e51-9eca-3855-76ec-c058f72c5761"  # man born 1995, no PPI, no metformin
ADULT_AS_OF = dt.date(2024, 1, 1)

BASE = "http://127.0.0.1"
PV = "/cds-services/b12dx-patient-view"
OS = "/cds-services/b12dx-order-select"
SIGN = "/cds-services/b12dx-order-sign"
SERVICES = {"patient-view": PV, "order-select": OS, "order-sign": SIGN}

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"

PREFETCH_KEYS = {
    "patient",
    "conditions",
    "labs",
    "findings",
    "medicationRequests",
    "medicationStatements",
    "medicationAdministrations",
    "procedures",
}
REQUIRED_KEYS = {"patient", "conditions", "labs", "medicationRequests", "procedures"}
KEY_BY_TYPE = {
    "Condition": "conditions",
    "MedicationRequest": "medicationRequests",
    "MedicationStatement": "medicationStatements",
    "MedicationAdministration": "medicationAdministrations",
    "Procedure": "procedures",
}
LAB_CODES = {c.code for lab in KB.labs.values() for c in lab.codes}
INDICATORS = ["info", "warning", "critical"]
TOKEN = "fhir-access-token-3f9c"  # the access token the EHR hands the service

Resource = dict[str, Any]


# =====================================================================================
# Patients and requests


@pytest.fixture(scope="module")
def synthea() -> dict[str, list[Resource]]:
    """Every patient of the export: id -> [Patient, *their resources]."""
    return dict(iter(read_bulk_export(SYNTHEA)))


def searchset(items: list[Resource]) -> Resource | None:
    """A searchset Bundle, or None (CDS Hooks: null when the client has no such data)."""
    if not items:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(items),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r.get('id', uuid.uuid4())}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in items
        ],
    }


def prefetch_key(resource: Resource) -> str:
    rtype = resource["resourceType"]
    if rtype == "Patient":
        return "patient"
    if rtype == "Observation":
        codes = {c.get("code") for c in resource.get("code", {}).get("coding", [])}
        return "labs" if codes & LAB_CODES else "findings"
    return KEY_BY_TYPE[rtype]


def prefetch_for(resources: list[Resource]) -> dict[str, Any]:
    """The prefetch a client fills from the discovery templates: one Patient, searchset
    Bundles for the searches, null for a search that found nothing."""
    groups: dict[str, list[Resource]] = {k: [] for k in PREFETCH_KEYS}
    for r in resources:
        groups[prefetch_key(r)].append(r)
    (patient,) = groups.pop("patient")
    return {"patient": patient, **{k: searchset(v) for k, v in groups.items()}}


def hook_request(
    hook: str, patient_id: str, prefetch: dict[str, Any] | None = None, **context: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient_id, **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def fhir_access(server: str, token: str = TOKEN) -> dict[str, Any]:
    """fhirServer + fhirAuthorization as CDS Hooks 2.0.1 describes the token object."""
    return {
        "fhirServer": server,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read patient/Observation.read patient/Condition.read",
            "subject": "b12dx-cds-service",
        },
    }


def paresthesia(pid: str, onset: str = "1993-06-01") -> Resource:
    return {
        "resourceType": "Condition",
        "id": "test-paresthesia",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {
            "coding": [{"system": SCT, "code": "91019004", "display": "Paresthesia (finding)"}]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
    }


def b12_result(pid: str, value: float, date: str, rid: str = "test-b12") -> Resource:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": "2132-9",
                    "display": "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma",
                }
            ]
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "pg/mL", "system": UCUM, "code": "pg/mL"},
    }


def medication_order(
    rid: str,
    pid: str,
    concept: dict[str, Any],
    *,
    status: str = "draft",
    authored: str | None = None,
    dispense: dict[str, Any] | None = None,
) -> Resource:
    order: Resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{pid}"},
    }
    if authored:
        order["authoredOn"] = authored
    if dispense:
        order["dispenseRequest"] = dispense
    return order


def rx(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}


FOLIC_ACID_CONCEPTS = {
    "rxnorm-4511": rx("4511", "folic acid"),
    "atc-B03BB01": {"coding": [{"system": ATC, "code": "B03BB01", "display": "folic acid"}]},
    "text-only": {"text": "Folic acid 5 mg tablets"},
}
METFORMIN = rx("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet")
OMEPRAZOLE = rx("198051", "omeprazole 20 MG Delayed Release Oral Capsule")
B12_INJECTION = rx("2001499", "Vitamin B 12 5 MG/ML Injectable Solution")
MONTH_SUPPLY = {
    "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}
}


def draft_bundle(*orders: Resource) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": o} for o in orders],
    }


# =====================================================================================
# What the engine says (the expectation), and what a valid card looks like


def engine(resources: list[Resource], as_of: dt.date) -> tuple[dict[str, Any], Assessment]:
    record = record_from_resources(resources, as_of, KB).record
    return record, assess(record, knowledge=KB)


def expected_actionable(result: Assessment) -> bool:
    """When the service promises a card (cds/cards.py): a red flag, testing due, a
    deficiency to treat, maintenance overdue, or folic acid given without B12."""
    return bool(
        result.red_flags
        or result.testing_recommended
        or result.deficiency_status in ("confirmed", "likely", "indeterminate")
        or any(w.id in ("maintenance_overdue", "folic_acid_masking") for w in result.warnings)
    )


def expected_test_codes(result: Assessment) -> set[str]:
    """The LOINC codes of the tests the engine's next steps order."""
    if result.red_flags:
        return set()
    return {c.code for s in result.next_steps for c in KB.next_steps[s.id].order_codes}


def assert_not_empty(value: Any, where: str = "card") -> None:
    """CDS Hooks: "JSON elements SHALL NOT be null" / "SHALL NOT be empty"."""
    assert value is not None, f"{where} is null"
    if isinstance(value, str | list | dict):
        assert len(value) > 0, f"{where} is empty"
    if isinstance(value, dict):
        for k, v in value.items():
            assert_not_empty(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_not_empty(v, f"{where}[{i}]")


def validate_fhir(resource: Resource) -> Any:
    """The resource parsed by the fhir.resources R4B model (raises when not valid FHIR)."""
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def assert_valid_card(card: dict[str, Any]) -> None:
    """The Card attributes of CDS Hooks 2.0.1, checked one by one."""
    allowed = {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
    }
    assert set(card) <= allowed, set(card) - allowed
    assert_not_empty(card)
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"]["label"], str) and card["source"]["label"].strip()
    if "url" in card["source"]:
        assert card["source"]["url"].startswith(("https://", "http://"))
    if "detail" in card:
        assert isinstance(card["detail"], str)
    suggestions = card.get("suggestions", [])
    if suggestions:
        assert card["selectionBehavior"] in ("at-most-one", "any")
    else:
        assert "selectionBehavior" not in card
    for s in suggestions:
        assert isinstance(s["label"], str) and s["label"]
        uuid.UUID(s["uuid"])
        for action in s["actions"]:
            assert action["type"] in ("create", "update", "delete")
            assert isinstance(action["description"], str)
            if action["type"] == "create":
                validate_fhir(action["resource"])
            if action["type"] == "delete":
                assert re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}", action["resourceId"])
    for reason in card.get("overrideReasons", []):
        assert reason["system"] and reason["code"] and reason["display"]
    for link in card.get("links", []):
        assert link["label"] and link["url"]
        assert link["type"] in ("absolute", "smart")
        if link["type"] == "absolute":
            assert "appContext" not in link


def created(card: dict[str, Any], rtype: str) -> list[Resource]:
    return [
        a["resource"]
        for s in card.get("suggestions", [])
        for a in s["actions"]
        if a["type"] == "create" and a["resource"]["resourceType"] == rtype
    ]


def loinc_codes(service_request: Resource) -> set[str]:
    return {c["code"] for c in service_request["code"]["coding"] if c["system"] == LOINC}


# The CDS state stores of the apps made by cds_app, newest first: where a card's link
# finds its record.
STATES: list[CdsState] = []


def linked_record(card: dict[str, Any]) -> dict[str, Any]:
    """The patient record the card's link refers to: the link carries a reference only,
    never the record (it would stay in browser history and logs)."""
    (link,) = [lk for lk in card["links"] if "/clinician?ref=" in lk["url"]]
    assert link["type"] == "absolute"
    page, token = link["url"].split("?ref=", 1)
    assert page == f"{BASE}/clinician" and len(token) >= 32
    assert '"labs"' not in link["url"] and "%7B" not in link["url"]
    for state in STATES:
        record = state.handed_over(token)
        if record is not None:
            return record
    raise AssertionError(f"no record handed over for {token}")


def assert_patient_card(card: dict[str, Any], result: Assessment, record: dict[str, Any]) -> None:
    """A patient-view card says what the engine says about this record."""
    assert_valid_card(card)
    floor = KB.cds.indicator_by_urgency[result.urgency]
    assert INDICATORS.index(card["indicator"]) >= INDICATORS.index(floor)
    if any(w.severity == "critical" for w in result.warnings):
        assert card["indicator"] == "critical"
    assert linked_record(card) == record
    service_requests = created(card, "ServiceRequest")
    assert {c for sr in service_requests for c in loinc_codes(sr)} == expected_test_codes(result)
    for sr in service_requests:
        assert sr["status"] == "draft" and sr["intent"] == "proposal"
    medication_requests = created(card, "MedicationRequest")
    treat = result.treatment is not None and not result.treatment.under_way
    assert len(medication_requests) == (1 if treat and not result.red_flags else 0)
    for mr in medication_requests:
        assert mr["dosageInstruction"]


# =====================================================================================
# The app in process


def cds_app(tmp_path: Path, **settings: Any) -> Any:
    settings.setdefault("feedback", FeedbackStore(tmp_path / "cds-feedback.sqlite3"))
    settings.setdefault("state", CdsState(tmp_path / "cds-state.sqlite3"))
    STATES.insert(0, settings["state"])
    settings.setdefault("today", lambda: THEN)
    return create_app(cds_settings=CdsSettings(**settings))


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=60)


@pytest_asyncio.fixture
async def client(tmp_path: Path, fhir_server: FhirStandIn) -> AsyncIterator[httpx.AsyncClient]:
    """The service as of 1994-01-01 (the metformin patient's time), no client auth, with
    the loopback FHIR stand-in on its allowlist (a private address, allowed explicitly)."""
    async with asgi_client(cds_app(tmp_path, fhir_servers=allowed(fhir_server))) as c:
        yield c


def allowed(server: FhirStandIn) -> tuple[FhirServer, ...]:
    return (FhirServer(server.base, private=True),)


async def cards_of(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    r = await client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"cards"}
    return r.json()["cards"]


# =====================================================================================
# A FHIR server stand-in on 127.0.0.1


@dataclass
class Seen:
    path: str
    rtype: str
    query: dict[str, str]
    authorization: str | None


@dataclass
class FhirStandIn:
    """A FHIR server holding one patient's resources, recording what it was asked."""

    base: str = ""
    data: list[Resource] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    page_size: dict[str, int] = field(default_factory=dict)  # rtype -> entries per page
    slow: dict[str, float] = field(default_factory=dict)  # rtype -> seconds to stall
    fail: dict[str, Response] = field(default_factory=dict)  # rtype -> canned answer
    release: threading.Event = field(default_factory=threading.Event)

    def reset(self, data: list[Resource]) -> None:
        self.data = data
        self.seen.clear()
        self.page_size.clear()
        self.slow.clear()
        self.fail.clear()
        self.release.clear()

    def asked(self, rtype: str) -> list[Seen]:
        return [s for s in self.seen if s.rtype == rtype]


def outcome(severity: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": "processing", "diagnostics": text}],
    }


def fhir_json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


def build_fhir_app(state: FhirStandIn) -> Starlette:
    async def gate(request: Request, rtype: str) -> Response | None:
        state.seen.append(
            Seen(
                request.url.path,
                rtype,
                dict(request.query_params),
                request.headers.get("authorization"),
            )
        )
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return fhir_json(outcome("error", "not authorised"), 401)
        if rtype in state.slow:
            deadline = time.monotonic() + state.slow[rtype]
            while time.monotonic() < deadline and not state.release.is_set():
                await asyncio.sleep(0.02)
        return state.fail.get(rtype)

    async def read_patient(request: Request) -> Response:
        refused = await gate(request, "Patient")
        if refused is not None:
            return refused
        pid = request.path_params["pid"]
        for r in state.data:
            if r["resourceType"] == "Patient" and r.get("id") == pid:
                return fhir_json(r)
        return fhir_json(outcome("error", "no such patient"), 404)

    async def search(request: Request) -> Response:
        rtype = request.path_params["rtype"]
        refused = await gate(request, rtype)
        if refused is not None:
            return refused
        pid = request.query_params.get("patient")
        if not pid:
            return fhir_json(outcome("error", "patient is required"), 400)
        # FHIR token search: system|code, or a bare code matching it in any system.
        wanted = {
            tuple(token.split("|", 1)) if "|" in token else (None, token)
            for token in (request.query_params.get("code") or "").split(",")
            if token
        }
        matches = []
        for r in state.data:
            ref = patient_reference(r)
            if r["resourceType"] != rtype or ref is None or reference_id(ref) != pid:
                continue
            codings = {
                (c.get("system"), c.get("code")) for c in (r.get("code") or {}).get("coding", [])
            }
            bare = {(None, code) for _, code in codings}
            if wanted and not (codings | bare) & wanted:
                continue
            matches.append(r)
        offset = int(request.query_params.get("_offset", "0"))
        size = state.page_size.get(rtype, len(matches) or 1)
        page = matches[offset : offset + size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [{"fullUrl": f"{state.base}/{rtype}/{r['id']}", "resource": r} for r in page],
        }
        if offset + size < len(matches):
            nxt = request.url.include_query_params(_offset=offset + size)
            bundle["link"].append({"relation": "next", "url": str(nxt)})
        if not bundle["entry"]:
            del bundle["entry"]
        return fhir_json(bundle)

    return Starlette(
        routes=[
            Route("/fhir/Patient/{pid}", read_patient),
            Route("/fhir/{rtype}", search),
        ]
    )


@pytest.fixture(scope="module")
def fhir_server() -> Iterator[FhirStandIn]:
    """uvicorn in a background thread on a free loopback port, for the whole module."""
    state = FhirStandIn()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state.base = f"http://127.0.0.1:{port}/fhir"
    config = uvicorn.Config(
        build_fhir_app(state),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the FHIR stand-in did not start"
        assert time.monotonic() < deadline, "the FHIR stand-in did not start in time"
        time.sleep(0.02)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # it accepts connections
    try:
        yield state
    finally:
        state.release.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def fhir(fhir_server: FhirStandIn, synthea) -> Iterator[FhirStandIn]:
    """The stand-in holding the metformin patient plus a paresthesia (so a card is due)."""
    fhir_server.reset([*synthea[METFORMIN_PATIENT], paresthesia(METFORMIN_PATIENT)])
    try:
        yield fhir_server
    finally:
        fhir_server.release.set()  # let a stalled handler finish before the next test


# =====================================================================================
# 1. Discovery


async def test_discovery_lists_the_three_services(client) -> None:
    """GET /cds-services names each hook with the fields the spec requires, and prefetch
    templates that only use {{context.patientId}} and the allowed query forms."""
    r = await client.get("/cds-services")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"services"}
    services = {s["hook"]: s for s in body["services"]}
    assert set(services) == {"patient-view", "order-select", "order-sign"}
    for hook, s in services.items():
        assert_not_empty(s, hook)
        assert set(s) <= {"hook", "title", "description", "id", "prefetch", "usageRequirements"}
        assert f"/cds-services/{s['id']}" == SERVICES[hook]
        assert isinstance(s["title"], str) and isinstance(s["description"], str)
        assert set(s["prefetch"]) == PREFETCH_KEYS
        for key, template in s["prefetch"].items():
            assert "{{context.patientId}}" in template, key
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert set(tokens) == {"context.patientId"}, key
            assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.patientId\}\}|\?.+)", template)
            # Many FHIR servers and proxies refuse a URL over 2 KB ("findings" was 2,130
            # characters with a system on every code).
            assert len(template) <= 1000, (key, len(template))
        assert s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    # The spec's own discovery example has the same shape.
    example = json.loads((SPEC / "discovery-response.json").read_text())
    for s in example["services"]:
        assert {"hook", "id", "description"} <= set(s)


async def test_every_listed_service_answers_its_hook(client, synthea) -> None:
    """Each id discovery gives is the URL that answers that hook: the same patient with
    folic acid drafted gets a card from each, and each refuses another hook."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for([*synthea[pid], paresthesia(pid)])
    folic = medication_order("folic-1", pid, FOLIC_ACID_CONCEPTS["rxnorm-4511"])
    services = (await client.get("/cds-services")).json()["services"]
    for s in services:
        context: dict[str, Any] = {}
        if s["hook"] != "patient-view":
            context["draftOrders"] = draft_bundle(folic)
        if s["hook"] == "order-select":
            context["selections"] = ["MedicationRequest/folic-1"]
        body = hook_request(s["hook"], pid, pre, **context)
        (card,) = await cards_of(client, f"/cds-services/{s['id']}", body)
        assert_valid_card(card)
        other = "order-sign" if s["hook"] == "patient-view" else "patient-view"
        r = await client.post(f"/cds-services/{s['id']}", json=body | {"hook": other})
        assert r.status_code == 400


# =====================================================================================
# 2-4. patient-view


async def test_metformin_patient_gets_what_the_engine_decides(client, synthea) -> None:
    """Full prefetch of a real 2000-resource record: the card (or its absence) follows the
    engine's assessment of the same record as of 1994-01-01."""
    resources = synthea[METFORMIN_PATIENT]
    assert len(resources) > 1500
    record, result = engine(resources, THEN)
    assert {"id": "metformin", "duration_months": 295} in record["medications"]
    cards = await cards_of(
        client, PV, hook_request("patient-view", METFORMIN_PATIENT, prefetch_for(resources))
    )
    if expected_actionable(result):
        assert len(cards) == 1
        assert_patient_card(cards[0], result, record)
    else:
        assert cards == []


async def test_confirmed_deficiency_with_nerve_symptoms_is_a_critical_card(client, synthea) -> None:
    """Low B12 plus paresthesia: deficiency confirmed, urgent, so a critical card that
    proposes the hydroxocobalamin regimen as a dated MedicationRequest."""
    pid = METFORMIN_PATIENT
    resources = [*synthea[pid], b12_result(pid, 150, "1993-12-01"), paresthesia(pid)]
    record, result = engine(resources, THEN)
    assert result.deficiency_status == "confirmed" and result.urgency == "urgent"
    assert KB.cds.indicator_by_urgency["urgent"] == "critical"

    cards = await cards_of(client, PV, hook_request("patient-view", pid, prefetch_for(resources)))
    assert len(cards) == 1
    card = cards[0]
    assert_patient_card(card, result, record)
    assert card["indicator"] == "critical"
    assert "confirmed" in card["summary"]
    assert "**" in card["detail"] and "\n- " in card["detail"]  # Markdown, with lists
    # A clinician's sources are guidelines and evidence, never the consumer articles.
    cited = card["detail"].rsplit("Sources: ", 1)[1]
    assert "nice-ng239" in cited or "bsh-2014" in cited or "cks" in cited
    assert "seed-" not in cited
    (regimen,) = created(card, "MedicationRequest")
    model = validate_fhir(regimen)
    assert "hydroxocobalamin" in json.dumps(regimen["medicationCodeableConcept"]).lower()
    assert regimen["subject"]["reference"] == f"Patient/{pid}"
    assert model.dosageInstruction and all(d.timing is not None for d in model.dosageInstruction)
    treat = next(
        s for s in card["suggestions"] if created({"suggestions": [s]}, "MedicationRequest")
    )
    assert treat["isRecommended"] is True
    linked = linked_record(card)
    assert {"test": "total_b12", "value": 150, "unit": "pg/mL", "date": "1993-12-01"}.items() <= (
        linked["labs"][0].items()
    )
    assert any(s["id"] == "paresthesia" for s in linked["symptoms"])


async def test_possible_deficiency_card_suggests_tests(client, synthea) -> None:
    """Paresthesia on metformin, no result yet: the card orders the engine's tests (B12
    among them), each a valid draft ServiceRequest with its LOINC code."""
    pid = METFORMIN_PATIENT
    resources = [*synthea[pid], paresthesia(pid)]
    record, result = engine(resources, THEN)
    assert result.testing_recommended
    cards = await cards_of(client, PV, hook_request("patient-view", pid, prefetch_for(resources)))
    assert len(cards) == 1
    assert_patient_card(cards[0], result, record)
    codes = {c for sr in created(cards[0], "ServiceRequest") for c in loinc_codes(sr)}
    assert "2132-9" in codes


async def test_nothing_actionable_gives_no_cards(tmp_path, synthea) -> None:
    """A boy with nothing on record for B12, as of today: {"cards": []}, so opening his
    chart does not nag."""
    today = dt.date.today()
    _, result = engine(synthea[CHILD], today)
    assert not expected_actionable(result)
    async with asgi_client(cds_app(tmp_path, today=dt.date.today)) as c:
        r = await c.post(PV, json=hook_request("patient-view", CHILD, prefetch_for(synthea[CHILD])))
    assert r.status_code == 200
    assert r.json() == {"cards": []}


async def test_dead_patient_gets_no_cards(tmp_path, synthea) -> None:
    """After her death (1994-11-11) there is nothing to advise: 200 with no cards."""
    pid = METFORMIN_PATIENT
    resources = [*synthea[pid], paresthesia(pid)]
    async with asgi_client(cds_app(tmp_path, today=lambda: dt.date(1995, 1, 1))) as c:
        cards = await cards_of(c, PV, hook_request("patient-view", pid, prefetch_for(resources)))
    assert cards == []


async def test_spec_patient_view_example_is_412_naming_the_missing_keys(client) -> None:
    """The spec's example sends only its own 'patientToGreet' key and a plain-http,
    non-loopback fhirServer: none of our data can be had, so 412 naming the keys."""
    body = json.loads((SPEC / "patient-view-request.json").read_text())
    r = await client.post(PV, json=body)
    assert r.status_code == 412
    err = r.json()
    assert err["error"] == "precondition_failed"
    assert set(err["missing"]) == REQUIRED_KEYS
    for key in REQUIRED_KEYS:
        assert key in err["message"]
    assert "not a FHIR server this service may call" in err["message"]


async def test_spec_patient_view_example_with_our_keys_filled(client) -> None:
    """The same request with our prefetch keys filled (the Patient it carries, null for
    the searches): answered from prefetch alone, 200, as the engine decides."""
    body = json.loads((SPEC / "patient-view-request.json").read_text())
    patient = body["prefetch"]["patientToGreet"]
    body["prefetch"].update({k: None for k in PREFETCH_KEYS} | {"patient": patient})
    record, result = engine([patient], THEN)
    cards = await cards_of(client, PV, body)
    assert len(cards) == (1 if expected_actionable(result) else 0)
    if cards:
        assert_patient_card(cards[0], result, record)


async def test_null_prefetch_means_no_data(client, synthea) -> None:
    """A null key is "the client has no such data", not a failure: with conditions null
    the paresthesia is not seen (no card); with it given, there is a card."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for([*synthea[pid], paresthesia(pid)])
    assert len(await cards_of(client, PV, hook_request("patient-view", pid, pre))) == 1
    pre["conditions"] = None
    assert await cards_of(client, PV, hook_request("patient-view", pid, pre)) == []


async def test_empty_searchset_and_search_warning_are_no_data(client, synthea) -> None:
    """An empty searchset, and a Bundle carrying a warning OperationOutcome
    (search.mode outcome), are answers, not errors."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for([*synthea[pid], paresthesia(pid)])
    pre["labs"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    pre["findings"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": outcome("warning", "unknown code"), "search": {"mode": "outcome"}}],
    }
    cards = await cards_of(client, PV, hook_request("patient-view", pid, pre))
    assert len(cards) == 1


@pytest.mark.parametrize(
    "value",
    [
        outcome("error", "prefetch failed"),
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": outcome("fatal", "timeout"), "search": {"mode": "outcome"}}],
        },
    ],
    ids=["operation-outcome", "bundle-with-error-outcome"],
)
async def test_prefetch_error_without_fhir_server_is_412(client, synthea, value) -> None:
    """A prefetch key carrying an OperationOutcome error, and no FHIR server to ask
    instead: 412 naming that key."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for(synthea[pid])
    pre["medicationRequests"] = value
    r = await client.post(PV, json=hook_request("patient-view", pid, pre))
    assert r.status_code == 412
    assert r.json()["missing"] == ["medicationRequests"]


async def test_missing_optional_key_without_server_is_not_412(client, synthea) -> None:
    """Keys the service can do without (findings, statements, administrations) may be
    left out when nothing else is available: 200."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for([*synthea[pid], paresthesia(pid)])
    for key in ("findings", "medicationStatements", "medicationAdministrations"):
        del pre[key]
    assert len(await cards_of(client, PV, hook_request("patient-view", pid, pre))) == 1


# =====================================================================================
# 5-6. Fetching from the FHIR server


async def full_prefetch_card(client: httpx.AsyncClient, resources: list[Resource]) -> Any:
    cards = await cards_of(
        client, PV, hook_request("patient-view", METFORMIN_PATIENT, prefetch_for(resources))
    )
    assert len(cards) == 1
    return cards[0]


def same_card(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["summary"] == b["summary"]
    assert a["indicator"] == b["indicator"]
    assert a["detail"] == b["detail"]
    assert [s["label"] for s in a["suggestions"]] == [s["label"] for s in b["suggestions"]]
    assert linked_record(a) == linked_record(b)


async def test_no_prefetch_fetches_everything_with_the_token(client, fhir) -> None:
    """No prefetch, fhirServer + fhirAuthorization: every template is read from the
    server with the bearer token, and the card is the one full prefetch gives."""
    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base)
    cards = await cards_of(client, PV, body)
    assert len(cards) == 1
    assert_valid_card(cards[0])
    same_card(cards[0], await full_prefetch_card(client, fhir.data))

    assert fhir.seen and all(s.authorization == f"Bearer {TOKEN}" for s in fhir.seen)
    assert {s.rtype for s in fhir.seen} == {
        "Patient",
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Procedure",
    }
    assert [s.path for s in fhir.asked("Patient")] == [f"/fhir/Patient/{METFORMIN_PATIENT}"]
    observations = fhir.asked("Observation")
    assert len(observations) == 2  # labs and findings, each a coded search
    assert all(s.query["patient"] == METFORMIN_PATIENT and s.query["code"] for s in observations)
    assert any("2132-9" in s.query["code"].split(",") for s in observations)


async def test_partial_prefetch_fetches_only_the_rest(client, fhir) -> None:
    """Only the patient prefetched: the service reads the other keys, never Patient."""
    pre = {"patient": prefetch_for(fhir.data)["patient"]}
    body = hook_request("patient-view", METFORMIN_PATIENT, pre) | fhir_access(fhir.base)
    cards = await cards_of(client, PV, body)
    assert fhir.asked("Patient") == []
    assert {s.rtype for s in fhir.seen} == {
        "Condition",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Procedure",
    }
    same_card(cards[0], await full_prefetch_card(client, fhir.data))


async def test_prefetched_keys_are_not_fetched_again(client, fhir) -> None:
    """Keys given (null included) are not asked for; only the left-out one is."""
    pre = prefetch_for(fhir.data)
    del pre["procedures"]
    body = hook_request("patient-view", METFORMIN_PATIENT, pre) | fhir_access(fhir.base)
    await cards_of(client, PV, body)
    assert [s.rtype for s in fhir.seen] == ["Procedure"]


async def test_paged_search_is_read_to_the_end(client, fhir) -> None:
    """MedicationRequest served 100 a page with link next: every page is read, so the
    metformin course (and the whole record) is what full prefetch gives."""
    fhir.page_size["MedicationRequest"] = 100
    orders = [r for r in fhir.data if r["resourceType"] == "MedicationRequest"]
    pages = math.ceil(len(orders) / 100)
    assert pages > 2
    # Reading only the first page would give another record: the test can tell.
    first_page_only = [r for r in fhir.data if r["resourceType"] != "MedicationRequest"] + orders[
        :100
    ]
    assert engine(first_page_only, THEN)[0] != engine(fhir.data, THEN)[0]

    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base)
    cards = await cards_of(client, PV, body)
    asked = fhir.asked("MedicationRequest")
    assert len(asked) == pages
    assert sorted(int(s.query.get("_offset", 0)) for s in asked) == list(range(0, pages * 100, 100))
    full = await full_prefetch_card(client, fhir.data)
    same_card(cards[0], full)
    metformin = [m for m in linked_record(cards[0])["medications"] if m["id"] == "metformin"]
    assert metformin == [{"id": "metformin", "duration_months": 295}]


async def test_wrong_token_is_412(client, fhir) -> None:
    """The FHIR server refuses the token (401): the data cannot be had, so 412."""
    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base, "stale")
    r = await client.post(PV, json=body)
    assert r.status_code == 412
    assert set(r.json()["missing"]) == REQUIRED_KEYS
    assert fhir.seen and all(s.authorization == "Bearer stale" for s in fhir.seen)


async def test_server_without_token_is_not_used(client, fhir) -> None:
    """fhirServer without fhirAuthorization: the service may not call it; 412, and the
    server sees nothing."""
    body = hook_request("patient-view", METFORMIN_PATIENT, {"patient": fhir.data[0]})
    body["fhirServer"] = fhir.base
    r = await client.post(PV, json=body)
    assert r.status_code == 412
    assert set(r.json()["missing"]) == REQUIRED_KEYS - {"patient"}
    assert fhir.seen == []


async def test_plain_http_remote_server_is_refused(client) -> None:
    """A server not on the allowlist is never called, plain http or not."""
    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access("http://192.0.2.1/fhir")
    r = await client.post(PV, json=body)
    assert r.status_code == 412
    assert "not a FHIR server this service may call" in r.json()["message"]


async def test_slow_server_is_412_within_the_timeout(tmp_path, fhir) -> None:
    """A search that stalls past fetch_timeout_seconds (0.5 s) ends in 412 quickly,
    not after the server's 10 s."""
    fhir.slow["Condition"] = 10
    async with asgi_client(
        cds_app(tmp_path, fetch_timeout_seconds=0.5, fhir_servers=allowed(fhir))
    ) as c:
        body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base)
        start = time.monotonic()
        r = await c.post(PV, json=body)
        elapsed = time.monotonic() - start
    assert r.status_code == 412
    assert "conditions" in r.json()["missing"]
    assert elapsed < 3, elapsed


@pytest.mark.parametrize(
    ("rtype", "answer"),
    [
        ("Procedure", lambda: PlainTextResponse("boom", status_code=500)),
        ("Procedure", lambda: fhir_json(outcome("error", "database down"), 500)),
        ("Condition", lambda: fhir_json(outcome("error", "search failed"), 200)),
        ("MedicationRequest", lambda: fhir_json(outcome("fatal", "forbidden"), 403)),
        ("Condition", lambda: PlainTextResponse("<html>not json</html>", status_code=200)),
    ],
    ids=["500-text", "500-outcome", "200-outcome", "403-outcome", "200-not-json"],
)
async def test_server_error_on_a_required_key_is_412(client, fhir, rtype, answer) -> None:
    """A failing search for data the engine needs: 412 naming exactly that key."""
    fhir.fail[rtype] = answer()
    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base)
    r = await client.post(PV, json=body)
    assert r.status_code == 412, r.text
    assert r.json()["missing"] == [KEY_BY_TYPE[rtype]]


async def test_server_error_on_an_optional_key_still_answers(client, fhir) -> None:
    """MedicationStatement failing (optional data): 200, with the full-prefetch card."""
    fhir.fail["MedicationStatement"] = fhir_json(outcome("error", "not supported"), 500)
    body = hook_request("patient-view", METFORMIN_PATIENT) | fhir_access(fhir.base)
    cards = await cards_of(client, PV, body)
    same_card(cards[0], await full_prefetch_card(client, fhir.data))


async def test_prefetch_error_is_refetched_from_the_server(client, fhir) -> None:
    """A prefetch OperationOutcome with a usable server: that key is read from it."""
    pre = prefetch_for(fhir.data)
    pre["conditions"] = outcome("error", "prefetch timed out")
    body = hook_request("patient-view", METFORMIN_PATIENT, pre) | fhir_access(fhir.base)
    cards = await cards_of(client, PV, body)
    assert [s.rtype for s in fhir.seen] == ["Condition"]
    assert len(cards) == 1  # the paresthesia came from the server


# =====================================================================================
# 7. order-select: folic acid


def folic_case(synthea, concept: dict[str, Any], *extra: Resource) -> tuple[dict, Resource]:
    pid = METFORMIN_PATIENT
    resources = [*synthea[pid], paresthesia(pid), *extra]
    folic = medication_order("folic-1", pid, concept, dispense=MONTH_SUPPLY)
    return prefetch_for(resources), folic


@pytest.mark.parametrize("concept", FOLIC_ACID_CONCEPTS.values(), ids=FOLIC_ACID_CONCEPTS.keys())
async def test_folic_acid_selected_for_possible_deficiency_is_critical(
    client, synthea, concept
) -> None:
    """The spec's order-select example with folic acid added (by RxNorm, ATC or name) for
    a patient who may be B12 deficient and has no B12: a critical card that offers to
    drop the folic acid and order B12 first."""
    pre, folic = folic_case(synthea, concept)
    _, result = engine([*synthea[METFORMIN_PATIENT], paresthesia(METFORMIN_PATIENT)], THEN)
    assert result.testing_recommended and result.treatment is not None

    spec = json.loads((SPEC / "order-select-request.json").read_text())
    context = copy.deepcopy(spec["context"])
    context["patientId"] = METFORMIN_PATIENT
    context["draftOrders"]["entry"].append({"resource": folic})
    context["selections"].append("MedicationRequest/folic-1")
    body = {"hook": "order-select", "hookInstance": str(uuid.uuid4()), **spec, "context": context}
    body["prefetch"] = pre

    cards = await cards_of(client, OS, body)
    assert len(cards) == 1
    card = cards[0]
    assert_valid_card(card)
    assert card["indicator"] == "critical"
    assert "folic acid" in card["summary"].lower()
    deletes = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert [a["resourceId"] for a in deletes] == ["MedicationRequest/folic-1"]
    creates = created(card, "ServiceRequest") + created(card, "MedicationRequest")
    assert creates
    if result.deficiency_status not in ("confirmed", "likely"):
        assert any("2132-9" in loinc_codes(sr) for sr in created(card, "ServiceRequest"))


async def test_folic_acid_with_confirmed_deficiency_suggests_b12_first(client, synthea) -> None:
    """Deficiency confirmed: the card proposes the B12 regimen before the folic acid."""
    pid = METFORMIN_PATIENT
    pre, folic = folic_case(
        synthea, FOLIC_ACID_CONCEPTS["rxnorm-4511"], b12_result(pid, 150, "1993-12-01")
    )
    body = hook_request(
        "order-select",
        pid,
        pre,
        draftOrders=draft_bundle(folic),
        selections=["MedicationRequest/folic-1"],
    )
    (card,) = await cards_of(client, OS, body)
    assert_valid_card(card)
    (regimen,) = created(card, "MedicationRequest")
    assert "hydroxocobalamin" in json.dumps(regimen).lower()


async def test_folic_acid_for_a_patient_on_b12_is_fine(client, synthea) -> None:
    """Already on B12 (an active Vitamin B12 order): folic acid cannot mask anything."""
    pid = METFORMIN_PATIENT
    on_b12 = medication_order(
        "b12-order", pid, B12_INJECTION, status="active", authored="1993-11-01"
    )
    pre, folic = folic_case(synthea, FOLIC_ACID_CONCEPTS["rxnorm-4511"], on_b12)
    record, _ = engine([*synthea[pid], paresthesia(pid), on_b12], THEN)
    assert any(m["id"] == "b12_supplement" for m in record["medications"])
    body = hook_request(
        "order-select",
        pid,
        pre,
        draftOrders=draft_bundle(folic),
        selections=["MedicationRequest/folic-1"],
    )
    assert await cards_of(client, OS, body) == []


async def test_folic_acid_not_selected_waits_for_order_sign(client, synthea) -> None:
    """order-select looks at the selected order only; order-sign at every draft."""
    pid = METFORMIN_PATIENT
    pre, folic = folic_case(synthea, FOLIC_ACID_CONCEPTS["text-only"])
    other = medication_order("amox-1", pid, rx("617993", "Amoxicillin oral suspension"))
    drafts = draft_bundle(folic, other)
    select = hook_request(
        "order-select", pid, pre, draftOrders=drafts, selections=["MedicationRequest/amox-1"]
    )
    assert await cards_of(client, OS, select) == []
    sign = hook_request("order-sign", pid, pre, draftOrders=drafts)
    (card,) = await cards_of(client, SIGN, sign)
    assert card["indicator"] == "critical"
    assert_valid_card(card)


async def test_spec_order_examples_give_no_cards(client) -> None:
    """The spec's order-select and order-sign examples (a diet and amoxicillin) with the
    patient given: nothing of B12's concern, so no cards; without data, 412."""
    patient = json.loads((SPEC / "patient-view-request.json").read_text())["prefetch"][
        "patientToGreet"
    ]
    pre = {k: None for k in PREFETCH_KEYS} | {"patient": patient}
    for name, path, hook in (
        ("order-select-request.json", OS, "order-select"),
        ("order-sign-request.json", SIGN, "order-sign"),
    ):
        spec = json.loads((SPEC / name).read_text())
        body = {"hook": hook, "hookInstance": str(uuid.uuid4()), **spec}
        assert (await client.post(path, json=body)).status_code == 412
        assert await cards_of(client, path, body | {"prefetch": pre}) == []


# =====================================================================================
# 8. order-sign: metformin and acid suppressants


async def test_metformin_without_a_recent_b12_test_gets_a_warning(client, synthea) -> None:
    """Metformin being signed, no B12 result in 12 months: a warning card suggesting a
    total B12 test (ServiceRequest, LOINC 2132-9); a result older than 12 months does
    not count."""
    pid = METFORMIN_PATIENT
    drafts = draft_bundle(medication_order("met-1", pid, METFORMIN, dispense=MONTH_SUPPLY))
    for extra in ([], [b12_result(pid, 450, "1992-10-01")]):
        pre = prefetch_for([*synthea[pid], *extra])
        (card,) = await cards_of(
            client, SIGN, hook_request("order-sign", pid, pre, draftOrders=drafts)
        )
        assert_valid_card(card)
        assert card["indicator"] == "warning"
        assert "metformin" in card["summary"].lower()
        assert card["selectionBehavior"] == "at-most-one"
        (sr,) = created(card, "ServiceRequest")
        assert loinc_codes(sr) == {"2132-9"}
        assert sr["subject"]["reference"] == f"Patient/{pid}"


async def test_metformin_with_a_recent_b12_test_is_fine(client, synthea) -> None:
    """A normal B12 result within 12 months: nothing to say when metformin is signed."""
    pid = METFORMIN_PATIENT
    pre = prefetch_for([*synthea[pid], b12_result(pid, 450, "1993-06-01")])
    drafts = draft_bundle(medication_order("met-1", pid, METFORMIN, dispense=MONTH_SUPPLY))
    assert (
        await cards_of(client, SIGN, hook_request("order-sign", pid, pre, draftOrders=drafts)) == []
    )


def omeprazole(dispense: dict[str, Any]) -> Resource:
    return medication_order("ppi-1", ADULT, OMEPRAZOLE, dispense=dispense)


@pytest_asyncio.fixture
async def adult_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cds_app(tmp_path, today=lambda: ADULT_AS_OF)) as c:
        yield c


async def test_short_ppi_course_is_fine(adult_client, synthea) -> None:
    """A month of omeprazole for a man with no PPI history: not a B12 risk, no card."""
    record, _ = engine(synthea[ADULT], ADULT_AS_OF)
    assert not record.get("medications")
    body = hook_request(
        "order-sign",
        ADULT,
        prefetch_for(synthea[ADULT]),
        draftOrders=draft_bundle(omeprazole(MONTH_SUPPLY)),
    )
    assert await cards_of(adult_client, SIGN, body) == []


async def test_two_years_of_ppi_ordered_gets_a_card(adult_client, synthea) -> None:
    """An omeprazole order valid for 25 months crosses the 24-month risk threshold."""
    dispense = {"validityPeriod": {"start": "2024-01-01", "end": "2026-02-01"}}
    body = hook_request(
        "order-sign",
        ADULT,
        prefetch_for(synthea[ADULT]),
        draftOrders=draft_bundle(omeprazole(dispense)),
    )
    (card,) = await cards_of(adult_client, SIGN, body)
    assert_valid_card(card)
    assert card["indicator"] == "warning"
    assert {c for sr in created(card, "ServiceRequest") for c in loinc_codes(sr)} == {"2132-9"}


async def test_ppi_continued_after_three_years_gets_a_card(adult_client, synthea) -> None:
    """A month more of omeprazole for a man on it (yearly orders) since 2021: card."""
    history = [
        medication_order(
            f"ppi-old-{year}",
            ADULT,
            OMEPRAZOLE,
            status="stopped" if year < 2023 else "active",
            authored=f"{year}-01-05",
        )
        for year in (2021, 2022, 2023)
    ]
    resources = [*synthea[ADULT], *history]
    record, _ = engine(resources, ADULT_AS_OF)
    assert {"id": "proton_pump_inhibitor", "duration_months": 35} in record["medications"]
    body = hook_request(
        "order-sign",
        ADULT,
        prefetch_for(resources),
        draftOrders=draft_bundle(omeprazole(MONTH_SUPPLY)),
    )
    (card,) = await cards_of(adult_client, SIGN, body)
    assert_valid_card(card)
    assert card["indicator"] == "warning"


# =====================================================================================
# 9. Bad requests


# A woman of 44 in 1994 with nothing else on record: a valid request that needs no card.
PLAIN = {"resourceType": "Patient", "id": "plain-1", "gender": "female", "birthDate": "1950-02-01"}


def good_body(hook: str = "patient-view") -> dict[str, Any]:
    """A well-formed call for PLAIN (as of 1994, so the record really gets assessed)."""
    context: dict[str, Any] = {}
    if hook != "patient-view":
        context["draftOrders"] = draft_bundle()
    if hook == "order-select":
        context["selections"] = []
    return hook_request(
        hook, PLAIN["id"], {k: None for k in PREFETCH_KEYS} | {"patient": PLAIN}, **context
    )


def without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("path", "body", "names"),
    [
        (PV, good_body() | {"hook": "order-sign"}, "hook"),
        (SIGN, good_body("order-sign") | {"hook": "patient-view"}, "hook"),
        (PV, without(good_body(), "hookInstance"), "hookInstance"),
        (PV, without(good_body(), "context"), "context"),
        (PV, without(good_body(), "context", "patientId"), "context.patientId"),
        (PV, good_body() | {"context": {"patientId": ""}}, "context.patientId"),
        (OS, without(good_body("order-select"), "context", "selections"), "context.selections"),
        (SIGN, without(good_body("order-sign"), "context", "draftOrders"), "context.draftOrders"),
        (PV, good_body() | {"fhirAuthorization": {"access_token": "x"}}, "fhirServer"),
    ],
    ids=[
        "wrong-hook",
        "wrong-hook-sign",
        "no-hookInstance",
        "no-context",
        "no-patientId",
        "empty-patientId",
        "no-selections",
        "no-draftOrders",
        "auth-without-server",
    ],
)
async def test_malformed_request_is_400_naming_the_field(client, path, body, names) -> None:
    """A request that is not the hook's shape: 400, and the message names the field."""
    r = await client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert names in r.json()["message"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"[1, 2]", b'"patient-view"', b"\xff\xfe", b'{"hook": NaN}'],
    ids=["broken", "empty", "array", "string", "not-utf8", "nan"],
)
async def test_non_json_body_is_400(client, raw) -> None:
    """A body that is not a JSON object: 400, never 500."""
    r = await client.post(PV, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text


async def test_unknown_service_is_404(client) -> None:
    """No such service id: 404, for a call and for feedback."""
    assert (await client.post("/cds-services/nope", json=good_body())).status_code == 404
    fb = json.loads((SPEC / "feedback-request.json").read_text())
    assert (await client.post("/cds-services/nope/feedback", json=fb)).status_code == 404


ODD_PREFETCH = {
    "prefetch-not-object": "everything",
    "patient-is-list": {"patient": [1, 2]},
    "patient-without-birthdate": {"patient": {"resourceType": "Patient", "id": "plain-1"}},
    "bundle-entry-not-list": {"conditions": {"resourceType": "Bundle", "entry": 5}},
    "bundle-entry-strings": {"conditions": {"resourceType": "Bundle", "entry": ["x", 1]}},
    "resource-without-type": {
        "conditions": {"resourceType": "Bundle", "entry": [{"resource": {"id": "c1"}}]}
    },
    "coding-not-list": {
        "conditions": searchset(
            [
                {
                    "resourceType": "Condition",
                    "id": "c1",
                    "code": {"coding": "91019004"},
                    "subject": {"reference": "Patient/plain-1"},
                }
            ]
        )
    },
    "observation-bad-value": {
        "labs": searchset(
            [
                {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "2132-9"}]},
                    "subject": {"reference": "Patient/plain-1"},
                    "valueQuantity": {"value": "lots", "unit": "pg/mL"},
                }
            ]
        )
    },
}


@pytest.mark.parametrize("odd", ODD_PREFETCH.values(), ids=ODD_PREFETCH.keys())
async def test_odd_prefetch_never_500(client, odd) -> None:
    """Malformed prefetch content is a 4xx or an answer, never a server error."""
    body = good_body()
    body["prefetch"] = odd if not isinstance(odd, dict) else body["prefetch"] | odd
    r = await client.post(PV, json=body)
    assert r.status_code in (200, 400, 412), r.text


ODD_DRAFTS = {
    "entry-not-list": {"resourceType": "Bundle", "entry": 5},
    "entry-strings": {"resourceType": "Bundle", "entry": ["x"]},
    "resource-without-type": {"resourceType": "Bundle", "entry": [{"resource": {"id": "1"}}]},
    "medication-not-object": draft_bundle(
        {"resourceType": "MedicationRequest", "id": "m", "medicationCodeableConcept": "folic acid"}
    ),
}


@pytest.mark.parametrize("drafts", ODD_DRAFTS.values(), ids=ODD_DRAFTS.keys())
async def test_odd_draft_orders_never_500(client, drafts) -> None:
    """Malformed draftOrders content is a 4xx or an answer, never a server error."""
    body = good_body("order-sign")
    body["context"]["draftOrders"] = drafts
    r = await client.post(SIGN, json=body)
    assert r.status_code in (200, 400), r.text


# =====================================================================================
# 10. Feedback


def feedback_body(**item: Any) -> dict[str, Any]:
    base = json.loads((SPEC / "feedback-request.json").read_text())["feedback"][0]
    return {"feedback": [{k: v for k, v in (base | item).items() if v is not None}]}


def issued(tmp_path: Path, service: str, body: dict[str, Any]) -> CdsState:
    """The CDS state of an app that issued the cards a feedback body names."""
    state = CdsState(tmp_path / "cds-state.sqlite3")
    state.remember_cards(service, [i["card"] for i in body["feedback"] if "card" in i])
    return state


async def test_feedback_is_recorded_once(tmp_path) -> None:
    """The spec's feedback example is stored; the same feedback again changes nothing."""
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    body = json.loads((SPEC / "feedback-request.json").read_text())
    state = issued(tmp_path, "b12dx-patient-view", body)
    async with asgi_client(cds_app(tmp_path, feedback=store, state=state)) as c:
        r1 = await c.post(f"{PV}/feedback", json=body)
        r2 = await c.post(f"{PV}/feedback", json=body)
    assert r1.status_code == 200 and r1.json() == {"recorded": 1, "already_recorded": 0}
    assert r2.status_code == 200 and r2.json() == {"recorded": 0, "already_recorded": 1}
    (row,) = store.all()
    item = body["feedback"][0]
    assert row["service"] == "b12dx-patient-view"
    assert row["card"] == item["card"] and row["outcome"] == "accepted"
    assert json.loads(row["accepted_suggestions"]) == [item["acceptedSuggestions"][0]["id"]]
    assert row["outcome_timestamp"] == item["outcomeTimestamp"]
    assert row["client"] is None  # no client auth configured


async def test_the_feedback_database_is_readable_by_its_owner_only(tmp_path) -> None:
    """Made as the follow-up database is: a 0700 folder (the data directory, made on
    first use) and 0600 files, the -wal and -shm included, whatever the umask."""
    folder = tmp_path / "data" / "b12dx"
    store = FeedbackStore(folder / "cds-feedback.sqlite3")
    old = os.umask(0o022)
    try:
        con = store._connect()
        try:
            con.execute("SELECT COUNT(*) FROM cds_feedback").fetchone()
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        finally:
            con.close()
    finally:
        os.umask(old)
    assert set(modes) >= {"cds-feedback.sqlite3", "cds-feedback.sqlite3-wal"}, modes
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_override_with_reason_is_recorded(tmp_path) -> None:
    """An overridden card with the reason picked from the card's list and a comment."""
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    reason = {
        "reason": {
            "system": "https://b12dx.org/cds/override-reason",
            "code": "already-addressed",
            "display": "Already addressed (tested or treated elsewhere)",
        },
        "userComment": "Tested last week at another clinic",
    }
    body = feedback_body(outcome="overridden", acceptedSuggestions=None, overrideReason=reason)
    state = issued(tmp_path, "b12dx-order-sign", body)
    async with asgi_client(cds_app(tmp_path, feedback=store, state=state)) as c:
        r = await c.post(f"{SIGN}/feedback", json=body)
    assert r.status_code == 200 and r.json()["recorded"] == 1
    (row,) = store.all()
    assert row["service"] == "b12dx-order-sign" and row["outcome"] == "overridden"
    assert json.loads(row["override_reason"]) == reason


@pytest.mark.parametrize(
    ("item", "field_path"),
    [
        ({"outcome": "maybe"}, "feedback[0].outcome"),
        ({"outcomeTimestamp": None}, "feedback[0].outcomeTimestamp"),
        ({"outcomeTimestamp": "yesterday"}, "feedback[0].outcomeTimestamp"),
        ({"acceptedSuggestions": None}, "feedback[0].acceptedSuggestions"),
        ({"acceptedSuggestions": []}, "feedback[0].acceptedSuggestions"),
        ({"acceptedSuggestions": 5}, "feedback[0].acceptedSuggestions"),
        ({"card": None}, "feedback[0].card"),
        ({"overrideReason": "because"}, "feedback[0].overrideReason"),
        ({"outcome": "overridden", "overrideReason": {}}, "feedback[0].overrideReason"),
        (
            {"outcome": "overridden", "overrideReason": {"userComment": " "}},
            "feedback[0].overrideReason",
        ),
        ({"card": "never-issued-by-this-service"}, "feedback[0].card"),
    ],
    ids=[
        "outcome-maybe",
        "no-timestamp",
        "bad-timestamp",
        "accepted-without-suggestions",
        "accepted-empty-suggestions",
        "suggestions-not-list",
        "no-card",
        "reason-not-object",
        "reason-empty",
        "reason-blank-comment",
        "card-never-issued",
    ],
)
async def test_invalid_feedback_is_400_naming_the_field(tmp_path, item, field_path) -> None:
    """Feedback not as the spec describes it, or for a card this service never issued:
    400 naming the field; nothing stored."""
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    state = issued(tmp_path, "b12dx-patient-view", feedback_body())
    async with asgi_client(cds_app(tmp_path, feedback=store, state=state)) as c:
        r = await c.post(f"{PV}/feedback", json=feedback_body(**item))
    assert r.status_code == 400, r.text
    assert field_path in r.json()["message"]
    assert field_path in {e["path"] for e in r.json()["errors"]}
    assert store.all() == []


@pytest.mark.parametrize("body", [{}, {"feedback": []}, {"feedback": "x"}, [1]])
async def test_feedback_without_items_is_400(client, body) -> None:
    r = await client.post(f"{PV}/feedback", json=body)
    assert r.status_code == 400, r.text


# =====================================================================================
# 11. Client JWTs over HTTP

ISS = "https://ehr.example.org"


def claims(aud: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 240, "jti": str(uuid.uuid4())}
    return payload | overrides


def sign(key: Any, alg: str, kid: str, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"typ": "JWT", "kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture
async def secured(tmp_path, rsa_key, ec_key) -> AsyncIterator[httpx.AsyncClient]:
    """The app with client authentication on: one trusted issuer, an inline JWKS."""
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}
    auth = ClientAuthenticator([TrustedIssuer(iss=ISS, jwks=jwks)])
    async with asgi_client(cds_app(tmp_path, authenticator=auth)) as c:
        yield c


PV_AUD = f"{BASE}{PV}"


async def test_valid_es384_and_rs384_tokens_are_accepted(secured, ec_key, rsa_key) -> None:
    """A token signed by the trusted client for this endpoint: the call is answered."""
    body = good_body()
    r = await secured.post(
        PV, json=body, headers=bearer(sign(ec_key, "ES384", "ec-1", claims(PV_AUD)))
    )
    assert r.status_code == 200 and r.json() == {"cards": []}
    r = await secured.post(
        PV, json=body, headers=bearer(sign(rsa_key, "RS384", "rsa-1", claims(PV_AUD)))
    )
    assert r.status_code == 200


def refused(r: httpx.Response, reason: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"] == "unauthorized"
    assert reason in r.json()["message"]


async def test_missing_token_is_401(secured) -> None:
    """No Authorization header: 401 with a WWW-Authenticate challenge."""
    refused(await secured.post(PV, json=good_body()), "no Authorization header")


async def test_bad_tokens_are_401(secured, ec_key, rsa_key) -> None:
    """Expired, for another endpoint, from an unknown issuer, alg none, HS256: 401."""
    now = int(time.time())
    cases = {
        "expired": sign(ec_key, "ES384", "ec-1", claims(PV_AUD, iat=now - 900, exp=now - 600)),
        "audience": sign(ec_key, "ES384", "ec-1", claims(f"{BASE}{SIGN}")),
        "issuer": sign(ec_key, "ES384", "ec-1", claims(PV_AUD, iss="https://evil.example.org")),
        "algorithm": handmade({"alg": "none", "typ": "JWT", "kid": "ec-1"}, claims(PV_AUD), None),
        "HS256": handmade(
            {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"},
            claims(PV_AUD),
            rsa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
    }
    reasons = {
        "expired": "expired",
        "audience": "audience",
        "issuer": "issuer",
        "algorithm": "algorithm",
        "HS256": "algorithm",
    }
    for name, token in cases.items():
        r = await secured.post(PV, json=good_body(), headers=bearer(token))
        refused(r, reasons[name])


async def test_replayed_token_is_401(secured, ec_key) -> None:
    """The same jti twice: the second call is refused."""
    token = sign(ec_key, "ES384", "ec-1", claims(PV_AUD))
    assert (await secured.post(PV, json=good_body(), headers=bearer(token))).status_code == 200
    refused(await secured.post(PV, json=good_body(), headers=bearer(token)), "replayed")


async def test_discovery_requires_its_own_audience(secured, ec_key) -> None:
    """Discovery is protected too, with aud = {base}/cds-services."""
    refused(await secured.get("/cds-services"), "no Authorization header")
    service_token = sign(ec_key, "ES384", "ec-1", claims(PV_AUD))
    refused(await secured.get("/cds-services", headers=bearer(service_token)), "audience")
    token = sign(ec_key, "ES384", "ec-1", claims(f"{BASE}/cds-services"))
    r = await secured.get("/cds-services", headers=bearer(token))
    assert r.status_code == 200 and len(r.json()["services"]) == 3


async def test_feedback_accepts_the_feedback_url_as_audience(tmp_path, ec_key, rsa_key) -> None:
    """Feedback needs a token; aud may be the feedback URL, and the issuer is stored."""
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}
    auth = ClientAuthenticator([TrustedIssuer(iss=ISS, jwks=jwks)])
    body = json.loads((SPEC / "feedback-request.json").read_text())
    state = issued(tmp_path, "b12dx-patient-view", body)
    async with asgi_client(cds_app(tmp_path, authenticator=auth, feedback=store, state=state)) as c:
        refused(await c.post(f"{PV}/feedback", json=body), "no Authorization header")
        assert store.all() == []
        token = sign(ec_key, "ES384", "ec-1", claims(f"{PV_AUD}/feedback"))
        r = await c.post(f"{PV}/feedback", json=body, headers=bearer(token))
    assert r.status_code == 200 and r.json()["recorded"] == 1
    assert [row["client"] for row in store.all()] == [ISS]


async def test_folic_acid_in_pregnancy_is_never_the_masking_card(client) -> None:
    """A pregnant woman with pins and needles (B12 possibly low) drafts folic acid: it
    prevents neural tube defects, so the card is informational, asks for an active B12
    test as well, and never offers to remove the folic acid."""
    pid = "pregnant-1"
    woman = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1964-02-01"}
    pregnancy = {
        "resourceType": "Condition",
        "id": "pregnancy-1",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "72892002"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "1993-11-01",
    }
    resources = [woman, pregnancy, paresthesia(pid)]
    record, result = engine(resources, THEN)
    assert record.get("pregnant") is True and result.testing_recommended
    assert "folic_acid_masking" not in [w.id for w in result.warnings]
    folic = medication_order("folic-1", pid, FOLIC_ACID_CONCEPTS["rxnorm-4511"])
    body = hook_request(
        "order-select",
        pid,
        prefetch_for(resources),
        draftOrders=draft_bundle(folic),
        selections=["MedicationRequest/folic-1"],
    )
    (card,) = await cards_of(client, OS, body)
    assert_valid_card(card)
    assert card["indicator"] == "info"
    assert "neural tube" in card["summary"]
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert all(a["type"] != "delete" for a in actions)
    (request,) = created(card, "ServiceRequest")
    assert request["code"]["text"] or request["code"]["coding"]
