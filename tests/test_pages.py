"""The HTML pages in-process: forms become records, the engine decides, pages show it."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from b12dx import examples
from b12dx.knowledge import load_knowledge
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings

# The clinician's pages as `b12dx serve` gives them on loopback: sign-in off.
LOGIN_OFF = FollowupSettings(require_login=False)

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(followup_settings=LOGIN_OFF))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def red_flags(answer: str = "no", **answers: str) -> dict[str, str]:
    """The clinician form's red-flag block, every one answered (``answer`` unless named)."""
    return {
        f"sym_{sid}": answers.get(sid, answer)
        for sid, s in load_knowledge().symptoms.items()
        if s.group == "red_flag"
    }


def banner(html: str) -> str:
    match = re.search(r'class="banner urgency-([a-z_]+)[ "]', html)
    assert match, "no urgency banner"
    return match.group(1)


async def test_landing_and_forms_render(client) -> None:
    for path in ("/", "/check", "/clinician", "/docs"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.text.count("<h1") == 1
    check = (await client.get("/check")).text
    assert "Pins and needles (tingling)" in check  # the seeds' words, from the knowledge base
    assert "Glucophage" in check  # everyday medicine names


async def test_a_red_flag_answer_goes_straight_to_emergency_advice(client) -> None:
    r = await client.post("/check", data={"rf_ascending": "yes"})
    assert r.status_code == 200
    assert banner(r.text) == "emergency"
    assert 'href="tel:999"' in r.text and "A&amp;E" in r.text


async def test_typical_b12_case_gets_a_same_day_visit_and_plain_advice(client) -> None:
    form = {
        "sym_heavy_limbs": "yes",
        "sym_paresthesia": "yes",
        "sym_gait_ataxia": "yes",
        "onset": "gradual",
        "duration_value": "6",
        "duration_unit": "months",
        "progressing": "yes",
        "age_years": "67",
        "sex": "female",
        "diet": "omnivore",
        "med_metformin": "yes",
        "med_metformin_long": "yes",
        "lab_total_b12_value": "150",
        "lab_total_b12_unit": "pg/mL",
        "rf_none": "yes",
        "confirmed": "yes",
    }
    r = await client.post("/check", data=form)
    assert r.status_code == 200
    assert banner(r.text) == "urgent"
    assert "See a doctor today" in r.text
    assert "Do not take folic acid on its own" in r.text
    assert "Beef liver" in r.text and "70.7" in r.text
    assert "Summary to take to your doctor" in r.text and "Metformin" in r.text


async def test_a_missing_age_asks_again_without_losing_answers(client) -> None:
    r = await client.post("/check", data={"sym_paresthesia": "yes", "rf_none": "yes"})
    assert r.status_code == 422
    assert '<a href="#age_years">Enter your age in years, for example 67</a>' in r.text
    assert "is required" not in r.text and "age_years:" not in r.text
    assert re.search(r'id="sym_paresthesia"[^>]*checked', r.text)


async def test_clinician_result_shows_pathway_schedule_chart_and_sources(client) -> None:
    today = dt.date.today()
    form = {
        "age_years": "58",
        "sex": "female",
        "diet": "omnivore",
        "as_of": today.isoformat(),
        "profile": "nice-ng239",
        "cond_pernicious_anemia": "yes",
        "sym_paresthesia": "yes",
        "sym_paresthesia_onset": "gradual",
        "sym_paresthesia_weeks": "20",
        "sym_balance_problems": "yes",
        "lab_total_b12_value": "120",
        "lab_total_b12_unit": "pmol/L",
        "lab_total_b12_date": (today - dt.timedelta(days=7)).isoformat(),
        **red_flags(),
    }
    r = await client.post("/clinician", data=form)
    assert r.status_code == 200, r.text[:500]
    html = r.text
    assert banner(html) == "urgent"
    assert html.count('class="step current"') == 1
    assert 'class="schedule"' in html and "every 2 days" in html
    # Tingling and poor balance: the sensory, balance and overall milestones, no motor ones.
    assert html.count('class="milestone"') == 4
    assert 'href="https://www.nice.org.uk/guidance/ng239"' in html
    # Guidelines first; the consumer articles under their own heading, said to be for
    # the patients' wording and not clinical evidence.
    sources = html[html.index("Guidelines and evidence") :]
    wording = sources.index("Patient information articles")
    assert sources.index("nice-ng239") < wording < sources.index("seed-leg-weakness")
    assert "not as clinical evidence" in sources
    record = re.search(r'name="record_json" value="([^"]+)"', html)
    assert record
    ics = await client.post(
        "/clinician/schedule.ics",
        data={"record_json": record.group(1).replace("&#34;", '"'), "profile": "nice-ng239"},
    )
    assert ics.status_code == 200
    assert ics.headers["content-type"].startswith("text/calendar")
    assert ics.text.startswith("BEGIN:VCALENDAR") and ics.text.count("BEGIN:VEVENT") > 40


async def test_clinician_json_box_takes_a_contract_record(client) -> None:
    record = examples.load("nitrous_oxide")
    record["as_of"] = "2026-11-21"
    r = await client.post("/clinician", data={"record_json": json.dumps(record)})
    assert r.status_code == 200
    assert "Stop nitrous oxide" in r.text
    bad = await client.post("/clinician", data={"record_json": "{oops"})
    assert bad.status_code == 422 and "record_json" in bad.text


async def test_clinician_form_errors_name_the_field(client) -> None:
    r = await client.post(
        "/clinician", data={"age_years": "40", "lab_mma_value": "abc", **red_flags()}
    )
    assert r.status_code == 422
    assert '<a href="#lab_mma_value">' in r.text and "not a number" in r.text
    assert "Enter the methylmalonic acid (MMA) result as a number" in r.text


async def test_clinician_form_needs_an_answer_to_every_red_flag(client) -> None:
    """None is assumed absent: an unanswered red flag is named and the form comes back
    with what was entered; a 'yes' is an emergency, a 'no' is not a symptom."""
    answers = red_flags()
    skipped = next(iter(answers))
    del answers[skipped]
    form = {"age_years": "40", "lab_total_b12_value": "120", "lab_total_b12_unit": "pmol/L"}
    r = await client.post("/clinician", data={**form, **answers})
    assert r.status_code == 422
    assert f'<a href="#{skipped}_yes">Answer yes or no for' in r.text
    assert 'value="120"' in r.text
    assert r.text.count("Answer yes or no") == 2  # in the summary and above the answer

    r = await client.post("/clinician", data={**form, **red_flags()})
    assert r.status_code == 200 and banner(r.text) != "emergency"
    r = await client.post("/clinician", data={**form, **red_flags(**{skipped[4:]: "yes"})})
    assert r.status_code == 200 and banner(r.text) == "emergency"


async def test_the_check_tells_a_patient_each_step_in_words_that_fit_it(client) -> None:
    """Difficulty swallowing, getting worse, at 72: the patient is told about the urgent
    endoscopy referral (NG12), not the generic 'blood specialist today' of the step id."""
    form = {
        "sym_swallowing_difficulty": "yes",
        "onset": "gradual",
        "duration_value": "8",
        "duration_unit": "weeks",
        "progressing": "yes",
        "age_years": "72",
        "sex": "male",
        "diet": "omnivore",
        "rf_none": "yes",
        "confirmed": "yes",
    }
    r = await client.post("/check", data=form)
    assert r.status_code == 200
    assert banner(r.text) == "soon"
    assert "endoscopy" in r.text
    assert "blood specialist today" not in r.text


async def test_clinician_result_prints_units_as_written(client) -> None:
    record = {
        "age_years": 60,
        "as_of": "2026-11-21",
        "labs": [{"test": "mma", "value": 0.52, "unit": "umol/L", "date": "2026-11-18"}],
    }
    r = await client.post("/clinician", data={"record_json": json.dumps(record)})
    assert r.status_code == 200
    row = re.search(r"<tr class=\"band-[a-z]+\"><th scope=\"row\">Methylmalonic.*?</tr>", r.text)
    assert row, "no MMA row"
    assert row.group(0).count("µmol/L") == 1 and "umol" not in row.group(0)
    form = await client.get("/clinician")
    assert '<option value="umol/L" >µmol/L</option>' in form.text.replace("  ", " ")


# -- the clinician form: no form lets a GP record the wrong thing ----------------------


def error_links(html: str) -> dict[str, str]:
    """The error summary's links: the id each goes to, and its words."""
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S)
    assert summary, "no error summary"
    return dict(re.findall(r'<a href="#([^"]+)">([^<]+)</a>', summary.group(0)))


async def test_clinician_errors_come_all_at_once_in_words_each_linked_to_its_box(client) -> None:
    """Two red flags unanswered, no age, an unreadable result, a result without its unit
    and an impossible eGFR: every one in one submit, in a GP's words, each linked to the
    box to fix (which says so too), nothing of the record's paths or the engine's ids."""
    answers = red_flags()
    del answers["sym_bladder_dysfunction"], answers["sym_back_pain"]
    form = {
        **answers,
        "lab_mma_value": "0,4",
        "lab_total_b12_value": "120",
        "cond_chronic_kidney_disease": "yes",
        "cond_chronic_kidney_disease_egfr": "900",
        "med_metformin": "yes",
        "med_metformin_months": "36",
    }
    r = await client.post("/clinician", data=form)
    assert r.status_code == 422
    links = error_links(r.text)
    assert set(links) == {
        "sym_bladder_dysfunction_yes",
        "sym_back_pain_yes",
        "age_years",
        "lab_mma_value",
        "lab_total_b12_unit",
        "cond_chronic_kidney_disease_egfr",
    }, links
    assert links["sym_bladder_dysfunction_yes"].startswith(
        "Answer yes or no for new bladder dysfunction"
    )
    assert links["age_years"] == "Enter the age in years, for example 67"
    assert "write 0.4" in links["lab_mma_value"]
    assert links["lab_total_b12_unit"].startswith("Choose the unit of the total serum vitamin B12")
    assert links["cond_chronic_kidney_disease_egfr"] == "The eGFR must be 200 or less"
    for box in links:
        assert f'id="{box}-error"' in r.text, box
        assert re.search(rf'id="{box}"[^>]*aria-invalid="true"', r.text), box
    for jargon in ("symptoms.", "labs.", "labs[", "conditions[", "accepted:", "age_years:"):
        assert jargon not in r.text.split('<form method="post"')[0], jargon
    assert 'value="36"' in r.text and 'value="120"' in r.text  # what was typed comes back


async def test_clinician_form_asks_in_the_order_a_history_is_taken(client) -> None:
    """About the patient (age, sex, pregnancy), then what they present with (red flags
    first), then history, medicines and diet, then the results last."""
    html = (await client.get("/clinician")).text
    order = [
        'id="age_years"',
        'id="sex"',
        'id="pregnant"',
        'id="sym_bladder_dysfunction_yes"',
        'id="sym_paresthesia"',
        'id="cond_pernicious_anemia"',
        'id="med_metformin"',
        'id="diet"',
        'id="lab_total_b12_value"',
        'id="dose_0_date"',
    ]
    at = [html.index(box) for box in order]
    assert at == sorted(at), [
        box for box, _ in sorted(zip(order, at, strict=True), key=lambda x: x[1])
    ]


async def test_new_patient_gives_an_empty_form(client) -> None:
    """A link on the form and on the result to an empty form, whatever was entered."""
    form = (await client.get("/clinician")).text
    assert '<a href="/clinician">New patient</a>' in form
    r = await client.post("/clinician", data={**TYPICAL_CLINICIAN, **red_flags()})
    assert r.status_code == 200
    assert '<a href="/clinician">New patient</a>' in r.text
    empty = (await client.get("/clinician")).text
    assert "checked" not in empty.replace('value="no" aria', "")
    assert not re.search(r'id="(age_years|lab_total_b12_value)"[^>]*value="[^"]', empty)


TYPICAL_CLINICIAN = {
    "age_years": "58",
    "sex": "female",
    "cond_pernicious_anemia": "yes",
    "med_metformin": "yes",
    "med_metformin_months": "36",
    "sym_paresthesia": "yes",
    "sym_paresthesia_onset": "gradual",
    "lab_total_b12_value": "120",
    "lab_total_b12_unit": "pmol/L",
}


async def test_clinician_result_prints_with_a_patient_reference_and_the_dated_schedule(
    client,
) -> None:
    """The print keeps the treatment with its dated schedule, and a reference box the GP
    types into (printed, sent with the calendar only, never stored)."""
    r = await client.post("/clinician", data={**TYPICAL_CLINICIAN, **red_flags()})
    html = r.text
    ref = re.search(r'<input id="patient-ref"[^>]*>', html)
    assert ref and 'name="reference"' in ref.group(0) and 'form="ics-form"' in ref.group(0)
    assert 'value="' not in ref.group(0)  # nothing is filled in from anywhere
    assert '<label for="patient-ref">Patient reference</label>' in html
    assert '<section class="panel print-keep" id="treatment">' in html
    schedule = re.search(r'<table class="schedule">.*?</table>', html, re.S)
    today = dt.date.today()
    assert schedule and today.isoformat() in schedule.group(0)
    assert "loading" in schedule.group(0) and "maintenance" in schedule.group(0)


async def test_clinician_result_gives_a_few_lines_for_the_notes(client) -> None:
    """Status, urgency, the results with units, the plan with its first dose, the review:
    the assessment's own words, a few lines, shown for browsers without a clipboard."""
    r = await client.post("/clinician", data={**TYPICAL_CLINICIAN, **red_flags()})
    text = re.search(r'<pre id="notes-text">(.*?)</pre>', r.text, re.S)
    assert text, "no text for the notes"
    lines = text.group(1).replace("&#39;", "'").splitlines()
    assert 4 <= len(lines) <= 8, lines
    first_dose = dt.date.today().strftime("%d %b %Y")
    assert lines[1].startswith("Status: confirmed. Urgency: urgent (")
    assert ".)" not in lines[1], "the urgency's words end the line once"
    symptoms = next(line for line in lines if line.startswith("Symptoms: "))
    assert "nerve involvement" in symptoms, "the reason for the plan is in the notes"
    assert "Total serum vitamin B12 (cobalamin) 120 pmol/L (deficient)" in text.group(1)
    plan = next(line for line in lines if line.startswith("Plan: "))
    assert plan.startswith(f"Plan: hydroxocobalamin 1 mg IM, first dose {first_dose}")
    assert any(line.startswith("Review: ") for line in lines)
    assert '<button type="button" class="copy-notes" data-copy="notes-text" hidden>' in r.text
