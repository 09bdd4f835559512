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
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

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
START_TIMEOUT_S = 20.0
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b12dx() -> list[str]:
    script = Path(sys.executable).parent / "b12dx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "b12dx.cli.app"]


def _server_command(port: int, *extra: str) -> list[str]:
    return [*_b12dx(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]


@contextlib.contextmanager
def _server(name: str, env: dict[str, str], *extra: str) -> Iterator[str]:
    """``b12dx serve`` on a free loopback port until the block ends."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = SCREENSHOTS.parent / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            _server_command(port, *extra), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"the server exited with {proc.returncode} before answering:\n"
                        + log_path.read_text(errors="replace")[-2000:]
                    )
                try:
                    with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the server did not answer /api/v1/health within {START_TIMEOUT_S} s:\n"
                        + log_path.read_text(errors="replace")[-2000:]
                    )
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _env(data_dir: Path) -> dict[str, str]:
    # The server opens its follow-up database at start: keep it out of the user's data
    # directory.
    return {**os.environ, "B12DX_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server (``b12dx serve``) on a free loopback port, stopped at the end."""
    with _server("browser-server", _env(tmp_path_factory.mktemp("data"))) as url:
        yield url


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
    context = browser.new_context(base_url=base_url, viewport=DESKTOP, accept_downloads=True)
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


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def visible_steps(page: Page) -> int:
    return page.locator("form.stepper fieldset.step:visible").count()


def press_next(page: Page, step: int, total: int = 8) -> None:
    """Press Next with the keyboard; the next step, and only it, is shown, heading focused."""
    page.locator("button.next").press("Enter")
    expect(page.locator("p.progress")).to_have_text(f"Step {step} of {total}")
    assert visible_steps(page) == 1
    current = page.locator(f'fieldset.step[data-step="{step}"]')
    expect(current).to_be_visible()
    expect(current.locator("h2")).to_be_focused()


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
    expect(page.locator("p.progress")).to_have_text("Step 1 of 8")
    page.get_by_label("Weakness spreading up from your feet").check()
    page.locator("button.next").click()

    banner = page.locator("section.banner")
    expect(banner).to_have_class("banner urgency-emergency")
    expect(banner).to_contain_text("Call emergency services")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("section.panel.danger")).to_contain_text(
        "Weakness spreading up from your feet"
    )
    shot(page, "check-red-flag-emergency")
    tab.assert_no_errors()


def test_patient_check_typical_b12_case_by_keyboard(tab: Tab) -> None:
    page = tab.page
    page.goto("/check")
    expect(page.locator("p.progress")).to_have_text("Step 1 of 8")
    assert visible_steps(page) == 1
    expect(page.locator("button.back")).to_be_hidden()
    expect(page.locator("form.stepper button[type=submit]")).to_be_hidden()
    assert page.locator("input[data-red-flag]:checked").count() == 0

    press_next(page, 2)  # no red flags
    tick(page, "#sym_heavy_limbs")
    tick(page, "#sym_paresthesia")
    tick(page, "#sym_gait_ataxia")

    press_next(page, 3)
    tick(page, "#onset_gradual")
    type_into(page, "#duration_value", "6")
    page.locator("#duration_unit").select_option("months")
    tick(page, "#progressing_yes")

    press_next(page, 4)
    type_into(page, "#age_years", "67")
    page.locator("#sex").select_option("female")
    page.locator("#diet").select_option("omnivore")

    press_next(page, 5)
    tick(page, "#med_metformin")
    tick(page, "#med_metformin_long")

    press_next(page, 6)
    press_next(page, 7)
    press_next(page, 8)
    expect(page.locator("button.next")).to_be_hidden()
    type_into(page, "#lab_total_b12_value", "150")
    page.locator("#lab_total_b12_unit").select_option("pg/mL")
    shot(page, "check-typical-last-step")

    submit = page.locator("form.stepper button[type=submit]")
    expect(submit).to_be_visible()
    submit.press("Enter")

    banner = page.locator("section.banner")
    expect(banner).to_have_class("banner urgency-urgent")
    expect(banner).to_contain_text("See a doctor today")
    expect(page.locator("h1")).to_have_count(1)

    dont = page.locator("section.panel", has=page.locator("h2", has_text="What not to do"))
    expect(dont).to_contain_text("folic acid")
    foods = page.locator("section.panel", has=page.locator("h2", has_text="Foods that contain B12"))
    assert foods.locator("tbody tr").count() > 0
    summary = page.locator("section.summary")
    expect(summary.locator("h2")).to_have_text("Summary to take to your doctor")
    medicines = summary.locator("dt", has_text="Medicines").locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(medicines).to_contain_text("Metformin (2 years or more)")
    expect(summary.locator("button.print")).to_be_visible()
    shot(page, "check-typical-urgent-result")

    page.set_viewport_size(PHONE)
    expect(banner).to_be_visible()
    assert no_horizontal_scroll(page), "the result page scrolls sideways on a phone"
    shot(page, "check-typical-urgent-result-phone")
    tab.assert_no_errors()


def test_clinician_form_result_and_calendar(tab: Tab) -> None:
    page = tab.page
    page.goto("/clinician")
    page.locator("#age_years").fill("58")
    page.locator("#sex").select_option("female")
    page.locator("#cond_pernicious_anemia").check()
    page.locator("#sym_paresthesia").check()
    page.locator("#sym_paresthesia_onset").select_option("gradual")
    page.locator("#sym_paresthesia_weeks").fill("20")
    page.locator("#sym_balance_problems").check()
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
    assert recovery.locator("g.milestone circle").count() >= 5
    assert page.locator("table.differential tbody tr").count() > 0
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
    expect(page.locator("svg.pathway")).to_be_visible()
    shot(page, "clinician-result-print")
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


# -- follow-up: sign in, add a patient, record through the forms -----------------------

NURSE, NURSE_PASSWORD = "nurse.browser", "a long enough password"


@pytest.fixture(scope="module")
def followup_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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
            [*_b12dx(), *argv, "--db", db], input=stdin, text=True, capture_output=True, env=env
        )
        assert done.returncode == 0, done.stderr
    with _server("followup-server", env, "--require-login", "--db", db) as url:
        yield url


def test_followup_sign_in_add_a_patient_and_record_through_the_forms(
    browser: Browser, followup_url: str
) -> None:
    context = browser.new_context(base_url=followup_url, viewport=DESKTOP)
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
        tick(page, "#cond_pernicious_anemia")
        shot(page, "followup-patients")
        page.get_by_role("button", name="Add patient").click()
        expect(page.locator("h1")).to_have_text("Mary Browser")
        expect(page.locator("p.notice")).to_have_text("Patient added.")

        # A lab result: the unit picker offers the chosen test's units only.
        page.locator("#lab-test").select_option("total_b12")
        expect(page.locator("#lab-unit optgroup[data-test='mma']")).to_be_hidden()
        page.locator("#lab-value").fill("110")
        page.locator("#lab-unit").select_option("pg/mL")
        page.get_by_role("button", name="Save lab result").click()
        expect(page.locator("p.notice")).to_have_text("Lab result saved.")
        chart = page.locator("figure[data-test='total_b12'] svg.trend")
        expect(chart).to_be_visible()
        expect(chart.locator("g.threshold")).to_have_count(2)
        expect(chart.locator("g.point")).to_have_count(1)
        expect(page.locator("table.lab-table").first).to_contain_text("110 pg/mL")

        # A dose, with the current treatment's drug, dose and route filled in.
        expect(page.locator("#dose-dose")).to_have_value("1 mg")
        page.get_by_role("button", name="Save dose").press("Enter")
        expect(page.locator("p.notice")).to_have_text("Dose saved.")
        expect(page.locator("#doses")).to_contain_text(f"hydroxocobalamin 1 mg IM, by {NURSE}")

        # A symptom rating, by keyboard.
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
