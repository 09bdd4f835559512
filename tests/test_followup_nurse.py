"""The practice nurse's doors to the follow-up store: a dose given today counts today,
a patient is added once (NHS number or local number, namesakes stopped with a link),
every recording names the patient and can be undone, a dose's batch and site are asked
for on every form, the due list starts with today, and a period reads the same on every
door. Helpers and fixtures are those of test_followup_web."""

# ruff: noqa: F811 (the fixtures imported from test_followup_web are test parameters here)
from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from b12dx.store.tables import DoseEntry, Patient
from test_followup_web import (  # noqa: F401 (fixtures)
    PATIENT,
    TODAY,
    add_patient,
    api_post,
    course,
    csrf_in,
    days_ago,
    fast_hashes,
    local,
    site,
)

IM = {"drug": "hydroxocobalamin", "dose": "1 mg", "route": "im"}
# The same dose through the JSON API, which asks for the batch and site too.
API_IM = IM | {"batch_not_recorded": True, "site_not_recorded": True}


async def loading_under_way(c: httpx.AsyncClient) -> str:
    """A patient with neurological B12 deficiency whose loading course (saved six days
    ago) is under way on plan: a dose every other day, the next one due today."""
    pid = await add_patient(c)
    posts: list[tuple[str, dict[str, Any]]] = [
        ("labs", {"test": "total_b12", "value": 110, "unit": "pg/mL", "date": days_ago(10)}),
        ("symptoms", {"symptom": "paresthesia", "rating": "severe", "date": days_ago(10)}),
        ("assessments", {"as_of": days_ago(6)}),
    ]
    posts += [("doses", API_IM | {"date": days_ago(d)}) for d in (6, 4, 2)]
    for path, body in posts:
        r = await api_post(c, f"/api/v1/patients/{pid}/{path}", body)
        assert r.status_code == 201, (path, r.text)
    return pid


def card(page: str) -> str:
    return page.split('id="nurse-title"')[1].split("</section>")[0]


def loading(page: str) -> tuple[int, int]:
    m = re.search(r"Loading</dt><dd>(\d+) of (\d+) given", card(page))
    assert m, card(page)
    return int(m[1]), int(m[2])


def fields_of(form_html: str) -> dict[str, str]:
    """The hidden fields a form sends as it is (boxes left unticked)."""
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form_html))


# -- a dose given today ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_dose_recorded_today_counts_for_todays_planned_dose(site, local):
    pid = await loading_under_way(local)
    before = (await local.get(f"/patients/{pid}")).text
    given, planned = loading(before)
    assert "Doses given outside a saved plan" not in before
    r = await api_post(local, f"/api/v1/patients/{pid}/doses", API_IM | {"date": days_ago(0)})
    assert r.status_code == 201
    after = (await local.get(f"/patients/{pid}")).text
    assert loading(after) == (given + 1, planned), "today's dose counts, the plan stays whole"
    assert "Doses given outside a saved plan" not in after
    today_row = re.search(rf'data-status="(\w+)"><td>{TODAY.isoformat()}</td>', after)
    assert today_row and today_row[1] == "given"


# -- adding a patient once -----------------------------------------------------------------


async def add_form(c: httpx.AsyncClient, **fields: str) -> httpx.Response:
    page = await c.get("/patients")
    form = {"name": "David Price", "birth_date": "1968-04-02", "sex": "male"} | fields
    return await c.post("/patients", data=form | {"csrf_token": csrf_in(page.text)})


@pytest.mark.asyncio
async def test_a_second_patient_of_the_same_name_and_birth_date_is_stopped_with_a_link(site, local):
    first = await add_form(local)
    assert first.status_code == 303
    pid = first.headers["location"].split("/")[2].split("?")[0]
    again = await add_form(local)
    assert again.status_code == 422 and site.count(Patient) == 1
    warning = again.text.split('id="duplicates"')[1].split("</div>")[0]
    assert f'href="/patients/{pid}"' in warning and "David Price" in warning
    assert 'name="add_anyway"' in again.text, "a true namesake can still be added"
    namesake = await add_form(local, add_anyway="yes")
    assert namesake.status_code == 303 and site.count(Patient) == 2


@pytest.mark.asyncio
async def test_an_nhs_number_is_checked_stored_searched_and_never_held_twice(site, local):
    wrong = await add_form(local, nhs_number="943 476 5918")
    assert wrong.status_code == 422 and "check digit" in wrong.text
    assert site.count(Patient) == 0
    first = await add_form(local, nhs_number="943 476 5919")
    assert first.status_code == 303
    pid = first.headers["location"].split("/")[2].split("?")[0]
    page = await local.get("/patients")
    found = await local.post(
        "/patients/search", data={"q": "9434765919", "csrf_token": csrf_in(page.text)}
    )
    assert f'href="/patients/{pid}"' in found.text and "943 476 5919" in found.text
    other = await add_form(local, name="Dai Price", nhs_number="9434765919", add_anyway="yes")
    assert other.status_code == 422 and site.count(Patient) == 1, "one number, one person"
    assert f'href="/patients/{pid}"' in other.text
    r = await api_post(local, "/api/v1/patients", PATIENT | {"local_number": "rs-0042"})
    assert r.status_code == 201 and r.json()["local_number"] == "RS-0042"
    twice = await api_post(local, "/api/v1/patients", PATIENT | {"local_number": "RS-0042"})
    assert twice.status_code == 422 and r.json()["id"] in twice.text


# -- recording names the patient, and undo -------------------------------------------------


@pytest.mark.asyncio
async def test_a_dose_recorded_on_the_timeline_names_the_patient_and_can_be_undone(site, local):
    pid = await loading_under_way(local)
    page = (await local.get(f"/patients/{pid}")).text
    form = IM | {"date": days_ago(0), "csrf_token": csrf_in(page)}
    blank = await local.post(f"/patients/{pid}/doses", data=form)
    assert blank.status_code == 422 and "batch" in blank.text and "site" in blank.text
    assert site.count(DoseEntry) == 3, "a dose without batch or site is not recorded"
    r = await local.post(
        f"/patients/{pid}/doses", data=form | {"batch": "KX7731", "site_not_recorded": "yes"}
    )
    assert r.status_code == 303
    shown = (await local.get(r.headers["location"])).text
    notice = shown.split('id="recorded"')[1].split("</div>")[0]
    assert "Ann Smith" in notice and pid in notice
    assert "hydroxocobalamin 1 mg IM, batch KX7731, site not recorded" in notice
    undo = re.search(r'<form method="post" action="([^"]+/undo)"(.*?)</form>', notice, re.S)
    assert undo, "no Undo beside what was recorded"
    r = await local.post(undo[1], data=fields_of(undo[2]))
    assert r.status_code == 303
    doses = (await local.get(f"/api/v1/patients/{pid}")).json()["doses"]
    assert TODAY.isoformat() not in {d["date"] for d in doses}
    assert site.count(DoseEntry) == 4, "undone is entered in error: kept, never deleted"
    trail = [e for e in site.audit() if e.action == "entered_in_error"]
    assert len(trail) == 1 and trail[0].entity == "dose"


@pytest.mark.asyncio
async def test_record_todays_injection_asks_for_batch_and_site_or_not_recorded(site, local):
    pid = await loading_under_way(local)
    page = (await local.get(f"/patients/{pid}")).text
    form = re.search(r'class="record-today">(.*?)</form>', card(page), re.S)
    assert form and 'name="batch_not_recorded"' in form[1] and 'name="site_not_recorded"' in form[1]
    fields = fields_of(form[1])
    assert (await local.post(f"/patients/{pid}/doses", data=fields)).status_code == 422
    r = await local.post(
        f"/patients/{pid}/doses",
        data=fields | {"batch_not_recorded": "yes", "site": "right deltoid"},
    )
    assert r.status_code == 303
    notice = (await local.get(r.headers["location"])).text.split('id="recorded"')[1]
    assert "batch not recorded, right deltoid" in notice.split("</div>")[0]


@pytest.mark.asyncio
async def test_the_api_refuses_a_dose_without_batch_or_site_naming_each_and_what_is_accepted(
    site, local
):
    """The JSON API asks what the forms ask: the batch and, for an injection, the site,
    or an explicit "not recorded"; a dose with neither is a 422 and nothing is written."""
    pid = await add_patient(local)
    doses = f"/api/v1/patients/{pid}/doses"
    blank = await api_post(local, doses, IM | {"date": days_ago(3)})
    assert blank.status_code == 422 and site.count(DoseEntry) == 0
    said = {e["path"]: e for e in blank.json()["errors"]}
    assert set(said) == {"batch", "site"}
    assert said["batch"]["message"] == "the batch number is needed"
    assert said["batch"]["accepted"] == '"batch": the batch number, or "batch_not_recorded": true'
    assert said["site"]["accepted"] == '"site": the injection site, or "site_not_recorded": true'
    only_batch = await api_post(local, doses, IM | {"date": days_ago(3), "batch": "KX7731"})
    assert only_batch.status_code == 422
    assert [e["path"] for e in only_batch.json()["errors"]] == ["site"]
    r = await api_post(
        local, doses, IM | {"date": days_ago(3), "batch": "KX7731", "site_not_recorded": True}
    )
    assert r.status_code == 201, r.text
    assert (r.json()["batch"], r.json()["site"]) == ("KX7731", None)
    # A tablet has no injection site: only the batch is asked for.
    oral = {"drug": "cyanocobalamin", "dose": "1 mg", "route": "oral", "date": days_ago(1)}
    assert [e["path"] for e in (await api_post(local, doses, oral)).json()["errors"]] == ["batch"]
    r = await api_post(local, doses, oral | {"batch_not_recorded": True})
    assert r.status_code == 201, r.text
    assert site.count(DoseEntry) == 2


@pytest.mark.asyncio
async def test_given_today_on_the_due_list_asks_batch_and_site_names_the_patient_and_undoes(
    site, local
):
    pid = await add_patient(local)
    await course(local, pid)
    page = (await local.get("/clinic", params={"as_of": TODAY.isoformat()})).text
    form = re.search(
        rf'<form method="post" action="/patients/{pid}/doses" class="inline-form given-today">'
        r"(.*?)</form>",
        page,
        re.S,
    )
    assert form and re.search(r'<label for="[^"]+-batch">Batch', form[1])
    fields = fields_of(form[1])
    blank = await local.post(f"/patients/{pid}/doses", data=fields)
    assert blank.status_code == 422 and site.count(DoseEntry) == 6
    r = await local.post(
        f"/patients/{pid}/doses", data=fields | {"batch": "LOT-9", "site": "left deltoid"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/clinic?")
    back = (await local.get(r.headers["location"])).text
    notice = back.split('id="recorded"')[1].split("</div>")[0]
    assert "Ann Smith" in notice and "batch LOT-9, left deltoid" in notice
    undo = re.search(r'<form method="post" action="([^"]+/undo)"(.*?)</form>', notice, re.S)
    assert undo
    r = await local.post(undo[1], data=fields_of(undo[2]))
    assert r.status_code == 303 and r.headers["location"].startswith("/clinic?")
    doses = (await local.get(f"/api/v1/patients/{pid}")).json()["doses"]
    assert TODAY.isoformat() not in {d["date"] for d in doses}


# -- finding the pages, and the due list ------------------------------------------------------


@pytest.mark.asyncio
async def test_the_main_pages_link_to_the_follow_up_pages(local):
    for path in ("/", "/clinician"):
        page = (await local.get(path)).text
        nav = page.split('<nav aria-label="Main">')[1].split("</nav>")[0]
        assert 'href="/patients"' in nav and 'href="/clinic"' in nav, path
    # The patient check's header is a patient's: nothing meant for clinicians.
    nav = (await local.get("/check")).text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert "/patients" not in nav and "/clinician" not in nav


@pytest.mark.asyncio
async def test_the_due_list_starts_with_what_is_due_today(site, local):
    pid = await loading_under_way(local)
    page = (await local.get("/clinic", params={"as_of": TODAY.isoformat()})).text
    assert 'id="today-title"' in page
    first = page.index('id="today-title"')
    assert first < page.index('id="overdue-title"') and first < page.index('id="due-title"')
    today = page[first:].split("</section>")[0]
    assert f'href="/patients/{pid}"' in today and 'data-kind="dose_due"' in today


@pytest.mark.asyncio
async def test_a_review_done_is_no_longer_listed_as_overdue(site, local):
    """A course saved 199 days ago planned a review three months in; no symptom has been
    rated since, so it is overdue, until the nurse saves the review."""
    pid = await add_patient(local)
    posts: list[tuple[str, dict[str, Any]]] = [
        ("labs", {"test": "total_b12", "value": 110, "unit": "pg/mL", "date": days_ago(200)}),
        ("symptoms", {"symptom": "paresthesia", "rating": "severe", "date": days_ago(199)}),
        ("assessments", {"as_of": days_ago(199)}),
    ]
    posts += [("doses", API_IM | {"date": days_ago(d)}) for d in (199, 197, 195, 193, 191, 150)]
    for path, body in posts:
        r = await api_post(local, f"/api/v1/patients/{pid}/{path}", body)
        assert r.status_code == 201, (path, r.text)
    items = (await local.get("/api/v1/due", params={"within": "30"})).json()
    overdue = [i for i in items if i["kind"] == "review_overdue" and i["patient_id"] == pid]
    assert overdue, "the course's first review has passed undone"
    page = (await local.get(f"/patients/{pid}")).text
    r = await local.post(
        f"/patients/{pid}/review",
        data={"csrf_token": csrf_in(page), "date": days_ago(0), "rate_paresthesia": "mild"},
    )
    assert r.status_code == 303
    items = (await local.get("/api/v1/due", params={"within": "30"})).json()
    assert not [i for i in items if i["kind"] == "review_overdue" and i["patient_id"] == pid]


@pytest.mark.asyncio
async def test_a_period_reads_the_same_on_the_clinic_page_and_the_api(site, local):
    pid = await add_patient(local)
    await course(local, pid)
    days = (await local.get("/api/v1/due", params={"within": "42"})).json()
    for written in ("6w", "42d", " 42 "):
        r = await local.get("/api/v1/due", params={"within": written})
        assert r.status_code == 200 and r.json() == days, written
    month = await local.get("/clinic", params={"within": "1m", "as_of": TODAY.isoformat()})
    assert month.status_code == 200 and "in the next 30 days" in month.text
    csv_month = await local.get("/clinic.csv", params={"within": "1m"})
    csv_days = await local.get("/clinic.csv", params={"within": "30"})
    assert csv_month.status_code == 200 and csv_month.text == csv_days.text
    bad = await local.get("/clinic", params={"within": "soon"})
    assert bad.status_code == 422 and "2w" in bad.text
