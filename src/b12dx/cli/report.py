"""The terminal report: the assessment as sections a person can read, urgency first."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from b12dx.engine.schedule import dose_runs
from b12dx.knowledge.loader import load_knowledge
from b12dx.knowledge.wording import feature_words, short_lab_name, unit_words
from b12dx.models.assessment import Assessment
from b12dx.numbers import format_si

URGENCY_STYLE = {
    "emergency": "bold white on red",
    "urgent": "bold red",
    "soon": "bold yellow",
    "routine": "bold cyan",
    "self_care": "bold green",
}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
PROGRESS_STYLE = {
    "improved": "green",
    "not_improved": "bold red",
    "not_rated": "yellow",
    "pending": "dim",
}
STEP_MARK = {
    "done": "[green]✓[/]",
    "current": "[bold yellow]▶[/]",
    "pending": "·",
    "not_needed": "[dim]–[/]",
}


def _refs(sources: Iterable[str], numbers: dict[str, int]) -> str:
    return "[dim]" + "".join(f"[{numbers[s]}]" for s in sources if s in numbers) + "[/]"


def _items(console: Console, rows: Iterable[tuple[str, str]]) -> None:
    """A list whose wrapped lines hang under their text, not under the bullet."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for mark, text in rows:
        grid.add_row(mark, text)
    console.print(grid)


def _do_now(a: Assessment) -> list[str]:
    """The two or three lines a clinician acts on first."""
    if a.red_flags:
        names = ", ".join(f.name.lower() for f in a.red_flags)
        return [f"[bold]Emergency assessment now[/] (not B12 until proven otherwise): {names}"]
    lines = []
    t = a.treatment
    if t is not None and not t.under_way:
        runs = dose_runs(t.schedule)
        then = f"; then {runs[0][3]}" if runs else ""
        if len(runs) > 1:
            then += f", later {runs[-1][3]}"
        drug = t.drug[:1].upper() + t.drug[1:]
        lines.append(f"[bold]{drug} {t.dose} {t.route.upper()}[/], first dose {t.start}{then}")
    for step in a.next_steps[: 3 - len(lines)]:
        lines.append(step.text + (f" [bold](by {step.due})[/]" if step.due else ""))
    return lines


def render_brief(a: Assessment, console: Console | None = None) -> None:
    """`b12dx assess --brief`: urgency, what to do now, the results and the schedule."""
    console = console or Console()
    kb = load_knowledge()
    status = a.deficiency_status.replace("_", " ")
    console.print(
        Text(f" {a.urgency.replace('_', ' ').upper()} ", style=URGENCY_STYLE[a.urgency]),
        f"[bold]{kb.urgency[a.urgency].plain}[/] Deficiency {status}.",
    )
    console.print("[bold]Do now[/]")
    _items(console, ((f"{i}.", line) for i, line in enumerate(_do_now(a), 1)))
    if a.labs:
        console.print("[bold]Results[/]")
        rows = []
        for lab in a.labs:
            value = f"{lab.value:g}" if isinstance(lab.value, int | float) else str(lab.value)
            written = f"{value} {unit_words(lab.unit)}".strip()
            when = f" ({lab.date})" if lab.date else ""
            rows.append(
                ("•", f"{short_lab_name(kb, lab.test)} {written}: [bold]{lab.band}[/]{when}")
            )
        _items(console, rows)
    if a.treatment is not None:
        console.print("[bold]Schedule[/]")
        _items(
            console,
            (
                ("•", f"{phase}: {start} to {end}, {interval} ({count} doses of {dose})")
                for phase, start, end, interval, count, dose in dose_runs(a.treatment.schedule)
            ),
        )


def render(a: Assessment, console: Console | None = None) -> None:
    console = console or Console()
    kb = load_knowledge()
    numbers = {c.id: i for i, c in enumerate(a.citations, 1)}

    head = Text()
    head.append(f" {a.urgency.replace('_', ' ').upper()} ", style=URGENCY_STYLE[a.urgency])
    head.append(f"  {kb.urgency[a.urgency].plain}\n", style="bold")
    for r in a.urgency_reasons:
        # The urgency line cites its rule and sources, as every other line does.
        cited = "".join(f"[{numbers[x]}]" for x in r.sources if x in numbers)
        head.append(f"{r.text} ")
        head.append(f"(rule {r.rule}; sources {cited})\n", style="dim")
    console.print(
        Panel(
            head,
            title=f"B12 assessment · as of {a.as_of} · profile {a.profile}",
            border_style=URGENCY_STYLE[a.urgency].split()[-1],
        )
    )

    if a.red_flags:
        flags = Table.grid(padding=(0, 1))
        for flag in a.red_flags:
            flags.add_row("[bold red]![/]", f"[bold]{flag.name}[/]")
        console.print(Panel(flags, title="Red flags: not B12, emergency now", border_style="red"))

    summary = Table.grid(padding=(0, 2))
    summary.add_row("Testing indicated", "yes" if a.testing_recommended else "no")
    summary.add_row("Suspicion", f"[bold]{a.suspicion.level}[/]")
    summary.add_row("Neurological involvement", "yes" if a.neurological_involvement else "no")
    summary.add_row("Deficiency status", f"[bold]{a.deficiency_status.replace('_', ' ')}[/]")
    console.print(Panel(summary, title="Summary", border_style="blue"))
    _items(
        console,
        (
            ("  •", f"{r.text} {_refs(r.sources, numbers)}")
            for r in [*a.suspicion.reasons, *a.status_reasons]
        ),
    )

    steps = "  ".join(f"{STEP_MARK[s.state]} {s.name}" for s in a.diagnostic_pathway.steps)
    console.print(f"\n[bold]Diagnostic pathway[/]  {steps}")
    console.print(f"  {a.diagnostic_pathway.text}")
    for s in a.diagnostic_pathway.steps:
        if s.note:
            console.print(f"  {s.name}: {s.state.replace('_', ' ')} ({s.note})")

    if a.labs:
        labs = Table(title="Lab results", title_justify="left", expand=False)
        for col in ("Test", "Result", "SI", "Band", "Date", "Lab's range"):
            labs.add_column(col)
        for lab in a.labs:
            si = ""
            if lab.value_si is not None and lab.unit != lab.unit_si:  # not the same twice
                si_value = format_si(lab.value_si, kb.labs[lab.test].si_decimals)
                si = f"{si_value} {unit_words(lab.unit_si)}"
            band = lab.band if lab.used_for_status else f"[dim]{lab.band} (not used)[/]"
            style = "bold red" if lab.band in ("deficient", "elevated", "positive") else ""
            labs.add_row(
                short_lab_name(kb, lab.test),
                # One number format on every door: 140, never 140.0 (a stored result
                # is a float).
                f"{_written(lab.value)} {unit_words(lab.unit)}".strip(),
                si,
                f"[{style}]{band}[/]" if style else band,
                str(lab.date or ""),
                lab.reference_band or "",
            )
        console.print(labs)

    if a.next_steps:
        console.print("\n[bold]Next steps[/]")
        _items(
            console,
            (
                (
                    f"  {i}.",
                    step.text
                    + (f" [bold](by {step.due})[/]" if step.due else "")
                    + f" {_refs(step.sources, numbers)}",
                )
                for i, step in enumerate(a.next_steps, 1)
            ),
        )

    if a.warnings:
        console.print("\n[bold]Warnings[/]")
        _items(
            console,
            (
                (
                    f"  [{SEVERITY_STYLE[w.severity]}]{w.severity.upper()}[/]",
                    f"{w.text} {_refs(w.sources, numbers)}",
                )
                for w in a.warnings
            ),
        )
    _items(console, (("  [cyan]NOTE[/]", f"{n.text} {_refs(n.sources, numbers)}") for n in a.notes))

    t = a.treatment
    if t is not None:
        console.print(
            f"\n[bold]Treatment[/]: {t.name} — {t.dose} {t.route.upper()}, "
            f"{t.duration_text} {_refs(t.sources, numbers)}"
        )
        console.print(f"  {t.text}")
        plan = Table(title="Dose schedule", title_justify="left")
        for col in ("Phase", "From", "To", "How often", "Doses", "Dose"):
            plan.add_column(col)
        for phase, start, end, interval, count, dose in dose_runs(t.schedule):
            plan.add_row(phase, str(start), str(end), interval, str(count), dose)
        console.print(plan)
        console.print("  Review: " + ", ".join(str(d) for d in t.review_dates))

    if a.recovery_milestones:
        rec = Table(title="Expected recovery (from the first dose)", title_justify="left")
        rec.add_column("When")
        rec.add_column("Milestone")
        for m in a.recovery_milestones:
            rec.add_row(m.when_text, f"{m.name} {_refs(m.sources, numbers)}")
        console.print(rec)
        if a.recovery_outcome:
            console.print(f"  {a.recovery_outcome.text}")

    if a.recovery_progress:
        prog = Table(title="Recovery so far (symptom ratings)", title_justify="left")
        for col in ("Milestone", "By", "Status", "Symptom: at the start → latest"):
            prog.add_column(col)
        for p in a.recovery_progress:
            style = PROGRESS_STYLE[p.status]
            symptoms = "\n".join(
                f"{x.name}: {x.baseline_rating} ({x.baseline_date}) → "
                + (f"{x.latest_rating} ({x.latest_date})" if x.latest_rating else "not rated")
                for x in p.symptoms
            )
            prog.add_row(
                f"{p.name} {_refs(p.sources, numbers)}",
                str(p.expected_by),
                f"[{style}]{p.status.replace('_', ' ')}[/]",
                symptoms,
            )
        console.print(prog)

    if a.risk_factors:
        console.print("\n[bold]Risk factors[/]")
        _items(
            console,
            (
                ("  •", f"[bold]{rf.name}[/]: {rf.text} {_refs(rf.sources, numbers)}")
                for rf in a.risk_factors
            ),
        )

    dx = Table(title="Differential diagnosis", title_justify="left")
    dx.add_column("Fit")
    dx.add_column("Condition")
    dx.add_column("Features that match")
    for d in a.differentials:
        if d.fit == "poor":
            continue
        style = {"good": "bold", "partial": ""}[d.fit]
        dx.add_row(
            d.fit,
            f"[{style}]{d.name}[/]" if style else d.name,
            ", ".join(feature_words(kb, f) for f in d.matched_features),
        )
    if dx.row_count:
        console.print(dx)

    diet = Table(title=f"B12 in food · {a.diet.text}", title_justify="left")
    for col in ("Food", "Serving", "Micrograms", "% of daily need"):
        diet.add_column(col)
    for food in a.diet.foods[:8]:
        amount = f"{food.micrograms:g}" + (
            f"-{food.micrograms_max:g}" if food.micrograms_max else ""
        )
        share = food.percent_of_reference
        diet.add_row(
            food.name,
            food.serving,
            amount,
            f"{share if share is not None else food.percent_of_rda}%",
        )
    if a.diet.foods:
        console.print(diet)
    else:
        console.print(f"\n[bold]B12 in food[/]: {a.diet.text}")
    _items(console, (("  •", note) for note in a.diet.notes))

    sources = Table.grid(padding=(0, 1))
    sources.add_column(no_wrap=True)
    sources.add_column(overflow="fold")  # a long address wraps; it is never cut with "..."
    wording = False
    for c in a.citations:
        if c.kind == "seed" and not wording:
            # Listed last (engine/assess.py CITED_FIRST), under their own heading.
            wording = True
            sources.add_row(
                "",
                "[italic]Patient information articles (cited for the words "
                "given to patients, not as clinical evidence):[/]",
            )
        sources.add_row(f"[{numbers[c.id]}]", f"{c.title}" + (f" — {c.url}" if c.url else ""))
    console.print(Panel(Group(sources), title="Sources", border_style="dim"))
    console.print(f"[italic]{a.disclaimer}[/]")


def _written(value: object) -> str:
    """A result as a person writes it: 140, 1.6; a word as it is."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)
