"""The terminal report: the assessment as sections a person can read, urgency first."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from b12dx.engine.schedule import dose_runs
from b12dx.knowledge.loader import load_knowledge
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
    for r in [*a.suspicion.reasons, *a.status_reasons]:
        console.print(f"  • {r.text} {_refs(r.sources, numbers)}")

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
            si = (
                f"{format_si(lab.value_si, kb.labs[lab.test].si_decimals)} {lab.unit_si}"
                if lab.value_si is not None
                else ""
            )
            band = lab.band if lab.used_for_status else f"[dim]{lab.band} (not used)[/]"
            style = "bold red" if lab.band in ("deficient", "elevated", "positive") else ""
            labs.add_row(
                kb.labs[lab.test].name,
                f"{lab.value} {lab.unit or ''}".strip(),
                si,
                f"[{style}]{band}[/]" if style else band,
                str(lab.date or ""),
                lab.reference_band or "",
            )
        console.print(labs)

    if a.next_steps:
        console.print("\n[bold]Next steps[/]")
        for i, step in enumerate(a.next_steps, 1):
            due = f" [bold](by {step.due})[/]" if step.due else ""
            console.print(f"  {i}. {step.text}{due} {_refs(step.sources, numbers)}")

    if a.warnings:
        console.print("\n[bold]Warnings[/]")
        for w in a.warnings:
            console.print(
                f"  [{SEVERITY_STYLE[w.severity]}]{w.severity.upper()}[/] {w.text} "
                f"{_refs(w.sources, numbers)}"
            )
    for n in a.notes:
        console.print(f"  [cyan]NOTE[/] {n.text} {_refs(n.sources, numbers)}")

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
        for rf in a.risk_factors:
            console.print(f"  • [bold]{rf.name}[/]: {rf.text} {_refs(rf.sources, numbers)}")

    dx = Table(title="Differential diagnosis", title_justify="left")
    dx.add_column("Fit")
    dx.add_column("Condition")
    dx.add_column("Features that match")
    for d in a.differentials:
        if d.fit == "poor":
            continue
        style = {"good": "bold", "partial": ""}[d.fit]
        dx.add_row(
            d.fit, f"[{style}]{d.name}[/]" if style else d.name, ", ".join(d.matched_features)
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
    for note in a.diet.notes:
        console.print(f"  • {note}")

    sources = Table.grid(padding=(0, 1))
    for c in a.citations:
        sources.add_row(f"[{numbers[c.id]}]", f"{c.title}" + (f" — {c.url}" if c.url else ""))
    console.print(Panel(Group(sources), title="Sources", border_style="dim"))
    console.print(f"[italic]{a.disclaimer}[/]")
