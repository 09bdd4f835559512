"""The screening summary: a Rich table for the console and a self-contained HTML report
(inline SVG bar charts, no scripts or external files)."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from b12dx.screen.rules import GAPS
from b12dx.screen.run import ScreenResult


def gap_counts(result: ScreenResult) -> Counter[str]:
    return Counter(result.gaps.column("gap").to_pylist())


def console_summary(result: ScreenResult, console: Console) -> None:
    counts = gap_counts(result)
    table = Table(
        title=f"Care gaps as of {result.as_of} ({result.people} patients, profile "
        f"{result.profile}, {result.engine})"
    )
    table.add_column("gap")
    table.add_column("patients", justify="right")
    for gap in GAPS:
        table.add_row(gap, str(counts.get(gap, 0)))
    console.print(table)


def _bars(title: str, counts: list[tuple[str, int]]) -> str:
    width, bar_h, label_w = 640, 22, 260
    top = max((n for _, n in counts), default=0) or 1
    height = bar_h * max(len(counts), 1) + 10
    rows = []
    for i, (label, n) in enumerate(counts):
        y = i * bar_h + 5
        w = (width - label_w - 60) * n / top
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="#2b6cb0">'
            f"<title>{html.escape(label)}: {n}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{n}</text>'
        )
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">{"".join(rows)}</svg>'
    )


def html_report(result: ScreenResult, path: Path) -> None:
    counts = gap_counts(result)
    summary = result.summary.to_pylist()
    by_rf: Counter[str] = Counter()
    for row in summary:
        by_rf[row["risk_factor"]] += row["patients"]
    band_people: Counter[str] = Counter()
    for band in result.gaps.column("age_band").to_pylist():
        band_people[band] += 1
    table_rows = "".join(
        f"<tr><td>{html.escape(r['gap'])}</td><td>{html.escape(r['age_band'])}</td>"
        f"<td>{html.escape(r['risk_factor'])}</td><td>{r['patients']}</td></tr>"
        for r in summary
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>b12dx screening {result.as_of}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem}}</style>
</head><body>
<h1>Care gaps as of {result.as_of}</h1>
<p>{result.people} patients screened; profile {html.escape(result.profile)}; engine
{html.escape(result.engine)}. Each flagged patient's reasons are in gaps.csv and
gaps.parquet.</p>
{_bars("Patients per gap", [(g, counts.get(g, 0)) for g in GAPS])}
{_bars("Gap rows per age band", sorted(band_people.items()))}
{_bars("Patients per risk factor (summed over gaps)", sorted(by_rf.items()))}
<h2>Counts per gap, age band and risk factor</h2>
<table><tr><th>gap</th><th>age band</th><th>risk factor</th><th>patients</th></tr>
{table_rows}</table>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
