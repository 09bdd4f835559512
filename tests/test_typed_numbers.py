"""A typed number is never read as something else, at any door: "1,600" is not quietly
1.6 (a normal B12 made deficient) nor 1600, a value no laboratory reports is refused
naming the range, no unit is chosen for the user, and nothing is dated before birth.

One table of bad values goes through every door that takes a typed number: the patient
check, the clinician form, the nurse's lab form, the follow-up API and the command line.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from b12dx.engine.assess import assess
from b12dx.errors import InputError
from b12dx.knowledge import Knowledge
from b12dx.models.patient import PatientRecord
from b12dx.store.tables import LabEntry
from b12dx.typed_numbers import read_number, readings
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings
from cli_calls import call
from test_check import TYPICAL
from test_followup_web import Site, add_patient, csrf_in, days_ago, fast_hashes, local, site

__all__ = ["fast_hashes", "local", "site"]  # fixtures used by name below

# The clinician's pages as `b12dx serve` gives them on loopback: sign-in off.
LOGIN_OFF = FollowupSettings(require_login=False)

# (typed, what the refusal must name): each is a B12 result as a person might type it.
BAD: list[tuple[str, tuple[str, ...]]] = [
    ("1,600", ("1600 or 1.6",)),
    ("1,6", ("write 1.6",)),
    ("1 600", ("write 1600",)),
    ("1.234,5", ("write 1234.5",)),
    ("150 pg/mL", ("number alone",)),
    ("<50", ("beyond what the laboratory measured",)),
    ("about 300", ("not a number",)),
]
# A number that parses but that no laboratory reports for serum B12: 1.6 ng/L.
IMPLAUSIBLE = ("1.6", "ng/L")


@pytest.mark.parametrize(("typed", "named"), BAD)
def test_the_parser_refuses_and_names_the_readings(typed: str, named: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as caught:
        read_number(typed, "labs.total_b12.value")
    [error] = caught.value.errors
    assert error.path == "labs.total_b12.value"
    for fragment in named:
        assert fragment in error.message, error.message
    assert "1600 or 1.6" in (error.accepted or "")


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False))
def test_a_plain_decimal_is_read_as_written(value: Any) -> None:
    text = f"{value:f}"
    assert read_number(text, "x") == float(text)


@given(st.integers(min_value=1000, max_value=10**9))
def test_a_thousands_separator_is_never_guessed(value: int) -> None:
    typed = f"{value:,}"
    with pytest.raises(InputError):
        read_number(typed, "x")
    assert str(value) in readings(typed)


# -- the doors --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def client() -> Any:
    transport = httpx.ASGITransport(app=create_app(followup_settings=LOGIN_OFF))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


def shown(html: str) -> str:
    """The page's text with tags dropped and entities of quotes undone."""
    text = re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").replace("&quot;", '"')
    return re.sub(r"\s+", " ", text)


@pytest.mark.asyncio
@pytest.mark.parametrize(("typed", "named"), BAD)
async def test_the_patient_check_refuses_it_before_the_result(client, typed, named) -> None:
    form = TYPICAL | {"lab_total_b12_value": typed, "lab_total_b12_unit": "ng/L"}
    r = await client.post("/check", data=form)
    assert r.status_code == 422, "the check went on with a number it guessed"
    for fragment in named:
        assert fragment in shown(r.text)
    assert 'href="#lab_total_b12_value"' in r.text


@pytest.mark.asyncio
async def test_the_patient_check_refuses_a_value_no_laboratory_reports(client) -> None:
    value, unit = IMPLAUSIBLE
    form = TYPICAL | {"lab_total_b12_value": value, "lab_total_b12_unit": unit}
    r = await client.post("/check", data=form | {"confirmed": "yes"})
    assert r.status_code == 422
    assert "urgency-" not in r.text, "a result was given"


CLINICIAN = {"age_years": "58", "sex": "male", "lab_total_b12_unit": "ng/L"}


def red_flags() -> dict[str, str]:
    from test_pages import red_flags as answered

    return answered()


@pytest.mark.asyncio
@pytest.mark.parametrize(("typed", "named"), BAD)
async def test_the_clinician_form_refuses_it(client, typed, named) -> None:
    r = await client.post(
        "/clinician", data=CLINICIAN | red_flags() | {"lab_total_b12_value": typed}
    )
    assert r.status_code == 422
    assert "Do now" not in r.text
    for fragment in named:
        assert fragment in shown(r.text)


@pytest.mark.asyncio
async def test_the_clinician_form_refuses_a_value_no_laboratory_reports(client) -> None:
    value, _ = IMPLAUSIBLE
    r = await client.post(
        "/clinician", data=CLINICIAN | red_flags() | {"lab_total_b12_value": value}
    )
    assert r.status_code == 422
    assert "outside what is possible" in shown(r.text) and "ng/L" in shown(r.text)


def test_the_engine_refuses_a_value_no_laboratory_reports(kb: Knowledge) -> None:
    value, unit = IMPLAUSIBLE
    record = PatientRecord.model_validate(
        {"age_years": 58, "labs": [{"test": "total_b12", "value": float(value), "unit": unit}]}
    )
    with pytest.raises(InputError) as caught:
        assess(record, as_of=dt.date(2026, 12, 1), knowledge=kb)
    [error] = caught.value.errors
    assert error.path == "labs[0].value" and "ng/L" in (error.accepted or "")


@pytest.mark.parametrize(
    ("field", "day"),
    [("labs", "1900-01-01"), ("b12_treatment", "1960-05-01")],
)
def test_nothing_is_dated_before_the_person_was_born(kb: Knowledge, field, day) -> None:
    entry: dict[str, Any] = (
        {"test": "total_b12", "value": 100, "unit": "ng/L", "date": day}
        if field == "labs"
        else {"date": day, "drug": "hydroxocobalamin", "dose_mg": 1, "route": "im"}
    )
    record = PatientRecord.model_validate({"age_years": 58, field: [entry]})
    with pytest.raises(InputError) as caught:
        assess(record, as_of=dt.date(2026, 12, 1), knowledge=kb)
    assert any("before the person was born" in e.message for e in caught.value.errors)


# -- the nurse's lab form, the follow-up API and the command line ------------------------


@pytest.mark.asyncio
async def test_the_nurse_lab_form_chooses_no_unit(site: Site, local) -> None:
    pid = await add_patient(local)
    page = await local.get(f"/patients/{pid}")
    select = page.text.split('id="lab-unit"')[1].split("</select>")[0]
    chosen = re.findall(r"<option[^>]*selected[^>]*>([^<]*)<", select)
    assert chosen == ["Choose the unit printed on the report"], chosen
    form = {"csrf_token": csrf_in(page.text), "test": "total_b12", "value": "180"}
    r = await local.post(f"/patients/{pid}/labs", data=form | {"date": days_ago(3), "unit": ""})
    assert r.status_code == 422 and "unit" in shown(r.text)
    assert site.count(LabEntry) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(("typed", "named"), [*BAD, (IMPLAUSIBLE[0], ("outside",))])
async def test_the_nurse_lab_form_saves_nothing_it_would_have_to_guess(
    site: Site, local, typed, named
) -> None:
    pid = await add_patient(local)
    page = await local.get(f"/patients/{pid}")
    form = {"csrf_token": csrf_in(page.text), "test": "total_b12", "unit": "ng/L"}
    r = await local.post(f"/patients/{pid}/labs", data=form | {"value": typed, "date": days_ago(3)})
    assert r.status_code == 422
    for fragment in named:
        assert fragment in shown(r.text)
    assert site.count(LabEntry) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(("typed", "named"), [*BAD, (IMPLAUSIBLE[0], ("outside",))])
async def test_the_api_saves_nothing_it_would_have_to_guess(site: Site, local, typed, named):
    pid = await add_patient(local)
    body = {"test": "total_b12", "value": typed, "unit": "ng/L", "date": days_ago(3)}
    r = await local.post(f"/api/v1/patients/{pid}/labs", json=body)
    assert r.status_code == 422, r.text
    for fragment in named:
        assert fragment in r.text
    assert site.count(LabEntry) == 0


@pytest.mark.parametrize(("typed", "named"), [*BAD, (IMPLAUSIBLE[0], ("outside",))])
def test_the_command_line_saves_nothing_it_would_have_to_guess(
    tmp_path, capsys, monkeypatch, typed, named
) -> None:
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path))
    db = f"sqlite:///{tmp_path / 'clinic.sqlite3'}"
    add = "patient add --name N --birth-date 1968-04-02 --sex male --db"
    code, out, err = call(capsys, [*shlex.split(add), db])
    assert code == 0, err
    pid = re.findall(r"\b[A-Z0-9]{8}\b", out)[0]
    cmd = ["record", "lab", pid, "--test", "total_b12", "--value", typed, "--unit", "ng/L"]
    code, _, err = call(capsys, [*cmd, "--date", days_ago(3), "--db", db])
    assert code == 2
    for fragment in named:
        assert fragment in " ".join(err.split())
    code, out, _ = call(capsys, ["patient", "show", pid, "--json", "--db", db])
    assert code == 0 and json.loads(out)["patient"]["labs"] == []


@pytest.mark.asyncio
async def test_an_assessment_is_not_dated_after_today(client) -> None:
    """A date typed in the clinician form after today (a day of leeway for the browser's
    time zone) is refused; the contract's API, where integrators may replay or plan,
    takes any as_of as before."""
    later = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    form = CLINICIAN | red_flags() | {"lab_total_b12_value": "150", "as_of": later}
    r = await client.post("/clinician", data=form)
    assert r.status_code == 422 and "after today" in shown(r.text)
    assert "Do now" not in r.text
    api = await client.post("/api/v1/assess", json={"age_years": 58, "as_of": later})
    assert api.status_code == 200 and api.json()["as_of"] == later
