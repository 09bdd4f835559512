"""The JSON API, version 1: the contract in, the contract out."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from b12dx.engine.assess import assess
from b12dx.errors import InputError
from b12dx.jsonio import parse_json
from b12dx.knowledge.consistency import cited_source_ids
from b12dx.knowledge.loader import load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.schema import input_schema, output_schema
from b12dx.version import ENGINE_VERSION, SCHEMA_VERSION, package_version

router = APIRouter(prefix="/api/v1", tags=["api"])

# The body of every 4xx the API answers (errors.InputError.as_dict), for OpenAPI; the
# follow-up API documents its errors with it too.
ERROR_RESPONSE = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string"},
                                "message": {"type": "string"},
                                "accepted": {"type": ["string", "null"]},
                            },
                        },
                    },
                },
            }
        }
    }
}


def _json(data: Any, status: int = 200) -> Response:
    import json

    return Response(json.dumps(data), status_code=status, media_type="application/json")


@router.post(
    "/assess",
    summary="Assess one patient record",
    description="Contract input (version 1) in, the contract's assessment out: the same JSON "
    "as `b12dx assess --json`. `as_of` defaults to today when the record has none.",
    responses={
        200: {"model": Assessment, "description": "The assessment"},
        400: {"description": "Unknown profile", **ERROR_RESPONSE},
        413: {"description": "Body larger than the limit", **ERROR_RESPONSE},
        422: {"description": "Invalid record: each error names its field path", **ERROR_RESPONSE},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PatientRecord"}}
            },
        }
    },
)
async def assess_record(
    request: Request,
    profile: str | None = Query(
        default=None, description="nice-ng239 (default), bsh-2014, us-label"
    ),
) -> Response:
    # The body is parsed here, not by FastAPI, so that every error names its field path.
    patient = parse_json(await request.body(), "the request body")
    if not isinstance(patient, dict):
        raise InputError.single("", "the patient record must be a JSON object")
    # The contract's door takes any as_of (an integrator may replay or plan); the forms,
    # where a person types the date, refuse one after today (web.settings).
    as_of = None if patient.get("as_of") else dt.date.today()
    result = assess(patient, profile=profile, as_of=as_of)
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/schema/input", summary="JSON Schema of the input record")
def schema_input() -> Response:
    return _json(input_schema())


@router.get("/schema/output", summary="JSON Schema of the assessment")
def schema_output() -> Response:
    return _json(output_schema())


@router.get("/health", summary="Versions of the engine, contract and knowledge base")
def health() -> dict[str, Any]:
    kb = load_knowledge()
    return {
        "status": "ok",
        "package_version": package_version(),
        "engine_version": ENGINE_VERSION,
        "schema_version": SCHEMA_VERSION,
        "knowledge_version": kb.version,
        "profiles": list(kb.profiles),
        "default_profile": kb.default_profile.id,
    }


@router.get("/knowledge", summary="The knowledge base's topics")
def knowledge_topics() -> dict[str, Any]:
    kb = load_knowledge()
    return {
        "knowledge_version": kb.version,
        "topics": {name: len(entries) for name, entries in kb.topics().items()},
    }


@router.get(
    "/knowledge/{topic}",
    summary="Every entry of one topic",
    responses={404: {"description": "Unknown topic", **ERROR_RESPONSE}},
)
def knowledge_topic(topic: str) -> Response:
    topics = load_knowledge().topics()
    if topic not in topics:
        raise HTTPException(404, f"unknown topic {topic!r} (accepted: {', '.join(topics)})")
    return _json({key: e.model_dump(mode="json") for key, e in topics[topic].items()})


@router.get(
    "/knowledge/{topic}/{entry_id}",
    summary="One entry with its sources",
    responses={404: {"description": "Unknown topic or entry", **ERROR_RESPONSE}},
)
def knowledge_entry(topic: str, entry_id: str) -> Response:
    kb = load_knowledge()
    topics = kb.topics()
    if topic not in topics:
        raise HTTPException(404, f"unknown topic {topic!r} (accepted: {', '.join(topics)})")
    entry = topics[topic].get(entry_id)
    if entry is None:
        raise HTTPException(404, f"no {topic} entry {entry_id!r}")
    sources = [
        kb.sources[s].model_dump(mode="json") for s in dict.fromkeys(cited_source_ids(entry))
    ]
    return _json({"topic": topic, "entry": entry.model_dump(mode="json"), "sources": sources})
