"""Smaller holes of trust: a spreadsheet never runs what a patient's name holds, a name
of blank characters is no name, a private address in IPv6 clothing is private, and a
caller's FHIR token goes nowhere but under its server's base path."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest

from b12dx.cds.fhir_servers import is_public, within_base
from b12dx.errors import InputError
from b12dx.knowledge.loader import load_knowledge
from b12dx.spreadsheet import safe_cell
from b12dx.store import patients
from b12dx.store.audit import Actor
from b12dx.store.db import open_database
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings

NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(text: str) -> None:
    assert safe_cell(text) == "'" + text
    assert safe_cell("Ann Bell") == "Ann Bell" and safe_cell(5) == 5


def test_the_clinic_list_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    db = open_database(url)
    kb = load_knowledge()
    with db.transaction() as s:
        p = patients.add(
            s,
            kb,
            Actor("local:test", 1),
            NOW,
            name='=HYPERLINK("http://x","Ann")',
            birth_date=dt.date(1950, 1, 1),
            sex="female",
            conditions=["pernicious_anemia"],
        )
        pid = p.id
    db.dispose()
    app = create_app(followup_settings=FollowupSettings(database_url=url, require_login=False))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get("/clinic.csv?within=366")

    r = asyncio.run(get())
    assert r.status_code == 200
    rows = [line for line in r.text.splitlines() if pid in line]
    assert rows and all(",=" not in row and ',"=' not in row for row in rows), rows
    assert any("'=HYPERLINK" in row for row in rows)


def test_the_screening_csvs_never_hand_a_spreadsheet_a_formula() -> None:
    import pyarrow as pa

    from b12dx.screen.run import csv_ready

    table = pa.table({"care_site": [*FORMULAS, "Riverside"], "n": list(range(7))})
    out = csv_ready(table).column("care_site").to_pylist()
    assert out == [*("'" + f for f in FORMULAS), "Riverside"]


@pytest.mark.parametrize("name", ["\u3164\u3164", "\u115f\u1160", "\uffa0", "\u2800 \u2800"])
def test_a_name_of_blank_letters_is_no_name(tmp_path: Path, name: str) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'f.sqlite3'}")
    with db.transaction() as s, pytest.raises(InputError, match="name"):
        patients.add(
            s,
            load_knowledge(),
            Actor("local:test", 1),
            NOW,
            name=name,
            birth_date=dt.date(1950, 1, 1),
            sex="female",
        )
    db.dispose()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::c0a8:1", False),  # local-use NAT64 of 192.168.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("::ffff:0:a00:1", False),  # SIIT of 10.0.0.1
        ("::a00:1", False),  # IPv4-compatible 10.0.0.1
        ("fec0::1", False),  # site-local
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo of 10.0.0.1
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2001:4860:4860::8888", True),
        ("8.8.8.8", True),
    ],
)
def test_a_private_ipv4_address_in_ipv6_form_is_private(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    ("url", "within"),
    [
        ("https://ehr.example.org/fhir/Patient/1", True),
        ("https://ehr.example.org/fhir/Observation?page=2", True),
        ("https://ehr.example.org/fhir/../admin", False),
        ("https://ehr.example.org/fhir%2F..%2Fadmin", False),
        ("https://ehr.example.org/fhir/a/../../admin", False),
        ("https://ehr.example.org/fhirx/Patient", False),
        ("https://ehr.example.org/admin", False),
        ("https://other.example.org/fhir/Patient/1", False),
    ],
)
def test_a_token_goes_only_under_its_servers_base_path(url: str, within: bool) -> None:
    assert within_base("https://ehr.example.org/fhir", url) is within


@pytest.mark.parametrize(
    "password", [" " * 12, "password1234", "aaaaaaaaaaaa", "qwertyuiop12", "123456789012"]
)
def test_a_common_or_guessable_password_is_refused(tmp_path: Path, password: str) -> None:
    """NIST SP 800-63B 5.1.1.2: twelve spaces or password1234 were accepted."""
    from b12dx.store import users

    db = open_database(f"sqlite:///{tmp_path / 'f.sqlite3'}")
    with db.transaction() as s:
        practice = users.create_practice(s, Actor("cli:admin"), NOW, "Riverside")
        with pytest.raises(InputError, match="too easy to guess"):
            users.create_user(
                s,
                Actor("cli:admin"),
                NOW,
                username="nurse.a",
                password=password,
                practice_id=practice.id,
            )
        users.create_user(
            s,
            Actor("cli:admin"),
            NOW,
            username="nurse.b",
            password="correct horse battery",
            practice_id=practice.id,
        )
    db.dispose()
