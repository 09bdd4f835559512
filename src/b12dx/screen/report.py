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
from b12dx.screen.report_sites import care_site_section
from b12dx.screen.rules import GAPS
from b12dx.screen.run import ScreenResult


def gap_counts(result: ScreenResult) -> Counter[str]:
    return Counter(result.gaps.column("gap").to_pylist())


def _per_1000(n: int, of: int) -> str:
    return f"{1000 * n / of:.1f}" if of else "-"


def console_summary(result: ScreenResult, console: Console) -> None:
    counts = gap_counts(result)
    table = Table(
        title=f"Care gaps as of {result.as_of}: {result.people:,} people screened of "
        f"{result.records:,} in the input (profile {result.profile}, {result.engine})"
    )
    table.add_column("gap")
    table.add_column("patients", justify="right")
    table.add_column("per 1,000 screened", justify="right")
    for gap in GAPS:
        n = counts.get(gap, 0)
        table.add_row(gap, f"{n:,}", _per_1000(n, result.people))
    flagged = len(set(result.gaps.column("person_id").to_pylist()))
    table.add_row("any gap", f"{flagged:,}", _per_1000(flagged, result.people), style="bold")
    console.print(table)
    if result.left_out:
        n = sum(result.left_out.values())
        console.print(f"{n:,} FHIR resources were not used (each reason is in report.html).")


def _bars(title: str, counts: list[tuple[str, int]], note: str = "") -> str:
    width, bar_h, label_w = 720, 22, 280
    top = max((n for _, n in counts), default=0) or 1
    height = bar_h * max(len(counts), 1) + 10
    rows = []
    for i, (label, n) in enumerate(counts):
        y = i * bar_h + 5
        w = (width - label_w - 90) * n / top
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="#2b6cb0">'
            f"<title>{html.escape(label)}: {n:,}</title></rect>"
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
    for gap in _priority(kb):
        rule = kb.rules[f"screen.{gap}"]
        sources = ", ".join(
            f'<span title="{html.escape(kb.sources[s].title)}">{html.escape(s)}</span>'
            for s in rule.sources
        )
        n = counts.get(gap, 0)
        rows.append(
            f"<tr><td><b>{html.escape(_label(kb, gap))}</b><br>"
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
    head = "".join(f"<th>{html.escape(_label(kb, g))}</th>" for g in _priority(kb))
    rows = []
    for band, people in band_people.items():
        cells = "".join(
            f"<td class=n>{per_band[band][g]:,}<br><small>"
            f"{_per_1000(per_band[band][g], people)}/1,000</small></td>"
            for g in _priority(kb)
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


def _label(kb: Knowledge, gap: str) -> str:
    return kb.screening.gap_labels.get(gap, gap.replace("_", " "))


def _priority(kb: Knowledge) -> list[str]:
    """The gaps in the worklist's order: screening.yaml's, then any it does not list."""
    listed = [g for g in kb.screening.gap_labels if g in GAPS]
    return listed + [g for g in GAPS if g not in listed]


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
    for rank, gap in enumerate(_priority(kb), 1):
        rule = kb.rules[f"screen.{gap}"]
        n = counts.get(gap, 0)
        cards.append(
            f'<section class="card" aria-labelledby="card-{gap}"><h3 id="card-{gap}">'
            f"{rank}. {html.escape(_label(kb, gap))}</h3>"
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
    rows = "".join(
        f'<tr data-gap="{html.escape(r["gap"])}" data-band="{html.escape(r["age_band"])}" '
        f'data-risk="{html.escape(r["risk_factor"])}" data-patients="{r["patients"]}">'
        f"<td>{html.escape(_label(kb, r['gap']))}</td><td>{html.escape(r['age_band'])}</td>"
        f"<td>{html.escape(r['risk_factor'])}</td><td class=n>{r['patients']:,}</td></tr>"
        for r in summary
    )

    def options(key: str, values: list[str], label: str) -> str:
        opts = "".join(
            f'<option value="{html.escape(v)}">'
            f"{html.escape(_label(kb, v) if key == 'gap' else v)}</option>"
            for v in values
        )
        return (
            f'<label for="f-{key}">{label}</label> <select id="f-{key}" data-filter="{key}">'
            f'<option value="">all</option>{opts}</select>'
        )

    gaps = [g for g in _priority(kb) if any(r["gap"] == g for r in summary)]
    bands = sorted({r["age_band"] for r in summary})
    risks = sorted({r["risk_factor"] for r in summary})
    return (
        "<h2>Counts per gap, age band and risk factor</h2>"
        '<form id="filters" class="filters" hidden>'
        + options("gap", gaps, "Gap")
        + " "
        + options("band", bands, "Age band")
        + " "
        + options("risk", risks, "Risk factor")
        + ' <span aria-live="polite">Patients shown: <b id="filtered"></b></span></form>'
        '<div class="scroll" role="region" tabindex="0" aria-label="Counts">'
        '<table id="counts"><thead><tr><th>gap</th><th>age band</th><th>risk factor</th>'
        "<th>patients</th></tr></thead><tbody>" + rows + "</tbody></table></div>"
    )


def html_report(result: ScreenResult, path: Path, kb: Knowledge) -> None:
    """Write the report (and each gap's list beside it) under temporary names and rename
    them into place."""
    counts = gap_counts(result)
    lists = _gap_lists(result, path.parent)
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
.filters{{margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}}</style>
</head><body><header><p><small>b12dx population screening</small></p></header><main>
<h1>B12 care gaps as of {result.as_of}</h1>
<p><b>{result.people:,}</b> people screened (alive and aged {
        kb.triage.adult_from_years
    } or more on {result.as_of})
of {result.records:,} in the input; profile {html.escape(result.profile)}; engine
{html.escape(result.engine)}. Each flagged patient's reasons, rule and sources are in
gaps.csv and gaps.parquet; the counts below are in summary.csv and population.csv.
A gap is a prompt to review the record, not a diagnosis.</p>
{_cards(result, kb, counts, lists)}
{_gap_table(result, kb, counts)}
{_bars("Patients per gap", [(_label(kb, g), counts.get(g, 0)) for g in _priority(kb)])}
{_age_table(result, kb)}
{care_site_section(result, _priority(kb), lambda g: _label(kb, g))}
{
        _bars(
            "Flagged patients per risk factor",
            sorted(((rf_label[rf], len(p)) for rf, p in by_rf.items()), key=lambda x: -x[1]),
            "People with any gap, by the screened risk factors on their record "
            "(a person with two risk factors counts under both).",
        )
    }
{_left_out(result)}
{_counts_table(result, kb)}
</main>{FILTER_SCRIPT}</body></html>
"""
    # Wide tables scroll inside themselves on a phone, and a keyboard can scroll them.
    page = page.replace(
        "<table>", '<div class="scroll" role="region" tabindex="0" aria-label="Table"><table>'
    ).replace("</table>", "</table></div>")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
