"""The screening summary: a Rich table for the console and a self-contained HTML report
(inline SVG bar charts and one small inline script for the filter; no external files, so
it can be mailed or archived), with each gap's list beside it as a CSV file.

The report is a worklist: one card per gap in clinical priority (screening.yaml
gap_labels), each with its count, rate, definition and its own list to download.

Rates are per 1,000 people screened (alive and adult on the as-of date), overall and per
age band, so practices and age groups of different sizes can be compared."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from b12dx.knowledge.loader import Knowledge
from b12dx.screen.report_lists import (
    SORT_SCRIPT,
    coverage_lines,
    coverage_section,
    label,
    priority,
    risk_name,
    sortable,
    worklist_rows,
    worklist_section,
    write_worklist,
)
from b12dx.screen.report_sites import care_site_section
from b12dx.screen.rules import GAPS
from b12dx.screen.run import ScreenResult


def gap_counts(result: ScreenResult) -> Counter[str]:
    return Counter(result.gaps.column("gap").to_pylist())


def _per_1000(n: int, of: int) -> str:
    return f"{1000 * n / of:.1f}" if of else "-"


def console_summary(result: ScreenResult, console: Console, kb: Knowledge) -> None:
    """The counts in the report's order and words, then who was not screened and why."""
    counts = gap_counts(result)
    table = Table(
        title=f"Care gaps as of {result.as_of}: {result.people:,} people screened of "
        f"{result.records:,} in the input (profile {result.profile}, {result.engine})"
    )
    table.add_column("gap")
    table.add_column("patients", justify="right")
    table.add_column("per 1,000 screened", justify="right")
    for gap in priority(kb):
        n = counts.get(gap, 0)
        table.add_row(label(kb, gap), f"{n:,}", _per_1000(n, result.people))
    flagged = len(set(result.gaps.column("person_id").to_pylist()))
    table.add_row("any gap", f"{flagged:,}", _per_1000(flagged, result.people), style="bold")
    console.print(table)
    for line in coverage_lines(result.coverage):
        console.print(line, markup=False, highlight=False)
    if result.people and not result.gaps.num_rows:
        console.print(
            f"None of the {result.people:,} {_people(result.people)} screened has a care gap."
        )
    if result.left_out:
        n = sum(result.left_out.values())
        console.print(f"{n:,} FHIR resources were not used (each reason is in report.html).")


def _bars(title: str, counts: list[tuple[str, int]], note: str = "") -> str:
    width, bar_h, label_w = 720, 22, 280
    top = max((n for _, n in counts), default=0) or 1
    height = bar_h * max(len(counts), 1) + 10
    rows = []
    for i, (name, n) in enumerate(counts):
        y = i * bar_h + 5
        w = (width - label_w - 90) * n / top
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="#2b6cb0">'
            f"<title>{html.escape(name)}: {n:,}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{n:,}</text>'
        )
    return (
        f"<h2>{html.escape(title)}</h2>"
        + (f"<p>{html.escape(note)}</p>" if note else "")
        + f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" '
        f'height="{height}" font-family="sans-serif" font-size="13">{"".join(rows)}</svg>'
    )


def _gap_table(result: ScreenResult, kb: Knowledge, counts: Counter[str]) -> str:
    rows = []
    for gap in priority(kb):
        rule = kb.rules[f"screen.{gap}"]
        sources = ", ".join(
            f'<span title="{html.escape(kb.sources[s].title)}">{html.escape(s)}</span>'
            for s in rule.sources
        )
        n = counts.get(gap, 0)
        rows.append(
            f"<tr><td><b>{html.escape(label(kb, gap))}</b><br>"
            f"<small>{html.escape(rule.id)}</small></td>"
            f"<td>{html.escape(rule.text)}</td><td class=n>{n:,}</td>"
            f"<td class=n>{_per_1000(n, result.people)}</td><td>{sources}</td></tr>"
        )
    return (
        "<h2>Care gaps</h2><table><tr><th>gap (rule)</th><th>who is flagged</th>"
        "<th>patients</th><th>per 1,000 screened</th><th>sources</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _age_table(result: ScreenResult, kb: Knowledge) -> str:
    band_people = dict(
        zip(
            result.population.column("age_band").to_pylist(),
            result.population.column("people").to_pylist(),
            strict=True,
        )
    )
    per_band: dict[str, Counter[str]] = defaultdict(Counter)
    for gap, band in zip(
        result.gaps.column("gap").to_pylist(),
        result.gaps.column("age_band").to_pylist(),
        strict=True,
    ):
        per_band[band][gap] += 1
    # <wbr> lets the long gap names wrap at their underscores, so the table fits the page.
    head = "".join(f"<th>{html.escape(label(kb, g))}</th>" for g in priority(kb))
    rows = []
    for band, people in band_people.items():
        cells = "".join(
            f"<td class=n>{per_band[band][g]:,}<br><small>"
            f"{_per_1000(per_band[band][g], people)}/1,000</small></td>"
            for g in priority(kb)
        )
        rows.append(f"<tr><td>{html.escape(band)}</td><td class=n>{people:,}</td>{cells}</tr>")
    return (
        "<h2>By age band</h2><p>Patients flagged, and per 1,000 people screened in the band."
        f"</p><table><tr><th>age band</th><th>screened</th>{head}</tr>" + "".join(rows) + "</table>"
    )


def _left_out(result: ScreenResult) -> str:
    if not result.left_out:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(why)}</td><td class=n>{n:,}</td></tr>"
        for why, n in result.left_out.items()
    )
    return (
        "<h2>What the input held that was not used</h2><p>FHIR resources the screen left "
        "out, and why (a result in a unit its test does not accept is left out, never "
        "guessed).</p><table><tr><th>reason</th><th>resources</th></tr>" + rows + "</table>"
    )


def _gap_lists(result: ScreenResult, folder: Path) -> dict[str, str]:
    """Each gap's own list (its rows of gaps.csv), written beside the report."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from b12dx.screen.run import csv_ready

    names = {}
    for gap in GAPS:
        rows = result.gaps.filter(pc.equal(result.gaps.column("gap"), gap))
        name = f"gaps-{gap}.csv"
        partial = folder / f".{name}.partial"
        pacsv.write_csv(csv_ready(rows), partial)
        partial.replace(folder / name)
        names[gap] = name
    return names


def _cards(result: ScreenResult, kb: Knowledge, counts: Counter[str], lists: dict[str, str]) -> str:
    cards = []
    for rank, gap in enumerate(priority(kb), 1):
        rule = kb.rules[f"screen.{gap}"]
        n = counts.get(gap, 0)
        cards.append(
            f'<section class="card" aria-labelledby="card-{gap}"><h3 id="card-{gap}">'
            f"{rank}. {html.escape(label(kb, gap))}</h3>"
            f'<p class="count"><b>{n:,}</b> patients · {_per_1000(n, result.people)} per '
            f"1,000 screened</p><p>{html.escape(rule.text)}</p>"
            f'<p><a href="{lists[gap]}" download>Download the list ({n:,})</a> '
            f"<small>rule {html.escape(rule.id)}</small></p></section>"
        )
    return (
        "<h2>Worklist, most urgent first</h2>" + '<div class="cards">' + "".join(cards) + "</div>"
    )


FILTER_SCRIPT = """
<script>
(function () {
  var table = document.getElementById("counts");
  if (!table) { return; }
  var selects = document.querySelectorAll("select[data-filter]");
  function apply() {
    var shown = 0;
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var keep = true;
      selects.forEach(function (s) {
        if (s.value && row.getAttribute("data-" + s.getAttribute("data-filter")) !== s.value) {
          keep = false;
        }
      });
      row.hidden = !keep;
      if (keep) { shown += Number(row.getAttribute("data-patients")); }
    });
    document.getElementById("filtered").textContent = shown.toLocaleString();
  }
  selects.forEach(function (s) { s.addEventListener("change", apply); });
  document.getElementById("filters").hidden = false;
  apply();
})();
</script>"""


def _counts_table(result: ScreenResult, kb: Knowledge) -> str:
    summary = result.summary.to_pylist()
    rank = {g: i for i, g in enumerate(priority(kb), 1)}
    rows = [
        f'<tr data-gap="{html.escape(r["gap"])}" data-band="{html.escape(r["age_band"])}" '
        f'data-risk="{html.escape(r["risk_factor"])}" data-patients="{r["patients"]}">'
        f'<td data-sort="{rank.get(r["gap"], 0)}">{html.escape(label(kb, r["gap"]))}</td>'
        f"<td>{html.escape(r['age_band'])}</td>"
        f"<td>{html.escape(risk_name(kb, r['risk_factor']))}</td>"
        f"<td class=n>{r['patients']:,}</td></tr>"
        for r in sorted(summary, key=lambda r: rank.get(r["gap"], 0))
    ]

    def said(key: str, value: str) -> str:
        if key == "gap":
            return label(kb, value)
        return risk_name(kb, value) if key == "risk" else value

    def options(key: str, values: list[str], heading: str) -> str:
        opts = "".join(
            f'<option value="{html.escape(v)}">{html.escape(said(key, v))}</option>' for v in values
        )
        return (
            f'<label for="f-{key}">{heading}</label> <select id="f-{key}" data-filter="{key}">'
            f'<option value="">all</option>{opts}</select>'
        )

    gaps = [g for g in priority(kb) if any(r["gap"] == g for r in summary)]
    bands = sorted({r["age_band"] for r in summary})
    risks = sorted({r["risk_factor"] for r in summary}, key=lambda v: risk_name(kb, v))
    return (
        "<h2>Counts per gap, age band and risk factor</h2>"
        '<form id="filters" class="filters" hidden>'
        + options("gap", gaps, "Gap")
        + " "
        + options("band", bands, "Age band")
        + " "
        + options("risk", risks, "Risk factor")
        + ' <span aria-live="polite">Patients shown: <b id="filtered"></b></span></form>'
        + sortable(
            [("gap", True), ("age band", False), ("risk factor", False), ("patients", True)],
            rows,
        ).replace('<table class="sortable">', '<table id="counts" class="sortable">', 1)
    )


def html_report(result: ScreenResult, path: Path, kb: Knowledge) -> None:
    """Write the report (and each gap's list beside it) under temporary names and rename
    them into place."""
    counts = gap_counts(result)
    lists = _gap_lists(result, path.parent)
    work = worklist_rows(result, kb)
    write_worklist(work, kb, path.parent)
    by_rf: dict[str, set[str]] = defaultdict(set)
    for row in result.gaps.select(["person_id", "risk_factors"]).to_pylist():
        for rf in row["risk_factors"] or ["none"]:
            by_rf[rf].add(row["person_id"])
    rf_label = {
        rf: kb.risk_factors[rf].name if rf in kb.risk_factors else "no screened risk factor"
        for rf in by_rf
    }
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>b12dx screening {result.as_of}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;
line-height:1.4}}table{{border-collapse:collapse;margin-bottom:1rem}}
.scroll{{overflow-x:auto;max-width:100%}}svg{{max-width:100%;height:auto}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;vertical-align:top;text-align:left}}
td.n{{text-align:right}}small{{color:#555}}
.cards{{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:.75rem}}
.card{{border:1px solid #ccc;border-left:6px solid #a4000f;padding:.25rem .75rem}}
.card h3{{margin:.4rem 0}}.card .count{{font-size:1.1rem}}
.filters{{margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}}
.notice{{border:2px solid #b7791f;background:#fffaf0;padding:.25rem .75rem;margin:1rem 0}}
th button{{font:inherit;font-weight:bold;background:none;border:0;padding:0;cursor:pointer;
text-align:left;text-decoration:underline dotted}}</style>
</head><body><header><p><small>b12dx population screening</small></p></header><main>
<h1>B12 care gaps as of {result.as_of}</h1>
<p><b>{result.people:,}</b> people screened (alive, aged {
        kb.triage.adult_from_years
    } or more and under observation on {result.as_of})
of {result.records:,} in the input; profile {html.escape(result.profile)}; engine
{html.escape(result.engine)}. Each flagged patient's reasons, rule and sources are in
gaps.csv and gaps.parquet; the counts below are in summary.csv and population.csv.
A gap is a prompt to review the record, not a diagnosis.</p>
{coverage_section(result)}
{_cards(result, kb, counts, lists)}
{_gap_table(result, kb, counts)}
{_bars("Patients per gap", [(label(kb, g), counts.get(g, 0)) for g in priority(kb)])}
{_age_table(result, kb)}
{care_site_section(result, priority(kb), lambda g: label(kb, g))}
{
        _bars(
            "Flagged patients per risk factor",
            sorted(((rf_label[rf], len(p)) for rf, p in by_rf.items()), key=lambda x: -x[1]),
            "People with any gap, by the screened risk factors on their record "
            "(a person with two risk factors counts under both).",
        )
    }
{worklist_section(work, kb)}
{_left_out(result)}
{_counts_table(result, kb)}
</main>{FILTER_SCRIPT}{SORT_SCRIPT}</body></html>
"""
    # Wide tables scroll inside themselves on a phone, and a keyboard can scroll them.
    page = page.replace(
        "<table", '<div class="scroll" role="region" tabindex="0" aria-label="Table"><table'
    ).replace("</table>", "</table></div>")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)


def _people(n: int) -> str:
    return "person" if n == 1 else "people"
