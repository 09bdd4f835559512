"""The practice nurse's patient page in a real browser: short enough to find things in.

A patient a year into treatment (loading and maintenance doses, labs, symptom reviews,
a saved assessment) made through the JSON API of a real ``b12dx serve``; the page is
measured in Chromium at a desktop and a phone width. The server, the browser and axe-core
are those of test_browser.
"""

# ruff: noqa: F811 (the fixtures imported from test_browser are test parameters here)
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from test_browser import (  # noqa: F401 (fixtures)
    DESKTOP,
    PHONE,
    Tab,
    axe_violations,
    base_url,
    browser,
    browser_server,
    no_horizontal_scroll,
    playwright,
    shot,
    tab,
)

pytestmark = pytest.mark.slow

# This patient's page was 10,984 px tall at 1280 px and 18,136 px at 390 px with every
# history and form laid open (3,225 and 4,887 px once folded). A nurse must find the next
# dose and today's card without scrolling past a year of history: at most a third of it.
MAX_HEIGHT = {1280: 3_600, 390: 6_000}


def _post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            answer: dict[str, Any] = json.loads(r.read())
            return answer
    except urllib.error.HTTPError as exc:
        pytest.fail(f"POST {path}: {exc.code} {exc.read().decode()}")


def treated_patient(base: str, name: str = "Ann Treated") -> str:
    """A year into treatment: five loading doses, maintenance every twelve weeks since,
    B12, blood count and folate at the start and twice since, three symptoms rated at
    every review, and the assessment saved at the start."""
    today = dt.date.today()

    def ago(days: int) -> str:
        return (today - dt.timedelta(days=days)).isoformat()

    pid = str(
        _post(
            base,
            "/api/v1/patients",
            {"name": name, "birth_date": "1958-03-02", "sex": "female",
             "conditions": ["pernicious_anemia"]},
        )["id"]
    )  # fmt: skip
    patient = f"/api/v1/patients/{pid}"
    for days in (365, 180, 30):
        for test, value, unit in (
            ("total_b12", 110 if days == 365 else 320, "pg/mL"),
            ("hemoglobin", 104 if days == 365 else 128, "g/L"),
            ("mcv", 109 if days == 365 else 92, "fL"),
            ("serum_folate", 6.1, "ng/mL"),
        ):
            _post(base, f"{patient}/labs", {"test": test, "value": value, "unit": unit,
                                            "date": ago(days)})  # fmt: skip
    _post(base, f"{patient}/assessments", {"as_of": ago(364)})
    reviews = {364: "severe", 270: "moderate", 180: "mild", 90: "mild", 30: "none"}
    for days, rating in reviews.items():
        for symptom in ("paresthesia", "fatigue", "memory_loss"):
            _post(base, f"{patient}/symptoms",
                  {"symptom": symptom, "rating": rating, "date": ago(days)})  # fmt: skip
    given = [364, 362, 360, 357, 355, 353, *range(269, 0, -84)]
    for days in given:
        _post(base, f"{patient}/doses",
              {"date": ago(days), "drug": "hydroxocobalamin", "dose": "1 mg", "route": "im",
               "batch": f"LOT{days}", "site": "left deltoid", "force": True})  # fmt: skip
    return pid


def page_height(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollHeight"))


def test_a_treated_patients_page_is_short_and_starts_with_what_is_next(
    tab: Tab, base_url: str
) -> None:
    pid = treated_patient(base_url)
    page = tab.page
    page.goto(f"/patients/{pid}")
    expect(page.locator("h1")).to_have_text("Ann Treated")
    # Today's card first: the next dose and the button that records today's, on screen.
    card = page.locator("section.nurse-card")
    expect(card).to_contain_text("Next due")
    expect(page.locator("form.record-today button")).to_be_in_viewport()
    # The forms are one click away each, none laid open; the histories are folded with
    # their count, the latest values shown.
    for form in ("#lab-form", "#dose-form", "#rating-form", "#review-form", "#details-form"):
        expect(page.locator(form)).to_be_hidden()
    expect(page.locator("#labs ul.latest")).to_contain_text("320 pg/mL")
    expect(page.locator("#labs details.history > summary")).to_contain_text("(12)")
    expect(page.locator("#symptoms details.history > summary")).to_contain_text("(15)")
    given = page.locator("#doses details.history > summary", has_text="Doses so far")
    expect(given).to_contain_text("10 given")
    expect(page.locator("#audit table.audit")).to_be_hidden()

    heights = {DESKTOP["width"]: page_height(page)}
    page.set_viewport_size(PHONE)
    page.reload()
    heights[PHONE["width"]] = page_height(page)
    assert no_horizontal_scroll(page), "the patient page scrolls sideways on a phone"
    print(f"patient page height: {heights}")
    for width, most in MAX_HEIGHT.items():
        assert heights[width] <= most, f"{heights[width]} px tall at {width} px wide"
    shot(page, "nurse-timeline-phone")
    page.set_viewport_size(DESKTOP)
    shot(page, "nurse-timeline")

    # One form opened by its name, by keyboard: it shows, the others stay closed.
    page.locator("#record-dose > summary").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#dose-batch")).to_be_visible()
    expect(page.locator("#lab-form")).to_be_hidden()
    assert axe_violations(page) == []
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the open dose form scrolls sideways on a phone"
    tab.assert_no_errors()


def test_a_form_sent_back_with_errors_is_shown_open(tab: Tab, base_url: str) -> None:
    """A form the server refused comes back open, with the errors and the answers."""
    pid = treated_patient(base_url, "Bea Sentback")
    page = tab.page
    page.goto(f"/patients/{pid}")
    page.locator("#record-lab > summary").click()
    page.locator("#lab-test").select_option("total_b12")
    page.locator("#lab-value").fill("lots")
    page.get_by_role("button", name="Save lab result").click()
    expect(page.locator("#errors")).to_be_visible()
    expect(page.locator("#lab-value")).to_be_visible()
    expect(page.locator("#lab-value")).to_have_value("lots")
    expect(page.locator("#dose-form")).to_be_hidden()
    # The browser logs the 422 answer itself; nothing else may go wrong.
    assert [e for e in tab.errors if "status of 422" not in e] == []
