"""The clinician form and its result in a real browser (GPs, neurologists, haematologists):
what is sent is what is shown, a new patient starts empty, every error at once and
linked, one printed A4 page, text for the notes, and a phone's 390 px without sideways
scrolling. The server, Chromium and axe-core are test_browser.py's.

Run with:
    .venv/bin/pytest tests/test_browser_clinician.py -q
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from test_browser import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    Tab,
    base_url,
    browser,
    browser_server,
    no_horizontal_scroll,
    playwright,
    shot,
    tab,
)

__all__ = [
    "base_url",
    "browser",
    "browser_server",
    "playwright",
    "tab",
]  # fixtures used by name below

pytestmark = pytest.mark.slow


def fill_typical(page: Page) -> None:
    """A 58-year-old woman with pernicious anaemia, on metformin, with tingling and poor
    balance and a low B12: every red flag answered no."""
    page.goto("/clinician")
    page.locator("#age_years").fill("58")
    page.locator("#sex").select_option("female")
    flags = page.locator(".red-flag-block input[value=no]")
    for i in range(flags.count()):
        flags.nth(i).check()
    search = page.locator("#symptom-search")
    for name in ("Paraesthesia", "poor balance"):
        search.fill(name)
        search.press("Enter")
    page.locator("#sym_paresthesia_weeks").fill("20")
    page.locator("#cond_pernicious_anemia").check()
    page.locator("#med_metformin").check()
    page.locator("#med_metformin_months").fill("36")
    page.locator("#lab_total_b12_value").fill("120")
    page.locator("#lab_total_b12_unit").select_option("pmol/L")
    week_ago = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    page.locator("#lab_total_b12_date").fill(week_ago)


def assess(page: Page) -> None:
    page.get_by_role("button", name="Assess").click()
    expect(page.locator("section.banner h1")).to_contain_text("Deficiency status")


HIDDEN_BUT_SENT = """
() => Array.from(document.querySelectorAll("form[action='/clinician'] input:checked"))
  .filter((box) => !box.checkVisibility())
  .map((box) => box.id)
"""


def test_back_from_the_result_shows_every_ticked_symptom_and_new_patient_clears_all(
    tab: Tab,
) -> None:
    """Back from the result: the browser ticks the last patient's symptoms again, and
    each ticked one is shown (it was ticked but hidden, so sent with the next patient);
    "New patient" then gives an empty form."""
    page = tab.page
    fill_typical(page)
    assess(page)
    page.go_back()
    expect(page.locator("#sym_paresthesia")).to_be_checked()  # the browser restored it
    assert page.evaluate(HIDDEN_BUT_SENT) == [], "ticked, sent, and not shown"
    expect(page.locator("tr[data-symptom]:visible")).to_have_count(2)
    shot(page, "clinician-form-after-back")

    page.get_by_role("link", name="New patient").click()
    expect(page.locator("#age_years")).to_have_value("")
    expect(page.locator("#lab_total_b12_value")).to_have_value("")
    expect(page.locator("#med_metformin_months")).to_have_value("")
    assert page.locator("form[action='/clinician'] input:checked").count() == 0
    expect(page.locator("tr[data-symptom]:visible")).to_have_count(0)
    # And from the result page too.
    fill_typical(page)
    assess(page)
    page.get_by_role("link", name="New patient").click()
    expect(page.locator("#age_years")).to_have_value("")
    assert page.locator("form[action='/clinician'] input:checked").count() == 0
    tab.assert_no_errors()


def test_every_clinician_error_at_once_in_plain_words_each_going_to_its_box(tab: Tab) -> None:
    page = tab.page
    page.goto("/clinician")
    page.locator("#lab_mma_value").fill("0,4")
    page.locator("#lab_total_b12_value").fill("120")
    page.get_by_role("button", name="Assess").click()
    summary = page.locator("div.error-summary")
    expect(summary).to_be_focused()
    links = summary.get_by_role("link")
    flags = page.locator(".red-flag-block tbody tr").count()
    expect(links).to_have_count(flags + 3)  # each red flag, the age, the MMA, the B12 unit
    expect(summary).to_contain_text("Answer yes or no for new bladder dysfunction")
    expect(summary).not_to_contain_text("symptoms.")
    summary.get_by_role("link", name="Choose the unit of the total serum vitamin B12").click()
    expect(page.locator("#lab_total_b12_unit")).to_be_focused()
    expect(page.locator("#lab_total_b12_unit-error")).to_be_visible()
    summary.get_by_role("link", name="Enter the age in years").click()
    expect(page.locator("#age_years")).to_be_focused()
    shot(page, "clinician-error-summary")
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the form with its errors scrolls sideways on a phone"
    shot(page, "clinician-error-summary-phone")
    tab.errors = [e for e in tab.errors if "status of 422" not in e]
    tab.assert_no_errors()


def fill_metformin(page: Page) -> None:
    """Tingling on metformin with a low B12, nothing else known: printed on two pages
    (the second held one warning)."""
    page.goto("/clinician")
    page.locator("#age_years").fill("58")
    flags = page.locator(".red-flag-block input[value=no]")
    for i in range(flags.count()):
        flags.nth(i).check()
    page.locator("#symptom-search").fill("Paraesthesia")
    page.locator("#symptom-search").press("Enter")
    page.locator("#med_metformin").check()
    page.locator("#lab_total_b12_value").fill("120")
    page.locator("#lab_total_b12_unit").select_option("pmol/L")


def pdf_pages(page: Page) -> int:
    pdf = page.pdf(format="A4")
    (SCREENSHOTS / "clinician-result-print-reference.pdf").write_bytes(pdf)
    return pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")


@pytest.mark.parametrize("fill", [fill_metformin, fill_typical], ids=["metformin", "typical"])
def test_the_clinician_print_is_one_a4_page_with_reference_and_dose_schedule(
    tab: Tab, fill: Callable[[Page], None]
) -> None:
    """On metformin with a low B12 and nerve signs (warnings, five or six next steps):
    one page, headed by the reference the GP typed, with the dated dose schedule."""
    page = tab.page
    fill(page)
    assess(page)
    page.emulate_media(media="print")
    pages = pdf_pages(page)
    assert pages == 1, f"the clinician's print is {pages} A4 pages"
    page.locator("#patient-ref").fill("JS 4711")
    reference = page.locator("#patient-ref")
    expect(reference).to_be_visible()
    expect(reference).to_have_value("JS 4711")
    schedule = page.locator("table.schedule")
    expect(schedule).to_be_visible()
    expect(schedule).to_contain_text(dt.date.today().isoformat())
    expect(page.locator("section.warnings, .warnings").first).to_be_visible()
    ref_box, banner_box = reference.bounding_box(), page.locator("section.banner").bounding_box()
    assert ref_box and banner_box and ref_box["y"] < banner_box["y"], "the reference heads it"
    shot(page, "clinician-result-print-reference")
    assert pdf_pages(page) == 1, "the reference took the print to a second page"
    page.emulate_media(media="screen")
    tab.assert_no_errors()


def test_copy_for_the_notes_copies_the_lines_shown(tab: Tab) -> None:
    page = tab.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    fill_typical(page)
    assess(page)
    button = page.get_by_role("button", name="Copy for the notes")
    button.click()
    expect(page.locator(".copy-status")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    page.locator("summary", has_text="Text for the notes").click()
    shown = page.locator("#notes-text")
    expect(shown).to_be_visible()
    assert copied == shown.inner_text()
    lines = copied.splitlines()
    assert 4 <= len(lines) <= 8, lines
    assert lines[1].startswith("Status: confirmed. Urgency: urgent")
    first_dose = dt.date.today().strftime("%d %b %Y")
    assert f"Plan: hydroxocobalamin 1 mg IM, first dose {first_dose}" in copied
    assert "Total serum vitamin B12 (cobalamin) 120 pmol/L (deficient" in copied
    assert any(line.startswith("Review: ") for line in lines)
    shot(page, "clinician-result-notes")
    tab.assert_no_errors()


WRAPPED_VALUES = """
() => Array.from(document.querySelectorAll("main table"))
  .filter((t) => t.checkVisibility())
  .flatMap((t) => Array.from(t.querySelectorAll("th, td")))
  .filter((c) => c.textContent.trim() && c.textContent.trim().length <= 24)
  .filter((c) => {
    const range = document.createRange();
    range.selectNodeContents(c);
    const tops = new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top)));
    return tops.size > 1;
  })
  .map((c) => c.textContent.trim())
"""
PATHWAY_TEXT_PX = """
() => Math.min(...Array.from(document.querySelectorAll("svg.pathway tspan"))
  .map((t) => t.getBoundingClientRect().height))
"""
CROPPED_NUMBERS = """
(typed) => Array.from(document.querySelectorAll("form[action='/clinician'] input.small"))
  .filter((box) => box.checkVisibility())
  .filter((box) => { box.value = typed; return box.scrollWidth > box.clientWidth + 1; })
  .map((box) => `${box.id} (${Math.round(box.getBoundingClientRect().width)} px)`)
"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_number_boxes_hold_their_values(tab: Tab, viewport: dict[str, int]) -> None:
    """Months on a medicine and the eGFR were 20 px wide: every number box holds 1234.5."""
    page = tab.page
    page.set_viewport_size(viewport)
    fill_typical(page)
    page.locator("#cond_chronic_kidney_disease").check()
    assert page.evaluate(CROPPED_NUMBERS, "1234.5") == []
    assert no_horizontal_scroll(page), "the clinician form scrolls sideways"
    shot(page, f"clinician-form-numbers-{viewport['width']}")
    tab.assert_no_errors()


def test_the_result_reads_on_a_phone_without_sideways_scrolling(tab: Tab) -> None:
    """At 390 px the page does not scroll sideways; the tables and the pathway keep
    readable sizes, scrolling inside their own box, which says so."""
    page = tab.page
    fill_typical(page)
    assess(page)
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the clinician result scrolls sideways on a phone"
    wrapped = page.evaluate(WRAPPED_VALUES)
    assert wrapped == [], f"short values broken over lines (columns squeezed): {wrapped}"
    text_px = page.evaluate(PATHWAY_TEXT_PX)
    assert text_px >= 11, f"the pathway's words are {text_px:.1f} px high"
    scroller = page.locator(".pathway-scroll")
    assert page.evaluate("(el) => el.scrollWidth > el.clientWidth", scroller.element_handle())
    expect(page.locator("#pathway-scroll-hint")).to_be_visible()
    for region in page.locator(".table-scroll").all():
        if region.is_visible() and region.evaluate("(el) => el.scrollWidth > el.clientWidth"):
            hint = region.locator("xpath=preceding-sibling::p[1]")
            expect(hint).to_have_text("The table scrolls sideways.")
            expect(hint).to_be_visible()
    shot(page, "clinician-result-phone-readable")
    tab.assert_no_errors()
