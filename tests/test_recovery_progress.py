"""Follow-up over time: the symptom ratings a clinic records, the baseline they give a
course, the milestones judged from them, and how the report, the clinician page and the
published schemas show them. The worked cases are vignettes 77-86; these tests pin the
rules' edges and the adapters."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from b12dx import assess, input_schema, output_schema
from b12dx.cli.app import main
from b12dx.models.assessment import Assessment
from b12dx.web.app import create_app
from b12dx.web.settings import FollowupSettings

# The clinician's pages as `b12dx serve` gives them on loopback: sign-in off.
LOGIN_OFF = FollowupSettings(require_login=False)

FIRST_DOSE = dt.date(2026, 2, 2)  # proximal power due 2026-04-18, neurological response 05-03


def _doses(until: str) -> list[dict[str, Any]]:
    out = []
    day = FIRST_DOSE
    while day <= dt.date.fromisoformat(until):
        out.append({"date": day.isoformat(), "drug": "hydroxocobalamin", "route": "im"})
        day += dt.timedelta(days=2)
    return out


def _record(as_of: str, ratings: list[tuple[str, str, str]], **fields: Any) -> dict[str, Any]:
    return {
        "as_of": as_of,
        "age_years": 62,
        "sex": "female",
        "symptoms": [{"id": "muscle_weakness", "onset": "gradual", "duration_weeks": 30}],
        "conditions": [{"id": "pernicious_anemia"}],
        "labs": [{"test": "total_b12", "value": 95, "unit": "ng/L", "date": "2026-01-28"}],
        "b12_treatment": _doses(min(as_of, "2026-05-01")),
        "symptom_ratings": [{"id": i, "date": d, "rating": r} for i, d, r in ratings],
        **fields,
    }


def _progress(a: Assessment) -> dict[str, str]:
    return {p.id: p.status for p in a.recovery_progress}


def test_all_milestone_with_one_symptom_improved_and_one_unrated_waits_for_ratings() -> None:
    a = assess(
        _record(
            "2026-04-25",
            [
                ("muscle_weakness", "2026-01-30", "moderate"),
                ("heavy_limbs", "2026-01-30", "moderate"),
                ("muscle_weakness", "2026-04-20", "mild"),
            ],
        )
    )
    assert _progress(a)["proximal_power"] == "not_rated"
    statuses = {x.id: x.status for x in a.recovery_progress[0].symptoms}
    assert statuses == {"muscle_weakness": "improved", "heavy_limbs": "not_rated"}


def test_any_milestone_with_one_symptom_unchanged_and_one_unrated_waits_for_ratings() -> None:
    a = assess(
        _record(
            "2026-05-10",
            [
                ("muscle_weakness", "2026-01-30", "moderate"),
                ("numbness", "2026-01-30", "moderate"),
                ("numbness", "2026-05-05", "moderate"),
            ],
        )
    )
    assert _progress(a)["neurological_response"] == "not_rated"
    assert "recovery_behind" not in [n.id for n in a.notes]


def test_any_milestone_with_every_symptom_unchanged_is_not_improved_and_flagged() -> None:
    a = assess(
        _record(
            "2026-05-10",
            [
                ("muscle_weakness", "2026-01-30", "moderate"),
                ("numbness", "2026-01-30", "mild"),
                ("muscle_weakness", "2026-05-05", "severe"),
                ("numbness", "2026-05-05", "mild"),
            ],
        )
    )
    assert _progress(a)["neurological_response"] == "not_improved"
    note = next(n for n in a.notes if n.id == "recovery_behind")
    assert "Neurological improvement under way (expected by 2026-05-03)" in note.text
    assert "weak muscles moderate on 2026-01-30, severe on 2026-05-05" in note.text
    assert "numbness mild on 2026-01-30, still mild on 2026-05-05" in note.text
    assert {"nice-ng239", "seed-leg-weakness", "savage-lindenbaum-1995"} <= set(note.sources)


def test_baseline_is_the_latest_rating_on_or_before_the_first_dose() -> None:
    # Rated severe last year and mild on the day of the first dose: the course began mild,
    # so a later mild rating is not an improvement.
    a = assess(
        _record(
            "2026-04-25",
            [
                ("muscle_weakness", "2025-06-01", "severe"),
                ("muscle_weakness", "2026-02-02", "mild"),
                ("muscle_weakness", "2026-04-20", "mild"),
            ],
        )
    )
    item = next(p for p in a.recovery_progress if p.id == "proximal_power")
    assert (item.symptoms[0].baseline_rating, str(item.symptoms[0].baseline_date)) == (
        "mild",
        "2026-02-02",
    )
    assert item.status == "not_improved"


def test_ratings_are_read_in_date_order_whatever_order_they_are_listed_in() -> None:
    ratings = [
        ("muscle_weakness", "2026-04-20", "mild"),
        ("muscle_weakness", "2026-01-30", "moderate"),
    ]
    forward = assess(_record("2026-04-25", list(reversed(ratings))))
    backward = assess(_record("2026-04-25", ratings))
    assert (
        _progress(forward)
        == _progress(backward)
        == {
            "proximal_power": "improved",
            "neurological_response": "pending",
        }
    )


def test_a_symptom_absent_at_the_start_is_not_judged() -> None:
    a = assess(
        _record(
            "2026-05-10",
            [
                ("muscle_weakness", "2026-01-30", "none"),
                ("muscle_weakness", "2026-05-05", "moderate"),
            ],
        )
    )
    assert a.recovery_progress == []
    # ... and a nerve symptom rated none at the start and present now is new during the
    # course: loading starts again (rule treatment.reload_on_treatment), from today.
    assert a.treatment is not None and a.treatment.rule == "treatment.reload_on_treatment"
    assert a.treatment.start == dt.date(2026, 5, 10)


def test_no_course_under_way_means_no_progress_however_much_is_rated() -> None:
    record = _record("2026-04-25", [("muscle_weakness", "2026-01-30", "moderate")])
    record["b12_treatment"] = []
    assert assess(record).recovery_progress == []


def test_a_rating_beyond_the_baseline_window_is_not_a_baseline() -> None:
    late = (FIRST_DOSE + dt.timedelta(days=15)).isoformat()
    on_edge = (FIRST_DOSE + dt.timedelta(days=14)).isoformat()
    ratings = [("muscle_weakness", late, "moderate"), ("muscle_weakness", "2026-04-20", "mild")]
    assert assess(_record("2026-04-25", ratings)).recovery_progress == []
    ratings[0] = ("muscle_weakness", on_edge, "moderate")
    assert _progress(assess(_record("2026-04-25", ratings)))["proximal_power"] == "improved"


# --- schemas, report and page ------------------------------------------------------------


def test_input_schema_publishes_symptom_ratings_with_the_symptom_ids() -> None:
    schema = input_schema()
    assert "symptom_ratings" in schema["properties"]
    rating = schema["$defs"]["SymptomRating"]
    assert "paresthesia" in rating["properties"]["id"]["enum"]
    assert rating["properties"]["rating"]["enum"] == ["none", "mild", "moderate", "severe"]
    assert set(rating["required"]) == {"id", "date", "rating"}


def test_output_schema_publishes_recovery_progress() -> None:
    schema = output_schema()
    assert "recovery_progress" in schema["properties"]
    progress = schema["$defs"]["RecoveryProgress"]["properties"]
    assert set(progress["status"]["enum"]) == {"pending", "improved", "not_improved", "not_rated"}
    symptom = schema["$defs"]["SymptomProgress"]["properties"]
    assert {"baseline_rating", "baseline_date", "latest_rating", "latest_date"} <= set(symptom)


def _flagged_record() -> dict[str, Any]:
    return _record(
        "2026-05-10",
        [
            ("muscle_weakness", "2026-01-30", "moderate"),
            ("muscle_weakness", "2026-05-05", "moderate"),
        ],
    )


def test_report_prints_recovery_progress(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(_flagged_record()))
    code = 0
    try:
        main(["assess", str(path)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr().out
    assert code == 0
    assert "Recovery so far" in out
    assert "not improved" in out
    assert "Recovery is behind the expected milestones" in out


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(followup_settings=LOGIN_OFF))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.asyncio
async def test_clinician_page_shows_a_recovery_progress_table(client: httpx.AsyncClient) -> None:
    r = await client.post("/clinician", data={"record_json": json.dumps(_flagged_record())})
    assert r.status_code == 200, r.text[:500]
    assert 'id="recovery-progress"' in r.text
    assert 'class="progress-not_improved" data-milestone="proximal_power"' in r.text
    assert "moderate (2026-05-05)" in r.text
