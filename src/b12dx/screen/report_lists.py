"""The screening report's lists, in the knowledge base's words and order: the gaps in
clinical priority (screening.yaml gap_labels), the worklist per practice and gap (most
urgent gap first, then the oldest date: who has waited longest), who was not screened
and why, and the small script that sorts any list by a click on its heading."""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from pathlib import Path
from typing import Any

from b12dx.knowledge.loader import Knowledge
from b12dx.screen.coverage import Coverage
from b12dx.screen.rules import GAPS
from b12dx.screen.run import ScreenResult

NO_SITE = "no care site recorded"
WORKLIST = "worklist.csv"


def label(kb: Knowledge, gap: str) -> str:
    """A gap in words (screening.yaml gap_labels)."""
    return kb.screening.gap_labels.get(gap, gap.replace("_", " "))


def priority(kb: Knowledge) -> list[str]:
    """The gaps in the worklist's order: screening.yaml's, then any it does not list."""
    listed = [g for g in kb.screening.gap_labels if g in GAPS]
    return listed + [g for g in GAPS if g not in listed]


def risk_name(kb: Knowledge, rf: str) -> str:
    """A risk factor id of the summary in words ("none": no screened risk factor)."""
    return kb.risk_factors[rf].name if rf in kb.risk_factors else "no screened risk factor"


def sortable(headings: list[tuple[str, bool]], rows: list[str], caption: str = "") -> str:
    """A table whose columns sort by a click on their heading (``SORT_SCRIPT``); each
    heading is (text, numeric). Cells may carry ``data-sort`` to sort by (a date, a rank)."""
    head = "".join(
        f'<th scope="col"{" data-numeric" if numeric else ""}><button type="button">'
        f"{html.escape(text)}</button></th>"
        for text, numeric in headings
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    # The report wraps every table in a region that scrolls sideways on a phone.
    return (
        f'<table class="sortable">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def worklist_rows(result: ScreenResult, kb: Knowledge) -> list[dict[str, Any]]:
    """Every gap row, by practice (named ones A-Z, then those with none), then the gap's
    clinical priority, then its date (oldest first: waiting longest), then person."""
    rank = {g: i for i, g in enumerate(priority(kb))}
    far = dt.date.max
    rows = result.gaps.select(["care_site", "gap", "since", "person_id", "age_band", "reasons"])
    return sorted(
        rows.to_pylist(),
        key=lambda r: (
            r["care_site"] is None,
            r["care_site"] or "",
            rank.get(r["gap"], len(rank)),
            r["since"] or far,
            r["person_id"],
        ),
    )


def write_worklist(rows: list[dict[str, Any]], kb: Knowledge, folder: Path) -> str:
    """worklist.csv beside the report: the worklist's rows in its order, the gap in words."""
    import csv

    from b12dx.spreadsheet import safe_row

    partial = folder / f".{WORKLIST}.partial"
    with partial.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["care_site", "priority", "gap", "gap_label", "since", "person_id",
                      "age_band", "reasons"])  # fmt: skip
        order = {g: i for i, g in enumerate(priority(kb), 1)}
        for r in rows:
            out.writerow(safe_row(
                [r["care_site"] or "", order.get(r["gap"], ""), r["gap"], label(kb, r["gap"]),
                 r["since"] or "", r["person_id"], r["age_band"], r["reasons"]]
            ))  # fmt: skip
    partial.replace(folder / WORKLIST)
    return WORKLIST


def worklist_section(rows: list[dict[str, Any]], kb: Knowledge) -> str:
    """Per practice, its patients with a gap: the most urgent gap first, then the date."""
    if not rows:
        return ""
    order = {g: i for i, g in enumerate(priority(kb), 1)}
    by_site: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_site[r["care_site"] or NO_SITE].append(r)
    parts = []
    for site, own in by_site.items():
        cells = [
            f'<tr><td data-sort="{order.get(r["gap"], 0)}">{order.get(r["gap"], "")}. '
            f"{html.escape(label(kb, r['gap']))}</td>"
            f"<td>{r['since'] or ''}</td><td>{html.escape(r['person_id'])}</td>"
            f"<td>{html.escape(r['age_band'])}</td><td>{html.escape(r['reasons'])}</td></tr>"
            for r in own
        ]
        people = len({r["person_id"] for r in own})
        table = sortable(
            [("gap", True), ("since", False), ("person", False), ("age band", False),
             ("reasons", False)],
            cells,
            f"Worklist: {site}",
        )  # fmt: skip
        parts.append(
            f"<details><summary>{html.escape(site)}: {people:,} patients, {len(own):,} gaps"
            f"</summary>{table}</details>"
        )
    # Said rather than left to be guessed from one list called "no practice".
    unnamed = (
        "<p>The input names no practice (care site) for anyone, so there is one list for "
        "everyone.</p>"
        if set(by_site) == {NO_SITE}
        else ""
    )
    return (
        '<section aria-labelledby="worklists"><h2 id="worklists">Worklist by practice</h2>'
        + unnamed
        + "<p>Each practice's patients with a gap, the most urgent gap first, then by date "
        "(the fact that opened the gap, oldest first). Click a heading to sort by it; "
        f'<a href="{WORKLIST}" download>download every practice\'s worklist</a>.</p>'
        + "".join(parts)
        + "</section>"
    )


def coverage_lines(c: Coverage | None) -> list[str]:
    """Who was not screened and why, and what the date does to the result, in sentences."""
    if c is None:
        return []
    lines = []
    if c.left_out:
        lines.append(f"{c.left_out:,} of {c.records:,} not screened: " + "; ".join(c.reasons()))
    advice = c.advice()
    if advice:
        lines.append(advice)
    return lines


def coverage_section(result: ScreenResult) -> str:
    """The report's explanation of an empty or surprising result (and who was left out)."""
    c = result.coverage
    lines = coverage_lines(c)
    if result.people and not result.gaps.num_rows:
        lines.append(
            f"None of the {result.people:,} {_people(result.people)} screened has a care gap."
        )
    if not lines:
        return ""
    surprising = c is not None and (c.screened == 0 or bool(c.advice()))
    cls = ' class="notice"' if surprising else ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div{cls} role="note"><ul>{items}</ul></div>'


SORT_SCRIPT = """
<script>
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.querySelector("button").addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var numeric = th.hasAttribute("data-numeric");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        function key(row) {
          var cell = row.cells[col];
          var v = cell.getAttribute("data-sort");
          if (v === null) { v = cell.textContent.trim(); }
          return numeric ? Number(v.replace(/,/g, "")) : v;
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = numeric ? x - y : String(x).localeCompare(String(y));
          return up ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
</script>"""


def _people(n: int) -> str:
    return "person" if n == 1 else "people"
