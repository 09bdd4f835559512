"""The web app in a real browser: the server in a subprocess, Chromium through Playwright.

Run with:
    .venv/bin/pytest tests/test_browser.py -q

Needs Debian's Chromium at /usr/bin/chromium (CI installs it); the tests fail, not skip,
when it is missing. Screenshots go to test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from processes import ONCE, NotReady, b12dx_command, free_port, wait_for_http

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _server_command(port: int, *extra: str) -> list[str]:
    return [*b12dx_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]


@contextlib.contextmanager
def _server(name: str, env: dict[str, str], *extra: str) -> Iterator[str]:
    """``b12dx serve`` on a free loopback port until the block ends: ready when it
    answers /api/v1/health (processes.READY_S at most; its log is reported otherwise)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = SCREENSHOTS.parent / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _server_command(port, *extra), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
        try:
            wait_for_http(f"{url}/api/v1/health", proc, log_path, f"the {name}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextlib.contextmanager
def _started(name: str, env: dict[str, str], *extra: str) -> Iterator[str | NotReady]:
    """:func:`_server` for a module fixture: its URL, or why it did not start (given to
    :func:`ready`, so that it is reported once, not by every test of the module)."""
    try:
        with _server(name, env, *extra) as url:
            yield url
            return
    except NotReady as exc:
        failure = exc
    yield failure


def ready(name: str, started: str | NotReady) -> str:
    """The server's URL; the first test to need a server that did not start fails with
    its log, the others are skipped pointing to it."""
    if isinstance(started, NotReady):
        ONCE.fail(name, str(started))
    assert isinstance(started, str)
    return started


def _env(data_dir: Path) -> dict[str, str]:
    # The server opens its follow-up database at start: keep it out of the user's data
    # directory.
    return {**os.environ, "B12DX_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | NotReady]:
    """The real server (``b12dx serve``) on a free loopback port, stopped at the end."""
    with _started("browser-server", _env(tmp_path_factory.mktemp("data"))) as url:
        yield url


@pytest.fixture
def base_url(browser_server: str | NotReady) -> str:
    return ready("browser-server", browser_server)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        pytest.fail(
            f"Chromium is missing at {CHROMIUM} (found on PATH: {found}). The browser tests "
            "need Debian's chromium package: apt-get install chromium"
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class Tab:
    """A page plus everything it reported as an error (console errors, uncaught exceptions)."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def assert_no_errors(self) -> None:
        assert self.errors == [], "errors in the page:\n" + "\n".join(self.errors)


@pytest.fixture
def tab(browser: Browser, base_url: str) -> Iterator[Tab]:
    # bypass_csp: the app's Content-Security-Policy (rightly) refuses the inline script
    # the test injects to run axe-core.
    context = browser.new_context(
        base_url=base_url, viewport=DESKTOP, accept_downloads=True, bypass_csp=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    tab = Tab(page)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            tab.errors.append(f"console: {msg.text} ({msg.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
    try:
        yield tab
    finally:
        context.close()


AXE = Path(__file__).parent / "fixtures" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Pages checked by axe-core in this run and what it found (for the closing figures).
AXE_RESULTS: dict[str, int] = {}
# The typical patient check: pages to the result and words read (for the figures).
CHECK_FIGURES: dict[str, int] = {}


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A and AA violations on the page as it is now shown."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text())
    found: list[str] = page.evaluate(
        """async (tags) => (await axe.run(document, {runOnly: {type: "tag", values: tags}}))
            .violations.map((v) => `${v.id} (${v.nodes.length}): ${v.help}: `
              + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "))""",
        WCAG,
    )
    return found


def shot(page: Page, name: str) -> None:
    """A screenshot for test-artifacts/, and axe-core run on what it shows."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    violations = axe_violations(page)
    AXE_RESULTS[name] = len(violations)
    assert violations == [], f"axe-core on {name}:\n" + "\n".join(violations)


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def visible_steps(page: Page) -> int:
    return page.locator("form.stepper .step:visible").count()


def expect_step(page: Page, step: int, name: str | None = None) -> None:
    """Only one step is shown, numbered ``step`` among the steps asked, and named."""
    progress = page.locator("p.progress")
    # "Step 2: About you" until the areas are chosen, then "Step 4 of 8: ..."
    expect(progress).to_have_text(re.compile(rf"^Step {step}( of \d+)?: "))
    if name:
        expect(progress).to_contain_text(name)
        expect(page.locator(f'form.stepper .step[data-step-name="{name}"]')).to_be_visible()
    assert visible_steps(page) == 1


def press_next(page: Page, step: int, name: str | None = None) -> None:
    """Continue with the keyboard; the next step, and only it, is shown, heading focused."""
    page.locator("button.next").press("Enter")
    expect_step(page, step, name)
    expect(page.locator("form.stepper .step:visible h2")).to_be_focused()


def tick(page: Page, selector: str) -> None:
    """Tick a checkbox or radio with the keyboard (focus, then Space)."""
    box = page.locator(selector)
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()


def type_into(page: Page, selector: str, text: str) -> None:
    box = page.locator(selector)
    box.focus()
    page.keyboard.type(text)
    expect(box).to_have_value(text)


def test_patient_check_red_flag_goes_straight_to_emergency(tab: Tab) -> None:
    page = tab.page
    page.goto("/check")
    expect_step(page, 1, "Emergency signs")
    # An explicit answer first: Continue says so (it is never a dead, greyed button).
    page.locator("button.next").click()
    error = page.locator(".step-error")
    expect(error).to_contain_text("Tick what is happening to you now")
    expect(page.locator("#rf_sudden")).to_be_focused()
    expect_step(page, 1, "Emergency signs")
    page.get_by_label("Weakness spreading up from your feet").check()
    expect(error).to_have_count(0)
    page.locator("button.next").click()

    banner = page.locator("section.banner")
    expect(banner).to_have_class("banner urgency-emergency")
    call = page.locator("a.call-button")
    expect(call).to_have_attribute("href", "tel:999")
    expect(call).to_be_visible()
    expect(page.locator("main")).to_contain_text("Do not drive yourself")
    expect(page.locator("main")).not_to_contain_text("Foods that contain B12")
    expect(page.locator("h1")).to_have_count(1)
    shot(page, "check-red-flag-emergency")
    page.set_viewport_size(PHONE)
    expect(call).to_be_in_viewport()
    shot(page, "check-red-flag-emergency-phone")
    tab.assert_no_errors()


def advance_to(page: Page, name: str, step: int) -> int:
    """Press Continue until the step named ``name``; the number of that step."""
    while name not in page.locator("p.progress").inner_text():
        step += 1
        press_next(page, step)
    return step


def to_the_areas(page: Page, *areas: str, age: str = "58") -> int:
    """No emergency sign, an age, then the body areas chosen: the step reached."""
    tick(page, "#rf_none")
    press_next(page, 2, "About you")
    type_into(page, "#age_years", age)
    press_next(page, 3, "Where it is")
    for area in areas:
        tick(page, f"#area_{area}")
    return 3


def test_a_sudden_onset_ends_the_check_at_that_step(tab: Tab) -> None:
    page = tab.page
    page.goto("/check")
    step = to_the_areas(page, "sensory")
    press_next(page, step + 1, "Feeling and sensation")
    tick(page, "#sym_numbness")
    press_next(page, step + 2, "When it started")
    tick(page, "#onset_sudden")
    page.locator("button.next").press("Enter")
    expect(page.locator("section.banner")).to_have_class("banner urgency-emergency")
    expect(page.locator("a.call-button")).to_be_visible()
    tab.assert_no_errors()


def test_the_back_gesture_goes_back_one_step(tab: Tab) -> None:
    page = tab.page
    page.goto("/check")
    tick(page, "#rf_none")
    press_next(page, 2)
    type_into(page, "#age_years", "58")
    press_next(page, 3)
    page.go_back()
    expect_step(page, 2)
    page.go_back()
    expect_step(page, 1, "Emergency signs")
    expect(page.locator("#rf_none")).to_be_checked()
    page.go_forward()
    expect_step(page, 2)
    page.locator("button.back-link").click()
    expect_step(page, 1)
    tab.assert_no_errors()


WORDS_PER_MINUTE = 200  # reading speed for the check's reading time


def words_on(page: Page) -> int:
    """Words a sighted person reads on the page as shown: not what is folded away, nor
    what is written for screen readers only."""
    n = int(
        page.evaluate(
            """() => {
              const main = document.querySelector("main").cloneNode(true);
              main.querySelectorAll(".visually-hidden, [hidden]").forEach((e) => e.remove());
              document.body.appendChild(main);
              const words = main.innerText.split(/\\s+/).filter(Boolean).length;
              main.remove();
              return words;
            }"""
        )
    )
    return n


def test_patient_check_typical_b12_case_by_keyboard(tab: Tab) -> None:
    """A 45-year-old with tingling on metformin, by keyboard, asked only what her answers
    call for: at most 10 pages and 3 minutes of reading to the result. Enter moves on,
    in a text box or on a tick box (it used to send the whole check and skip the rest)."""
    page = tab.page
    page.goto("/check")
    pages, words = 1, 0
    expect_step(page, 1, "Emergency signs")
    expect(page.locator("button.back-link")).to_be_hidden()
    expect(page.locator("form.stepper button[type=submit]")).to_be_hidden()
    assert page.locator("input[data-red-flag]:checked").count() == 0
    header = page.locator("header.site")
    for clinician_link in ("Clinician view", "API", "Patients", "Clinic"):
        expect(header.get_by_role("link", name=clinician_link)).to_have_count(0)
    tick(page, "#rf_none")
    shot(page, "check-step-1")
    words += words_on(page)

    page.locator("#rf_none").press("Enter")  # Enter on a tick box moves on, no more
    pages += 1
    expect_step(page, 2, "About you")
    words += words_on(page)
    type_into(page, "#age_years", "45")
    page.locator("#sex").select_option("female")
    expect(page.locator("#pregnant")).to_be_visible()
    # A fit is asked at any age; a child's development only of a child.
    expect(page.locator("#sym_seizures")).to_be_visible()
    expect(page.locator("#sym_developmental_delay")).to_be_hidden()
    page.locator("#age_years").press("Enter")
    pages += 1
    expect_step(page, 3, "Where it is")
    # Nor about reflexes a doctor tests.
    assert page.locator("#area_reflexes").count() == 0
    words += words_on(page)
    tick(page, "#area_sensory")
    page.locator("#area_sensory").press("Enter")
    pages += 1
    expect_step(page, 4, "Feeling and sensation")
    words += words_on(page)
    tick(page, "#sym_paresthesia")
    # "None of these" and an answer leave each other out.
    tick(page, "#none_sensory")
    expect(page.locator("#sym_paresthesia")).not_to_be_checked()
    tick(page, "#sym_paresthesia")
    expect(page.locator("#none_sensory")).not_to_be_checked()
    shot(page, "check-symptoms-sensation")
    page.locator("#sym_paresthesia").press("Enter")
    pages += 1
    expect_step(page, 5, "When it started")
    words += words_on(page)
    tick(page, "#onset_gradual")
    type_into(page, "#duration_value", "3")
    page.locator("#duration_unit").select_option("months")
    page.locator("#duration_value").press("Enter")
    pages += 1
    expect_step(page, 6, "Medicines")
    words += words_on(page)
    expect(page.locator("#med_metformin")).to_be_hidden()  # under its question
    tick(page, "#topic_diabetes_medicine")
    tick(page, "#med_metformin")
    tick(page, "#med_metformin_long")
    page.locator("#med_metformin_long").press("Enter")
    pages += 1
    expect_step(page, 7, "Conditions")
    words += words_on(page)
    press_next(page, 8, "Blood test results")
    pages += 1
    words += words_on(page)
    tick(page, "#has_results_no")
    expect(page.locator("#lab_total_b12_value")).to_be_hidden()
    expect(page.locator("button.next")).to_be_hidden()
    submit = page.locator("form.stepper button[type=submit]")
    expect(submit).to_be_visible()
    submit.press("Enter")
    pages += 1

    expect(page.locator("h1")).to_have_text("Check your answers")
    expect(page.locator("main")).to_contain_text("Metformin (for 2 years or more)")
    expect(page.locator("main")).not_to_contain_text("Reflexes")
    shot(page, "check-your-answers")
    words += words_on(page)
    page.get_by_role("button", name="See what to do").press("Enter")
    pages += 1

    banner = page.locator("section.banner")
    expect(banner).to_have_class("banner urgency-urgent")
    expect(banner).to_contain_text("See a doctor today")
    expect(banner).to_contain_text("Call your GP surgery today")
    expect(page.locator("h1")).to_have_count(1)
    summary = page.locator("section.summary")
    expect(summary.locator("h2")).to_have_text("Summary to take to your doctor")
    medicines = summary.locator("dt", has_text="Medicines").locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(medicines).to_contain_text("Metformin (2 years or more)")
    expect(summary.locator("button.print")).to_be_visible()
    shot(page, "check-typical-urgent-result")
    result = words_on(page)
    CHECK_FIGURES.update(pages=pages, question_words=words, result_words=result)
    assert pages <= 10, f"{pages} pages to the result"
    # The questions, to "Check your answers", in at most 4 minutes; the result, which
    # is printed and kept, in at most 2 (the emergency questions, what is asked of
    # everyone, and what not to do are kept whole: docs/clinical-choices.md).
    assert words / WORDS_PER_MINUTE <= 4, f"questions: {words} words"
    assert result / WORDS_PER_MINUTE <= 2, f"result: {result} words"
    pdf = page.pdf(format="A4")
    pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
    assert pages == 1, f"the printed summary is {pages} pages"

    page.set_viewport_size(PHONE)
    expect(banner).to_be_visible()
    assert no_horizontal_scroll(page), "the result page scrolls sideways on a phone"
    shot(page, "check-typical-urgent-result-phone")
    tab.assert_no_errors()


def test_change_returns_to_check_your_answers(tab: Tab) -> None:
    page = tab.page
    page.goto("/check")
    step = to_the_areas(page, "sensory", age="45")
    advance_to(page, "Blood test results", step)
    page.locator("form.stepper button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("Check your answers")
    page.get_by_role("button", name="Change about you").click()
    expect_step(page, 2, "About you")
    page.locator("#age_years").fill("46")
    back = page.get_by_role("button", name="Save and go back to check your answers")
    expect(back).to_be_visible()
    back.click()
    expect(page.locator("h1")).to_have_text("Check your answers")
    expect(page.locator("main")).to_contain_text("46 years old")
    tab.assert_no_errors()


def test_every_area_chosen_can_be_answered(tab: Tab) -> None:
    """Two areas: the second's answers are as open as the first's (they were disabled
    once the first was ticked, so low mood, and its crisis help, were silently lost)."""
    page = tab.page
    page.goto("/check")
    step = to_the_areas(page, "sensory", "psychiatric", age="58")
    press_next(page, step + 1, "Feeling and sensation")
    tick(page, "#sym_paresthesia")
    press_next(page, step + 2, "Mood and mental health")
    expect(page.locator("#sym_depression")).to_be_enabled()
    tick(page, "#sym_depression")
    advance_to(page, "Blood test results", step + 2)
    tick(page, "#has_results_no")
    page.locator("form.stepper button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("Check your answers")
    expect(page.locator("main")).to_contain_text("Low mood")
    expect(page.locator("main")).to_contain_text("Pins and needles")
    tab.assert_no_errors()


def test_every_step_fits_a_phone_and_a_child_is_asked_about_a_child(tab: Tab) -> None:
    page = tab.page
    page.set_viewport_size(PHONE)
    page.goto("/check")
    tick(page, "#rf_none")
    press_next(page, 2, "About you")
    expect(page.locator("#sym_developmental_delay")).to_be_hidden()  # no age yet
    type_into(page, "#age_years", "6")
    # Not asked of a child: pregnancy; asked of a child only: a child's development.
    expect(page.locator("#pregnant")).to_be_hidden()
    expect(page.locator("#sym_developmental_delay")).to_be_visible()
    expect(page.locator("#sym_seizures")).to_be_visible()
    press_next(page, 3, "Where it is")
    tick(page, "#area_all")
    step = 3
    while page.locator("button.next").is_visible():
        assert no_horizontal_scroll(page), page.locator("p.progress").inner_text()
        step += 1
        press_next(page, step)
    assert no_horizontal_scroll(page), page.locator("p.progress").inner_text()
    expect(page.locator("p.progress")).to_contain_text("Blood test results")
    tab.assert_no_errors()


def test_errors_are_summarised_and_announced(tab: Tab) -> None:
    """Continue without an age says so on the step; a result typed "1,600" comes back
    with a GOV.UK error summary, focused, naming the readings, whose link goes to it."""
    page = tab.page
    page.goto("/check")
    tick(page, "#rf_none")
    press_next(page, 2, "About you")
    page.locator("button.next").click()
    expect(page.locator(".step-error")).to_contain_text("Enter your age in years")
    expect(page.locator("#age_years")).to_be_focused()
    expect_step(page, 2, "About you")
    type_into(page, "#age_years", "45")
    press_next(page, 3, "Where it is")
    tick(page, "#area_sensory")
    advance_to(page, "Blood test results", 3)
    tick(page, "#has_results_yes")
    type_into(page, "#lab_total_b12_value", "1,600")
    page.locator("#lab_total_b12_unit").select_option("ng/L")
    page.locator("form.stepper button[type=submit]").press("Enter")
    summary = page.locator("div.error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("write 1600 or 1.6")
    expect(page.locator("#lab_total_b12_value-error")).to_be_visible()
    summary.get_by_role("link").first.click()
    expect(page.locator("#lab_total_b12_value")).to_be_focused()
    shot(page, "check-error-summary")
    # The answers came back as a 422 (the browser logs the status); nothing else.
    tab.errors = [e for e in tab.errors if "status of 422" not in e]
    tab.assert_no_errors()


def test_clinician_form_result_and_calendar(tab: Tab) -> None:
    page = tab.page
    page.goto("/clinician")
    page.locator("#age_years").fill("58")
    page.locator("#sex").select_option("female")
    page.locator("#cond_pernicious_anemia").check()
    # Red flags first, each answered; then symptoms are added by name, not scrolled for.
    flags = page.locator(".red-flag-block input[value=no]")
    assert flags.count() >= 5
    for i in range(flags.count()):
        flags.nth(i).check()
    expect(page.locator("tr[data-symptom]:visible")).to_have_count(0)
    search = page.locator("#symptom-search")
    search.fill("Paraesthesia")
    search.press("Enter")
    expect(page.locator("#sym_paresthesia_onset")).to_be_focused()
    expect(page.locator("#sym_paresthesia")).to_be_checked()
    page.locator("#sym_paresthesia_onset").select_option("gradual")
    page.locator("#sym_paresthesia_weeks").fill("20")
    search.fill("weak")  # more than one match: says so, adds nothing
    search.press("Enter")
    expect(page.locator("#symptom-search-status")).to_contain_text("pick one")
    search.fill("poor balance")  # the plain name works too
    search.press("Enter")
    expect(page.locator("#sym_balance_problems")).to_be_checked()
    expect(page.locator("tr[data-symptom]:visible")).to_have_count(2)
    page.locator("#lab_total_b12_value").fill("120")
    page.locator("#lab_total_b12_unit").select_option("pmol/L")
    week_ago = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    page.locator("#lab_total_b12_date").fill(week_ago)
    shot(page, "clinician-form-filled")
    page.get_by_role("button", name="Assess").click()

    expect(page.locator("section.banner h1")).to_contain_text("Deficiency status")
    expect(page.locator("h1")).to_have_count(1)
    pathway = page.locator("svg.pathway")
    expect(pathway).to_be_visible()
    expect(pathway.locator("g.step.current")).to_have_count(1)
    assert page.locator("table.schedule tbody tr").count() >= 2
    recovery = page.locator("svg.recovery")
    expect(recovery).to_be_visible()
    assert recovery.locator("g.milestone circle").count() == 4  # sensory and balance ones
    # The action first: "Do now" right under the banner, above the fold of a laptop.
    do_now = page.locator("section.do-now")
    expect(do_now).to_be_in_viewport()
    expect(do_now).to_contain_text("Hydroxocobalamin 1 mg IM")
    expect(do_now).to_contain_text("first dose")
    box = do_now.bounding_box()
    assert box is not None and box["y"] < page.locator("svg.pathway").bounding_box()["y"]  # type: ignore[index]
    # The evidence is one click away: differential, diet and sources are folded.
    expect(page.locator("table.differential")).to_be_hidden()
    page.locator("summary", has_text="Differential diagnosis").click()
    assert page.locator("table.differential tbody tr").count() > 0
    page.locator("summary", has_text="Sources").click()
    sources = page.locator("section.sources ol li a[href]")
    assert sources.count() > 0
    expect(page.locator("table").filter(has_text="Total")).not_to_have_count(0)
    shot(page, "clinician-result")

    button = page.locator("form[action='/clinician/schedule.ics'] button[type=submit]")
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename.endswith(".ics")
    content = Path(download.path()).read_text(encoding="utf-8")
    assert content.startswith("BEGIN:VCALENDAR")
    assert "VEVENT" in content

    page.emulate_media(media="print")
    expect(page.locator("header.site")).to_be_hidden()
    expect(page.locator("form[action='/clinician/schedule.ics']")).to_be_hidden()
    expect(page.locator("section.do-now")).to_be_visible()
    expect(page.locator("svg.pathway")).to_be_hidden()
    shot(page, "clinician-result-print")
    pdf = page.pdf(format="A4")
    (SCREENSHOTS / "clinician-result-print.pdf").write_bytes(pdf)
    pages = pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages")
    assert pages == 1, f"the clinician summary prints on {pages} pages (it was 7)"
    page.emulate_media(media="screen")
    expect(page.locator("header.site")).to_be_visible()

    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the clinician result scrolls sideways on a phone"
    shot(page, "clinician-result-phone")
    tab.assert_no_errors()


UNLABELLED_CONTROLS = """
() => Array.from(document.querySelectorAll("input, select, textarea"))
  .filter((el) => el.type !== "hidden")
  .filter((el) => {
    const byFor = el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
    return !(byFor || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby"));
  })
  .map((el) => el.outerHTML.slice(0, 120))
"""


@pytest.mark.parametrize("path", ["/check", "/clinician"])
def test_accessibility_basics(tab: Tab, path: str) -> None:
    page = tab.page
    page.goto(path)
    controls = page.locator("input:not([type=hidden]), select, textarea").count()
    assert controls > 10
    unlabelled = page.evaluate(UNLABELLED_CONTROLS)
    assert unlabelled == [], f"controls without a label on {path}: {unlabelled}"
    expect(page.locator("h1")).to_have_count(1)
    assert page.locator("html").get_attribute("lang"), "html has no lang"

    page.keyboard.press("Tab")
    focused = page.evaluate(
        "[document.activeElement.className, document.activeElement.textContent.trim()]"
    )
    assert focused == ["skip", "Skip to content"]
    expect(page.locator("a.skip")).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()

    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), f"{path} scrolls sideways on a phone"
    shot(page, f"a11y{path.replace('/', '-')}-phone")
    tab.assert_no_errors()


def test_a_missing_page_is_a_page(tab: Tab) -> None:
    """A mistyped address in a browser is a page with a title, a language and a way on
    (it was a line of JSON), and axe-core finds nothing on it."""
    page = tab.page
    response = page.goto("/no-such-page")
    assert response is not None and response.status == 404
    expect(page).to_have_title("Page not found · b12dx")
    assert page.locator("html").get_attribute("lang") == "en-GB"
    expect(page.locator("h1")).to_have_text("Page not found")
    expect(page.get_by_role("link", name="start page")).to_have_attribute("href", "/")
    shot(page, "not-found")
    tab.errors = [e for e in tab.errors if "404" not in e]
    tab.assert_no_errors()


# -- follow-up: sign in, add a patient, record through the forms -----------------------

NURSE, NURSE_PASSWORD = "nurse.browser", "a long enough password"


@pytest.fixture(scope="module")
def followup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | NotReady]:
    """A server that requires sign-in (as beyond localhost), on its own database, with one
    practice and one user made by the accounts commands."""
    data = tmp_path_factory.mktemp("followup")
    db = f"sqlite:///{data / 'followup.sqlite3'}"
    env = _env(data)
    for argv, stdin in (
        (["practice", "add", "Browser Surgery"], None),
        (["user", "add", NURSE, "--practice", "Browser Surgery", "--password-stdin"],
         NURSE_PASSWORD + "\n"),
    ):  # fmt: skip
        done = subprocess.run(
            [*b12dx_command(), *argv, "--db", db],
            input=stdin,
            text=True,
            capture_output=True,
            env=env,
        )
        assert done.returncode == 0, done.stderr
    with _started("followup-server", env, "--require-login", "--db", db) as url:
        yield url


@pytest.fixture
def followup_url(followup_server: str | NotReady) -> str:
    return ready("followup-server", followup_server)


def test_followup_sign_in_add_a_patient_and_record_through_the_forms(
    browser: Browser, followup_url: str
) -> None:
    context = browser.new_context(base_url=followup_url, viewport=DESKTOP, bypass_csp=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    tab = Tab(page)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
    try:
        page.goto("/patients")
        expect(page).to_have_url(f"{followup_url}/login?next=%2Fpatients")
        expect(page.locator("h1")).to_have_text("Sign in")
        type_into(page, "#username", NURSE)
        type_into(page, "#password", NURSE_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Patients")
        expect(page.locator("header.site .who")).to_contain_text("Browser Surgery")
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["__Host-b12dx_session"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"

        page.locator("#name").fill("Mary Browser")
        page.locator("#birth_date").fill("1958-03-02")
        page.locator("#sex").select_option("female")
        page.locator("#diet").select_option("omnivore")  # chosen, never a default
        tick(page, "#cond_pernicious_anemia")
        shot(page, "followup-patients")
        page.get_by_role("button", name="Add patient").click()
        expect(page.locator("h1")).to_have_text("Mary Browser")
        expect(page.locator("p.notice")).to_have_text("Patient added.")

        # A lab result: the unit picker offers the chosen test's units only. Each form
        # is opened by its name (the page keeps them folded, one at a time).
        page.locator("#record-lab > summary").click()
        page.locator("#lab-test").select_option("total_b12")
        expect(page.locator("#lab-unit optgroup[data-test='mma']")).to_be_hidden()
        page.locator("#lab-value").fill("110")
        page.locator("#lab-unit").select_option("pg/mL")
        page.get_by_role("button", name="Save lab result").click()
        expect(page.locator("p.notice")).to_have_text("Lab result saved.")
        expect(page.locator("#labs ul.latest")).to_contain_text("110 pg/mL")
        page.locator("#labs details.history > summary").click()  # the trend, folded
        chart = page.locator("figure[data-test='total_b12'] svg.trend")
        expect(chart).to_be_visible()
        expect(chart.locator("g.threshold")).to_have_count(2)
        expect(chart.locator("g.point")).to_have_count(1)
        expect(page.locator("table.lab-table").first).to_contain_text("110 pg/mL")

        # A dose, with the current treatment's drug, dose and route filled in.
        page.locator("#record-dose > summary").click()
        expect(page.locator("#dose-dose")).to_have_value("1 mg")
        page.locator("#dose-batch").fill("AB1234")  # batch and site: typed or "not recorded"
        tick(page, "#dose-site-none")
        page.get_by_role("button", name="Save dose").press("Enter")
        expect(page.locator("p.notice")).to_have_text("Dose saved.")
        expect(page.locator("#doses")).to_contain_text(f"hydroxocobalamin 1 mg IM, by {NURSE}")

        # A symptom rating, by keyboard.
        page.locator("#record-rating > summary").click()
        page.locator("#rating-symptom").select_option("paresthesia")
        tick(page, "#rating-moderate")
        page.get_by_role("button", name="Save rating").press("Enter")
        expect(page.locator("p.notice")).to_have_text("Symptom rating saved.")
        ratings = page.locator("table.ratings-table")
        expect(ratings).to_contain_text("Pins and needles (tingling)")
        expect(ratings).to_contain_text("moderate")
        expect(page.locator("svg.ratings g.rating-moderate")).to_have_count(1)

        expect(page.locator("#audit")).to_contain_text(NURSE)
        expect(page.locator("h1")).to_have_count(1)
        assert page.evaluate(UNLABELLED_CONTROLS) == []
        shot(page, "followup-timeline")
        page.set_viewport_size(PHONE)
        assert no_horizontal_scroll(page), "the timeline scrolls sideways on a phone"
        shot(page, "followup-timeline-phone")
        page.set_viewport_size(DESKTOP)

        page.get_by_role("button", name="Sign out").click()
        expect(page.locator("p.notice")).to_have_text("You are signed out.")
        page.goto("/patients")
        expect(page.locator("h1")).to_have_text("Sign in")
        tab.assert_no_errors()
    finally:
        context.close()


def test_the_screening_report_is_accessible(tab: Tab, tmp_path: Path) -> None:
    """The analyst's report (a file, no server): axe-core finds nothing on a phone or a
    desktop, and it does not scroll sideways on a phone."""
    data, out = tmp_path / "synthetic", tmp_path / "screened"
    for argv in (
        ["synth", "--patients", "300", "--out", str(data)],
        ["screen", str(data), "--out", str(out)],
    ):
        done = subprocess.run([*b12dx_command(), *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    page = tab.page
    page.goto((out / "report.html").as_uri())
    expect(page.locator("h1")).to_have_count(1)
    # The breakdown by practice: its funnel plot drawn, the other gaps' one click away.
    expect(page.locator("#by-site")).to_be_visible()
    expect(page.locator("svg[aria-labelledby^='funnel-0'] circle")).not_to_have_count(0)
    page.locator("summary", has_text="Funnel plot").first.click()
    expect(page.locator("svg[aria-labelledby^='funnel-1']")).to_be_visible()
    shot(page, "screening-report")
    page.set_viewport_size(PHONE)
    assert no_horizontal_scroll(page), "the screening report scrolls sideways on a phone"
    shot(page, "screening-report-phone")
