"""The screening report's breakdown by care site: where the input says where people are
registered, each site's counts and rates per 1,000, and a funnel plot that tells a
site's chance swing from a real difference."""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.screen.funnel import Z_95, Z_998, limits, overall_rate, site_rates


def test_the_limits_are_the_binomial_ones_at_95_and_99_8_percent() -> None:
    # 10% of 100 people: standard error sqrt(0.1 * 0.9 / 100) = 0.03.
    low, high = limits(0.1, 100, Z_95)
    assert low == pytest.approx(0.1 - 1.959964 * 0.03) and high == pytest.approx(0.1 + 0.0588, 1e-3)
    low, high = limits(0.1, 100, Z_998)
    assert high == pytest.approx(0.1 + 3.090232 * 0.03)
    assert limits(0.01, 10, Z_998)[0] == 0.0, "never below zero"
    # The funnel narrows as sites grow: the same 13% is chance at 100 people, not at 10,000.
    assert limits(0.1, 100, Z_998)[1] > 0.13 > limits(0.1, 10_000, Z_998)[1]


def test_a_site_is_marked_only_when_outside_its_own_limits() -> None:
    people = {"big": 10_000, "small": 50, "high": 2_000, "edge": 1_000}
    flagged = Counter({"big": 1_000, "small": 9, "high": 300, "edge": 135})
    rate = overall_rate(people, flagged)
    assert rate == pytest.approx(1444 / 13_050)
    by_site = {r.site: r for r in site_rates(people, flagged)}
    assert [r.site for r in site_rates(people, flagged)] == ["big", "high", "edge", "small"]
    # 18% of 50 is a chance swing for a small site; 15% of 2,000 is not.
    assert by_site["small"].outside == "" and by_site["small"].per_1000 == 180.0
    assert by_site["high"].outside == "above 99.8%"
    se = math.sqrt(rate * (1 - rate) / 1_000)
    assert rate + Z_95 * se < 0.135 < rate + Z_998 * se, "the test's edge site sits between"
    assert by_site["edge"].outside == "above 95%"


def _synth_and_screen(tmp_path: Path, fmt: str) -> tuple[Path, str]:
    data, out = tmp_path / f"in-{fmt}", tmp_path / f"out-{fmt}"
    made = CliRunner().invoke(
        app, ["synth", "--patients", "3000", "--format", fmt, "--out", str(data)]
    )
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(app, ["screen", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, (out / "report.html").read_text()


@pytest.mark.parametrize("fmt", ["omop", "ndjson"])
def test_the_report_breaks_gaps_down_by_the_care_site_the_input_names(
    tmp_path: Path, fmt: str
) -> None:
    out, html = _synth_and_screen(tmp_path, fmt)
    with (out / "care_sites.csv").open() as f:
        sites = {r["care_site"]: int(r["people"]) for r in csv.DictReader(f)}
    with (out / "population.csv").open() as f:
        screened = sum(int(r["people"]) for r in csv.DictReader(f))
    assert len(sites) == 11 and all(s.startswith("Practice ") for s in sites), sites
    assert sum(sites.values()) == screened, "everyone screened is counted at one site"
    with (out / "gaps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["care_site"] in sites for r in rows)

    section = html[html.index('<h2 id="by-site">') :]
    section = section[: section.index("</section>")]
    table = section[section.index("<table") :]
    for site, people in sites.items():
        row = re.search(rf"<tr><td>{site}</td><td class=n>([\d,]+)</td>(.*?)</tr>", table)
        assert row, site
        assert int(row.group(1).replace(",", "")) == people
        # The first column is "any gap": people with at least one gap at the site.
        anyone = len({r["person_id"] for r in rows if r["care_site"] == site})
        first = re.search(r"<td class=n[^>]*>([\d,]+)<br><small>([\d.]+)/1,000", row.group(2))
        assert first and int(first.group(1).replace(",", "")) == anyone
        assert float(first.group(2)) == pytest.approx(1000 * anyone / people, abs=0.05)
    plot = re.search(r'<svg role="img" aria-labelledby="funnel-0-t funnel-0-d".*?</svg>', section)
    assert plot, "the any-gap funnel plot is shown"
    assert plot.group(0).count("<circle") == len(sites)
    assert plot.group(0).count("<polyline") == 4, "95% and 99.8% limits, above and below"


def _fhir_patient(pid: str, **extra: object) -> str:
    return json.dumps(
        {"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female"}
        | extra
    )


def test_fhir_sites_come_from_the_managing_organisation_then_the_practice(
    tmp_path: Path,
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    org = {"reference": "Organization/p1", "display": "Riverside Surgery"}
    (src / "Patient.ndjson").write_text(
        "\n".join(
            [
                _fhir_patient("a", managingOrganization=org),
                _fhir_patient(
                    "b",
                    generalPractitioner=[
                        {"reference": "Practitioner/dr-x", "display": "Dr X"},
                        {"reference": "Organization/p2", "display": "Hillside Practice"},
                    ],
                ),
                _fhir_patient("c", generalPractitioner=[{"reference": "Practitioner/dr-y"}]),
                _fhir_patient("d"),
            ]
        )
        + "\n"
    )
    result = CliRunner().invoke(
        app, ["screen", str(src), "--out", str(out), "--as-of", "2023-06-01"]
    )
    assert result.exit_code == 0, result.output
    with (out / "care_sites.csv").open() as f:
        sites = {r["care_site"]: int(r["people"]) for r in csv.DictReader(f)}
    assert sites == {"Riverside Surgery": 1, "Hillside Practice": 1, "Practitioner/dr-y": 1, "": 1}
    html = (out / "report.html").read_text()
    assert "1 people screened have no care site recorded" in html


def test_omop_sites_are_named_from_care_site_and_absent_without_care_site_id(
    tmp_path: Path,
) -> None:
    from b12dx.synth.omop import SCHEMAS

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    tables = {
        "person": "person_id,gender_concept_id,year_of_birth,care_site_id\n"
        "1,8532,1950,7\n2,8507,1950,8\n3,8507,1950,\n",
        "care_site": "care_site_id,care_site_name\n7,Northgate Medical Centre\n",
    }
    for name in ("drug_exposure", "measurement", "condition_occurrence",
                 "procedure_occurrence", "observation"):  # fmt: skip
        tables[name] = ",".join(c for c, _ in SCHEMAS[name]) + "\n"
    for name, text in tables.items():
        (src / f"{name}.csv").write_text(text)
    result = CliRunner().invoke(
        app, ["screen", str(src), "--out", str(out), "--as-of", "2023-06-01"]
    )
    assert result.exit_code == 0, result.output
    with (out / "care_sites.csv").open() as f:
        sites = {r["care_site"]: int(r["people"]) for r in csv.DictReader(f)}
    assert sites == {"Northgate Medical Centre": 1, "care site 8": 1, "": 1}

    (src / "person.csv").write_text("person_id,gender_concept_id,year_of_birth\n1,8532,1950\n")
    out2 = tmp_path / "out2"
    result = CliRunner().invoke(
        app, ["screen", str(src), "--out", str(out2), "--as-of", "2023-06-01"]
    )
    assert result.exit_code == 0, result.output
    assert "By care site" not in (out2 / "report.html").read_text()
