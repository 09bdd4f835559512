"""The JSON API in-process (httpx + ASGI): every route, every error, the headers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from b12dx import assess, examples, input_schema, output_schema
from b12dx.knowledge.loader import load_knowledge
from b12dx.version import ENGINE_VERSION
from b12dx.web.app import create_app
from b12dx.web.security import MAX_BODY_BYTES

# The vignettes the engine assesses (not those whose record is an input error).
VIGNETTES = [
    p
    for p in sorted((Path(__file__).parent / "vignettes").glob("*.json"))
    if "input_errors" not in json.loads(p.read_text())["expect"]
]
pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.parametrize("path", VIGNETTES[::7], ids=lambda p: p.stem)
async def test_assess_returns_the_same_json_as_the_engine(client, path: Path) -> None:
    case = json.loads(path.read_text())
    params = {"profile": case["profile"]} if case.get("profile") else {}
    r = await client.post("/api/v1/assess", json=case["patient"], params=params)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    expected = assess(case["patient"], profile=case.get("profile"))
    assert r.json() == expected.model_dump(mode="json")


async def test_assess_without_as_of_uses_today(client) -> None:
    record = examples.load("gym_strain")
    del record["as_of"]  # the examples carry theirs
    r = await client.post("/api/v1/assess", json=record)
    assert r.status_code == 200
    assert r.json()["as_of"] == dt.date.today().isoformat()


@pytest.mark.parametrize(
    ("body", "status", "path", "fragment"),
    [
        (b"{bad", 422, "", "not valid JSON"),
        (b"[1]", 422, "", "must be a JSON object"),
        (b'{"age_years": 130}', 422, "age_years", "less than or equal to 120"),
        (b'{"age_years": 40, "symptoms": [{"id": "wobbly"}]}', 422, "symptoms[0].id", "unknown id"),
        (
            b'{"age_years": 40, "labs": [{"test": "mma", "value": 1, "unit": "pg/mL"}]}',
            422,
            "labs[0].unit",
            "not a unit of mma",
        ),
        (
            b'{"age_years": 40, "as_of": "2026-01-01", "b12_treatment": [{"date": "2026-02-01",'
            b' "drug": "hydroxocobalamin", "route": "im"}]}',
            422,
            "b12_treatment[0].date",
            "after as_of",
        ),
    ],
)
async def test_bad_records_get_4xx_with_the_field_path(
    client, body: bytes, status: int, path: str, fragment: str
) -> None:
    r = await client.post(
        "/api/v1/assess", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    data = r.json()
    assert data["error"] == "invalid_input"
    assert any(
        e["path"] == path and fragment in e["message"] + data["message"] for e in data["errors"]
    )


async def test_unknown_profile_is_400_naming_the_accepted_profiles(client) -> None:
    r = await client.post("/api/v1/assess", params={"profile": "who-2099"}, json={"age_years": 40})
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "profile"
    assert "nice-ng239" in r.json()["errors"][0]["accepted"]


async def test_body_over_the_limit_is_413(client) -> None:
    body = b'{"age_years": 40, "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    r = await client.post(
        "/api/v1/assess", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


async def test_schemas_are_the_contracts(client) -> None:
    assert (await client.get("/api/v1/schema/input")).json() == input_schema()
    assert (await client.get("/api/v1/schema/output")).json() == output_schema()


async def test_health_reports_versions(client) -> None:
    data = (await client.get("/api/v1/health")).json()
    assert data["status"] == "ok"
    assert data["engine_version"] == ENGINE_VERSION
    assert data["knowledge_version"] == load_knowledge().version
    assert data["default_profile"] == "nice-ng239"
    from importlib.metadata import version

    assert data["package_version"] == version("b12dx")


async def test_knowledge_routes_list_topics_entries_and_sources(client) -> None:
    topics = (await client.get("/api/v1/knowledge")).json()["topics"]
    assert topics["symptoms"] == 56
    regimens = (await client.get("/api/v1/knowledge/regimens")).json()
    assert set(regimens) >= {"im_neurological", "im_standard", "us_label_cyanocobalamin"}
    entry = (await client.get("/api/v1/knowledge/regimens/im_neurological")).json()
    assert entry["entry"]["drug"] == "hydroxocobalamin"
    assert {s["id"] for s in entry["sources"]} >= {"seed-leg-weakness", "bnf-hydroxocobalamin"}
    assert (await client.get("/api/v1/knowledge/astrology")).status_code == 404
    assert (await client.get("/api/v1/knowledge/regimens/leeches")).status_code == 404


async def test_openapi_documents_the_contract_body(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/api/v1/assess"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/PatientRecord"
    record = spec["components"]["schemas"]["PatientRecord"]
    assert "age_years" in record["required"]
    symptom = spec["components"]["schemas"]["SymptomEntry"]
    assert "paresthesia" in symptom["properties"]["id"]["enum"]
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("path", ["/", "/check", "/api/v1/health", "/openapi.json"])
async def test_security_headers_on_every_response(client, path: str) -> None:
    r = await client.get(path)
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.asyncio
async def test_an_error_names_the_first_problems_and_counts_the_rest(client) -> None:
    """10,000 unknown symptom ids: the 422 names the first 20 and counts the rest, and is
    smaller than the request (it was 174 times its size)."""
    record = {
        "as_of": "2026-11-20",
        "age_years": 50,
        "symptoms": [{"id": f"unknown_{i}"} for i in range(10000)],
    }
    body = json.dumps(record).encode()
    r = await client.post(
        "/api/v1/assess", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    out = r.json()
    assert len(out["errors"]) == 20 and out["errors_not_shown"] == 9980
    assert out["errors"][0]["path"] == "symptoms[0].id"
    assert "and 9980 more problems" in out["message"]
    assert len(r.content) < len(body)


async def test_hsts_only_over_tls() -> None:
    app = create_app()
    for base, wanted in (("https://127.0.0.1", "max-age=31536000"), ("http://127.0.0.1", None)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as c:
            r = await c.get("/api/v1/health")
        assert r.headers.get("strict-transport-security") == wanted
