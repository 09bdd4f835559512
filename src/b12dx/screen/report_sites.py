"""The screening report's breakdown by care site: a table of each site's people, counts
and rates per 1,000, and a funnel plot per gap (``funnel``), shown only when the input
says where people are registered (OMOP person.care_site_id, FHIR
Patient.managingOrganization or generalPractitioner)."""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Callable

from b12dx.screen.funnel import Z_95, Z_998, SiteRate, limits, overall_rate, site_rates
from b12dx.screen.report_lists import sortable
from b12dx.screen.run import ScreenResult

ANY = "any gap"
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 320, 64, 24, 16, 48
MARK = {"above 99.8%": "▲▲", "above 95%": "▲", "below 95%": "▼", "below 99.8%": "▼▼"}


def site_people(result: ScreenResult) -> dict[str, int]:
    """People screened per named site (the unnamed are counted apart)."""
    if result.care_sites is None:
        return {}
    return {
        site: people
        for site, people in zip(
            result.care_sites.column("care_site").to_pylist(),
            result.care_sites.column("people").to_pylist(),
            strict=True,
        )
        if site is not None
    }


def flagged_per_site(result: ScreenResult) -> dict[str, Counter[str]]:
    """gap (and ANY) -> site -> people flagged."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    anyone: dict[str, set[str]] = defaultdict(set)
    rows = result.gaps.select(["person_id", "gap", "care_site"]).to_pylist()
    for row in rows:
        if row["care_site"] is None:
            continue
        out[row["gap"]][row["care_site"]] += 1
        anyone[row["care_site"]].add(row["person_id"])
    out[ANY] = Counter({site: len(people) for site, people in anyone.items()})
    return out


def _nice(value: float) -> float:
    """A round axis top at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def funnel_svg(title: str, rates: list[SiteRate], rate: float, svg_id: str) -> str:
    """A funnel plot: sites as points (people screened across, rate per 1,000 up), the
    overall rate and its 95% and 99.8% limits as curves."""
    if not rates:
        return ""
    most = max(r.people for r in rates)
    x_top = _nice(most * 1.05)
    smallest = max(1, min(r.people for r in rates))
    y_top = _nice(
        max([r.per_1000 for r in rates] + [1000 * limits(rate, smallest, Z_998)[1]]) * 1.05
    )
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(n: float) -> float:
        return round(LEFT + plot_w * n / x_top, 1)

    def y(per_1000: float) -> float:
        return round(TOP + plot_h * (1 - min(per_1000, y_top) / y_top), 1)

    def curve(z: float, side: int) -> str:
        """A limit from the smallest site to the axis end, sampled on a log scale."""
        ns = sorted({max(1, round(smallest * (x_top / smallest) ** (i / 60))) for i in range(61)})
        return " ".join(f"{x(n)},{y(1000 * limits(rate, n, z)[side])}" for n in ns)

    parts = [
        f'<title id="{svg_id}-t">{html.escape(title)}</title>',
        f'<desc id="{svg_id}-d">{len(rates)} sites; overall {1000 * rate:.1f} per 1,000. '
        "Dashed lines: 95% limits; dotted: 99.8% limits. The table below has the same "
        "figures.</desc>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>',
    ]
    for i in range(5):
        v = y_top * i / 4
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(v) + 4}" text-anchor="end">{v:g}</text>'
            f'<line x1="{LEFT}" y1="{y(v)}" x2="{WIDTH - RIGHT}" y2="{y(v)}" stroke="#eee"/>'
        )
        n = x_top * i / 4
        parts.append(
            f'<text x="{x(n)}" y="{TOP + plot_h + 18}" text-anchor="middle">{n:,.0f}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">people screened '
        f'at the site</text><text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">per 1,000</text>'
    )
    parts.append(
        f'<line x1="{LEFT}" y1="{y(1000 * rate)}" x2="{WIDTH - RIGHT}" y2="{y(1000 * rate)}" '
        'stroke="#2b6cb0" stroke-width="2"/>'
    )
    for z, dash in ((Z_95, "6 4"), (Z_998, "2 3")):
        for side in (0, 1):
            points = curve(z, side)
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="#555" stroke-dasharray="{dash}"/>'
            )
    for r in rates:
        far = r.outside.endswith("99.8%")
        colour = "#a4000f" if far else ("#b7791f" if r.outside else "#2b6cb0")
        label = f"{r.site}: {r.flagged:,} of {r.people:,} ({r.per_1000:.1f} per 1,000)" + (
            f", {r.outside} limit" if r.outside else ""
        )
        parts.append(
            f'<circle cx="{x(r.people)}" cy="{y(r.per_1000)}" r="5" fill="{colour}">'
            f"<title>{html.escape(label)}</title></circle>"
        )
        if far:
            parts.append(
                f'<text x="{x(r.people) + 8}" y="{y(r.per_1000) + 4}">{html.escape(r.site)}</text>'
            )
    return (
        f'<svg role="img" aria-labelledby="{svg_id}-t {svg_id}-d" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="12">{"".join(parts)}</svg>'
    )


def care_site_section(result: ScreenResult, gaps: list[str], label: Callable[[str], str]) -> str:
    """The "By care site" section, or "" when the input names no site."""
    people = site_people(result)
    if not people:
        return ""
    flagged = flagged_per_site(result)
    unnamed = result.people - sum(people.values())
    shown = [ANY] + [g for g in gaps if flagged[g]]
    per_gap = {g: {r.site: r for r in site_rates(people, flagged[g])} for g in shown}
    rows = []
    for site, n in sorted(people.items(), key=lambda kv: (-kv[1], kv[0])):
        cells = []
        for g in shown:
            r = per_gap[g][site]
            mark = MARK.get(r.outside, "")
            note = f' title="{r.outside} limit"' if r.outside else ""
            cells.append(
                f'<td class=n data-sort="{r.per_1000:.3f}"{note}>{r.flagged:,}<br><small>'
                f"{r.per_1000:.1f}/1,000{(' ' + mark) if mark else ''}"
                f"{(' ' + r.outside) if r.outside else ''}</small></td>"
            )
        rows.append(f"<tr><td>{html.escape(site)}</td><td class=n>{n:,}</td>{''.join(cells)}</tr>")
    plots, outside = [], []
    for i, g in enumerate(shown):
        rates = list(per_gap[g].values())
        rate = overall_rate(people, flagged[g])
        name = label(g) if g != ANY else "Any gap"
        svg = funnel_svg(f"{name}: rate per 1,000 by site size", rates, rate, f"funnel-{i}")
        outliers = [r for r in rates if r.outside]
        outside += [(name, r) for r in outliers]
        said = (
            "; ".join(f"{html.escape(r.site)} {r.outside} limit" for r in outliers)
            if outliers
            else "no site outside the 95% limits"
        )
        body = f"<figure>{svg}<figcaption>{html.escape(name)}: {said}.</figcaption></figure>"
        plots.append(
            body
            if i == 0
            else f"<details><summary>Funnel plot: {html.escape(name)}</summary>{body}</details>"
        )
    unnamed_note = (
        f" {unnamed:,} people screened have no care site recorded and are left out of this "
        "breakdown."
        if unnamed
        else ""
    )
    return (
        '<section aria-labelledby="by-site"><h2 id="by-site">By care site</h2>'
        "<p>Patients flagged per site and per 1,000 people screened there. A small site's "
        "rate swings by chance, so compare sites on the funnel plot: a site outside the "
        "dotted 99.8% limits differs by more than chance (▲▲ above, ▼▼ below); between the "
        f"dashed 95% and dotted lines (▲, ▼) it is worth a look.{unnamed_note}</p>"
        + "".join(plots)
        + sortable(
            [("care site", False), ("screened", True)]
            + [(label(g) if g != ANY else ANY, True) for g in shown],
            rows,
            "Patients flagged per care site (sort a gap's column by its rate)",
        )
        + _outliers(outside)
        + "</section>"
    )


def _outliers(outside: list[tuple[str, SiteRate]]) -> str:
    """The sites outside a funnel's limits, named in a list (not only on the plot)."""
    if not outside:
        return "<p>No site is outside the 95% limits for any gap.</p>"
    level = {"above 99.8%": 4, "above 95%": 3, "below 95%": 2, "below 99.8%": 1}
    ordered = sorted(outside, key=lambda x: (-level[x[1].outside], -x[1].per_1000))
    rows = [
        f"<tr><td>{html.escape(r.site)}</td><td>{html.escape(gap)}</td>"
        f'<td data-sort="{level[r.outside]}">{MARK[r.outside]} {r.outside} limit</td>'
        f"<td class=n>{r.flagged:,}</td><td class=n>{r.people:,}</td>"
        f"<td class=n>{r.per_1000:.1f}</td></tr>"
        for gap, r in ordered
    ]
    return '<h3 id="outliers">Sites outside the limits</h3>' + sortable(
        [("care site", False), ("gap", False), ("where", True), ("patients", True),
         ("screened", True), ("per 1,000", True)],
        rows,
        "Sites outside the funnel's limits, furthest above first",
    )  # fmt: skip
