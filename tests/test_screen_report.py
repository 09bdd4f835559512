"""The screening report and summary as an analyst reads them: the gaps in the knowledge
base's order and words on the terminal and in the page, sites outside the funnel's limits
named in text, a worklist per practice in clinical priority then date, lists that sort,
and a filter in words."""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from b12dx.cli.app import app
from b12dx.knowledge.loader import load_knowledge
from b12dx.screen.funnel import site_rates


class Screened:
    def __init__(self, out: Path, output: str) -> None:
        self.out, self.output = out, output
        self.html = (out / "report.html").read_text()
        with (out / "gaps.csv").open() as f:
            self.gaps = list(csv.DictReader(f))
        with (out / "care_sites.csv").open() as f:
            self.sites = {r["care_site"]: int(r["people"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> Screened:
    tmp = tmp_path_factory.mktemp("report")
    data, out = tmp / "in", tmp / "out"
    made = CliRunner().invoke(app, ["synth", "--patients", "3000", "--out", str(data)])
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(
        app, ["screen", str(data), "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return Screened(out, result.output)


class Tables(HTMLParser):
    """Every table of the page: its caption, headings, whether they sort, and its rows
    (each cell's text and data-sort)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, object]] = []
        self._cell: list[str] | None = None
        self._where = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.tables.append(
                {"class": a.get("class") or "", "id": a.get("id"), "caption": "",
                 "heads": [], "buttons": 0, "rows": []}
            )  # fmt: skip
        elif not self.tables:
            return
        t = self.tables[-1]
        if tag == "caption":
            self._where = "caption"
        elif tag == "tr":
            self._where = "row"
            t["rows"].append([])  # type: ignore[attr-defined]
        elif tag in ("td", "th"):
            self._cell = [a.get("data-sort") or ""]
        elif tag == "button" and self._cell is not None:
            t["buttons"] += 1  # type: ignore[operator]

    def handle_data(self, data: str) -> None:
        if not self.tables:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif self._where == "caption":
            self.tables[-1]["caption"] += data  # type: ignore[operator]

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._where = ""
        elif tag in ("td", "th") and self._cell is not None and self.tables:
            sort, text = self._cell[0], " ".join("".join(self._cell[1:]).split())
            self.tables[-1]["rows"][-1].append((text, sort))  # type: ignore[index]
            self._cell = None


def _tables(html: str) -> list[dict[str, object]]:
    parser = Tables()
    parser.feed(html)
    return parser.tables


def _text(html: str) -> str:
    """What the page says in words: no drawing, no hover title, no tags."""
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    html = re.sub(r'\stitle="[^"]*"', "", html)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_terminal_names_every_file_the_screen_wrote(screened: Screened) -> None:
    """Each file of the results folder, the worklist and the per-gap lists included, and
    the folder of person-level tables: an analyst knows what holds patient data."""
    named = {line.removeprefix("wrote ") for line in screened.output.splitlines()
             if line.startswith("wrote ")}  # fmt: skip
    files = {str(p) for p in screened.out.iterdir() if p.is_file()}
    assert files and files <= named
    assert f"{screened.out / 'tables'}/" in named
    assert any(name.endswith("worklist.csv") for name in named)


def test_the_terminal_lists_the_gaps_in_the_reports_order_and_words(screened: Screened) -> None:
    kb = load_knowledge()
    cards = re.findall(r'<h3 id="card-[a-z0-9_]+">\d+\. ([^<]+)</h3>', screened.html)
    assert cards == [kb.screening.gap_labels[g] for g in kb.screening.gap_labels]
    lines = screened.output.splitlines()
    at = [next(i for i, line in enumerate(lines) if f" {label} " in line) for label in cards]
    assert at == sorted(at), "the summary's rows in the report's order"
    assert not any(re.search(rf"│ {gap}\b", screened.output) for gap in kb.screening.gap_labels)


def test_sites_outside_the_funnel_limits_are_named_in_the_text(screened: Screened) -> None:
    kb = load_knowledge()
    per_gap: dict[str, Counter[str]] = defaultdict(Counter)
    for row in screened.gaps:
        per_gap[kb.screening.gap_labels[row["gap"]]][row["care_site"]] += 1
    outside = [
        (label, r)
        for label, flagged in per_gap.items()
        for r in site_rates(screened.sites, flagged)
        if r.outside
    ]
    assert any(r.outside.endswith("95%") for _, r in outside), "the data has a site to name"
    text = _text(screened.html)
    (listed,) = [t for t in _tables(screened.html) if "outside" in str(t["caption"])]
    rows = {(r[0][0], r[1][0], r[2][0].split(" ", 1)[1]) for r in listed["rows"][1:]}  # type: ignore[attr-defined]
    for label, r in outside:
        assert (r.site, label, f"{r.outside} limit") in rows
        assert f"{r.site} {r.outside} limit" in text


def test_each_practice_has_a_worklist_in_clinical_priority_then_date(screened: Screened) -> None:
    kb = load_knowledge()
    rank = {kb.screening.gap_labels[g]: i for i, g in enumerate(kb.screening.gap_labels)}
    worklists = {
        str(t["caption"]).removeprefix("Worklist: "): t["rows"]
        for t in _tables(screened.html)
        if str(t["caption"]).startswith("Worklist: ")
    }
    assert set(worklists) == {r["care_site"] for r in screened.gaps}
    for site, rows in worklists.items():
        body = rows[1:]  # type: ignore[index]
        listed = [(c[0][0].split(". ", 1)[1], c[1][0], c[2][0]) for c in body]
        keys = [(rank[gap], since) for gap, since, _ in listed]
        assert keys == sorted(keys), site
        expected = {
            (kb.screening.gap_labels[r["gap"]], r["since"], r["person_id"])
            for r in screened.gaps
            if r["care_site"] == site
        }
        assert set(listed) == expected and len(listed) == len(expected)
    with (screened.out / "worklist.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(screened.gaps)
    order = [(r["care_site"], int(r["priority"]), r["since"]) for r in rows]
    assert order == sorted(order)


def test_the_reports_lists_sort_by_their_headings(screened: Screened) -> None:
    tables = _tables(screened.html)
    for t in tables:
        if t["caption"] or t["id"] == "counts":
            heads = t["rows"][0]  # type: ignore[index]
            assert "sortable" in str(t["class"]) and t["buttons"] == len(heads), t["caption"]
    sortable = [t for t in tables if "sortable" in str(t["class"])]
    assert any("care site" in str(t["caption"]) for t in sortable)
    assert any(t["id"] == "counts" for t in sortable)
    assert 'querySelectorAll("table.sortable")' in screened.html


def test_the_filter_and_the_counts_speak_the_knowledge_bases_words(screened: Screened) -> None:
    kb = load_knowledge()
    names = {rf.name for rf in kb.risk_factors.values()} | {"no screened risk factor"}
    for key, words in (("gap", set(kb.screening.gap_labels.values())), ("risk", names)):
        select = re.search(rf'<select id="f-{key}"[^>]*>(.*?)</select>', screened.html, re.S)
        assert select, key
        shown = re.findall(r'<option value="([^"]*)">([^<]*)</option>', select.group(1))
        assert len(shown) > 2
        for value, text in shown[1:]:
            assert text in words and text != value, (key, value, text)
    (counts,) = [t for t in _tables(screened.html) if t["id"] == "counts"]
    assert {r[2][0] for r in counts["rows"][1:]} <= names  # type: ignore[attr-defined]
