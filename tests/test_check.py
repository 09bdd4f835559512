"""The patient check as a person answers it (server side; tests/test_browser.py walks it
in Chromium): a red flag ends it at any step with only the action, a red-flag answer is
explicit, errors are in plain words linked to the answer, the answers are checked before
the result, and the result says where to go and how."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from b12dx.web.app import create_app

pytestmark = pytest.mark.asyncio

TYPICAL = {
    "rf_none": "yes",
    "sym_paresthesia": "yes",
    "onset": "gradual",
    "duration_value": "3",
    "duration_unit": "months",
    "age_years": "45",
    "sex": "female",
    "med_metformin": "yes",
    "med_metformin_long": "yes",
}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        yield c


def banner(html: str) -> str:
    found = re.search(r'class="banner urgency-([a-z_]+)"', html)
    assert found, "no banner"
    return found.group(1)


async def test_a_sudden_onset_ends_the_check_at_that_step(client) -> None:
    """Tingling that came on suddenly (step "When it started") is a red flag (NICE NG128):
    the check stops there, before age, medicines and results are asked."""
    answers = {"rf_none": "yes", "sym_numbness": "yes", "onset": "sudden"}
    triage = await client.post("/check/triage", data=answers)
    assert triage.json() == {"emergency": True}
    calm = await client.post("/check/triage", data=answers | {"onset": "gradual"})
    assert calm.json() == {"emergency": False}
    r = await client.post("/check", data=answers)
    assert r.status_code == 200 and banner(r.text) == "emergency"


async def test_the_emergency_page_holds_only_the_action(client) -> None:
    r = await client.post("/check", data={"rf_confusion": "yes"})
    html = r.text
    assert banner(html) == "emergency"
    assert '<a class="call-button" href="tel:999">Call 999</a>' in html
    assert "A&amp;E" in html and "Do not drive yourself" in html and "112" in html
    assert "What to tell them" in html and "Sudden confusion" in html
    for absent in ("Foods that contain B12", "supplement", "Tests to ask", "testing"):
        assert absent not in html, absent


@pytest.mark.parametrize("field", ["rf_numbness", "rf_confusion"])
async def test_sudden_numbness_and_confusion_are_asked_first(client, field) -> None:
    form = (await client.get("/check")).text
    first_step = form.split('data-step-name="Emergency signs"')[1].split("</fieldset>")[0]
    assert f'id="{field}"' in first_step and 'id="rf_none"' in first_step
    r = await client.post("/check", data={field: "yes"})
    assert banner(r.text) == "emergency"


async def test_the_red_flag_question_needs_an_explicit_answer(client) -> None:
    answers = {k: v for k, v in TYPICAL.items() if k != "rf_none"}
    r = await client.post("/check", data=answers)
    assert r.status_code == 422
    assert (
        '<a href="#rf_none">Tick what is happening to you now, or tick &#39;None of these&#39;</a>'
        in r.text
    )
    assert 'data-start-step="0"' in r.text, "the form opens at the step to answer"
    assert re.search(r'id="sym_paresthesia"[^>]*checked', r.text), "answers kept"


async def test_errors_are_plain_words_linked_to_the_answer(client) -> None:
    r = await client.post(
        "/check",
        data=TYPICAL | {"age_years": "sixty", "lab_total_b12_value": "180"},
    )
    assert r.status_code == 422
    html = r.text
    assert "There is a problem" in html
    assert '<a href="#age_years">Enter your age as a number of years, for example 67</a>' in html
    assert 'href="#lab_total_b12_unit">Choose the unit printed beside your total' in html
    assert 'id="age_years-error"' in html and 'aria-invalid="true"' in html
    for jargon in ("age_years:", "labs[0]", "is required"):
        assert jargon not in html, jargon


async def test_the_answers_are_checked_before_the_result(client) -> None:
    check = await client.post("/check", data=TYPICAL)
    assert check.status_code == 200 and "<h1>Check your answers</h1>" in check.text
    assert "Pins and needles" in check.text and "45 years old" in check.text
    assert "Metformin (for 2 years or more)" in check.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', check.text))
    assert hidden == TYPICAL, "every answer carried, nothing stored"
    # Change: back to that step with every answer kept.
    step = re.search(
        r'name="action" value="(change:\d+)"[^>]*>Change<span class="visually-hidden"> about you',
        check.text,
    )
    assert step
    back = await client.post("/check", data=hidden | {"action": step.group(1)})
    assert f'data-start-step="{step.group(1).split(":")[1]}"' in back.text
    assert 'value="45"' in back.text
    result = await client.post("/check", data=hidden | {"confirmed": "yes"})
    assert banner(result.text) == "urgent"
    assert "Call your GP surgery today and ask for an appointment today" in result.text
    assert "111" in result.text


async def test_enter_cannot_skip_the_medicines_any_more(client) -> None:
    """A 45-year-old with tingling on metformin: the answers given before the age (and
    those after) all count, so the result is a same-day visit, not "routine"."""
    r = await client.post("/check", data=TYPICAL | {"confirmed": "yes"})
    assert banner(r.text) == "urgent"


async def test_no_supplement_before_the_blood_test(client) -> None:
    r = await client.post("/check", data=TYPICAL | {"confirmed": "yes"})
    what_to_do = r.text.split("<h2>What to do</h2>")[1].split("</section>")[0]
    assert "supplement" not in what_to_do.lower()
    assert "Summary to take to your doctor" in r.text
    assert "(paraesthesia)" in r.text or "(paresthesia)" in r.text


async def test_what_is_not_a_b12_question_is_sent_where_it_belongs(client) -> None:
    # A seizure with no date, ticked among the symptoms: the check stops with the action
    # and says in plain words where a first seizure goes (triage.yaml elsewhere).
    r = await client.post(
        "/check", data={"rf_none": "yes", "sym_seizures": "yes", "age_years": "58"}
    )
    assert banner(r.text) == "emergency"
    assert "A first fit or seizure needs emergency help now" in r.text
    assert "supplement" not in r.text.lower()
    # Breathlessness that came on suddenly: never self care, and not a B12 question.
    form = {"rf_none": "yes", "sym_shortness_of_breath": "yes", "onset": "sudden"}
    r = await client.post("/check", data=form | {"age_years": "45", "duration_value": "0"})
    assert banner(r.text) == "emergency"
    assert "not a question for a B12 test" in r.text


async def test_the_crisis_help_is_shown_and_worded_for_the_age(client) -> None:
    base = {"rf_none": "yes", "sym_irritability": "yes", "onset": "gradual"}
    base |= {"duration_value": "8", "duration_unit": "weeks", "confirmed": "yes"}
    adult = (await client.post("/check", data=base | {"age_years": "40"})).text
    assert "If you need help now" in adult and "116 123" in adult
    toddler = (await client.post("/check", data=base | {"age_years": "2"})).text
    assert "If you need help now" in toddler and "A baby or child" in toddler
    assert "116 123" not in toddler and "Samaritans" not in toddler


async def test_nothing_to_go_on_is_not_reassured(client) -> None:
    form = {"rf_none": "yes", "age_years": "30", "confirmed": "yes"}
    r = await client.post("/check", data=form)
    assert banner(r.text) == "routine"
    assert "Not enough to assess" in r.text and "not a reassurance" in r.text


async def test_an_engine_error_links_to_the_answer_on_its_step(client) -> None:
    """A result the engine refuses (1.6 ng/L is no B12 a laboratory reports) comes back
    linked to that result's box, on the results step; not to step 1 with a dead link."""
    form = TYPICAL | {"lab_total_b12_value": "1.6", "lab_total_b12_unit": "ng/L"}
    r = await client.post("/check", data=form | {"has_results": "yes"})
    assert r.status_code == 422
    link = re.search(r'<a href="#([^"]+)">1.6 ng/L is not a result a laboratory reports', r.text)
    assert link and link.group(1) == "lab_total_b12_value"
    assert f'id="{link.group(1)}"' in r.text
    start = int(re.search(r'data-start-step="(\d+)"', r.text).group(1))
    names = re.findall(r'class="step[^"]*" data-step-name="([^"]+)"', r.text)
    assert names[start] == "Blood test results"


async def test_change_comes_back_to_check_your_answers(client) -> None:
    check = await client.post("/check", data=TYPICAL)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', check.text))
    step = re.search(
        r'value="(change:\d+)"[^>]*>Change<span class="visually-hidden"> about', check.text
    )
    assert step
    back = await client.post("/check", data=hidden | {"action": step.group(1)})
    assert "data-return" in back.text, "no way straight back to the answers"


async def test_the_patient_pages_offer_nothing_meant_for_clinicians(client) -> None:
    pages = [
        await client.get("/check"),
        await client.post("/check", data=TYPICAL),
        await client.post("/check", data=TYPICAL | {"confirmed": "yes"}),
        await client.post("/check", data={"rf_confusion": "yes"}),
    ]
    for page in pages:
        nav = page.text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
        for clinician in ("/clinician", "/docs", "/patients", "/clinic"):
            assert f'href="{clinician}"' not in nav, (page.url, clinician)


async def test_the_check_asks_a_person_only_what_a_person_can_tell(client) -> None:
    """Reflexes and vibration sense are found by a doctor: never asked in the check. A
    child's development is asked of a child only (its ages on the page); a fit, and how
    the symptoms behave (after exercise, coming and going), of everyone, not behind an
    area a person would not choose."""
    html = (await client.get("/check")).text
    assert 'id="sym_reduced_reflexes"' not in html and 'id="area_reflexes"' not in html
    assert 'id="sym_loss_of_vibration_sense"' not in html
    child = re.search(
        r'data-ages="([^"]+)"><input type="checkbox" id="sym_developmental_delay"', html
    )
    assert child and "adult" not in child.group(1).split()
    assert re.search(r'<div class="check"><input type="checkbox" id="sym_seizures"', html)
    for everyone in ("other_cause", "children"):
        assert f'id="area_{everyone}"' not in html, everyone
    assert 'id="sym_swelling_or_bruising"' in html
    assert 'id="sym_relapsing_remitting_course"' in html
    # A new fit today, and back pain with legs getting weaker, are emergency questions.
    assert 'id="rf_seizure"' in html and 'id="rf_back_weakness"' in html


async def test_back_pain_with_legs_getting_weaker_is_an_emergency(client) -> None:
    r = await client.post("/check", data={"rf_back_weakness": "yes"})
    assert r.status_code == 200 and banner(r.text) == "emergency"


async def test_a_fit_weeks_ago_in_an_adult_is_seen_by_a_specialist(client) -> None:
    """Not an emergency (it is not today), and not lost: NG217, within 2 weeks."""
    form = TYPICAL | {"sym_seizures": "yes", "onset": "sudden", "duration_value": "3",
                      "duration_unit": "weeks", "confirmed": "yes"}  # fmt: skip
    r = await client.post("/check", data=form)
    assert banner(r.text) in ("soon", "urgent"), banner(r.text)


async def test_every_symptom_a_person_can_tell_is_asked_somewhere(client, kb) -> None:
    """Over the whole vocabulary: each symptom a person can report is a question of the
    check (on a step, or recorded by an emergency question), so adapting the check never
    drops one; only what a doctor finds on examination is left to the clinician form."""
    html = (await client.get("/check")).text
    by_question = {sid for q in kb.red_flag_questions.values() for sid in (q.symptom, *q.also)}
    for s in kb.symptoms.values():
        found_by = s.found_by or kb.symptom_groups[s.group].found_by
        asked = f'id="sym_{s.id}"' in html or s.id in by_question
        assert asked == (found_by == "person") or (s.group == "red_flag" and asked), s.id
