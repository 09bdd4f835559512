"""Schemathesis fuzzing of the follow-up JSON API with sign-in off (as ``b12dx serve``
runs on loopback), on a fresh SQLite database: whatever the body, path or query, the
answer is never a 5xx and always what the spec declares. (tests/test_fuzz_api.py fuzzes
the whole spec with sign-in required, where these routes answer 401.)

    .venv/bin/pytest tests/test_fuzz_followup.py
"""

from __future__ import annotations

import atexit
import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from b12dx.knowledge.loader import load_knowledge
from b12dx.store import patients
from b12dx.store.audit import Actor
from b12dx.store.db import open_database
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 40
DATA = Path(tempfile.mkdtemp(prefix="b12dx-fuzz-"))
atexit.register(shutil.rmtree, DATA, True)
URL = f"sqlite:///{DATA / 'fuzz.sqlite3'}"
app = create_app(followup_settings=FollowupSettings(database_url=URL, require_login=False))


def _patient() -> str:
    """One patient for the routes under /patients/{patient_id} (a random id is a 404)."""
    db = open_database(URL)
    try:
        with db.transaction() as s:
            p = patients.add(
                s, load_knowledge(), Actor("fuzz"), dt.datetime.now(dt.UTC),
                name="Fuzz Patient", birth_date=dt.date(1960, 1, 1), sex="female",
                conditions=["pernicious_anemia"],
            )  # fmt: skip
            return p.id
    finally:
        db.dispose()


PATIENT_ID = _patient()


async def loopback(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The test client calls itself "testclient" at "testserver": present it as this
    machine, as a browser on the same computer would be."""
    if scope["type"] == "http":
        scope = dict(scope, client=("127.0.0.1", 50000))
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
            (b"host", b"127.0.0.1:8000")
        ]
    await app(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", loopback).include(
    path_regex=r"^/api/v1/(patients|due|session)"
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)
schema.config.seed = 12

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_followup_api_never_answers_5xx_and_matches_its_spec(case: schemathesis.Case) -> None:
    if case.path_parameters and "patient_id" in case.path_parameters:
        case.path_parameters["patient_id"] = PATIENT_ID
    response = case.call()
    assert response.status_code < 500, (
        f"{response.status_code} for {case.as_curl_command()}\n{response.text[:2000]}"
    )
    case.validate_response(response, checks=CHECKS)
