"""``b12dx screen``: care gaps across a whole population (``b12dx.screen``)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("screen")
    def screen_command(
        source: Annotated[
            Path,
            typer.Argument(
                metavar="INPUT",
                help="A FHIR Bulk Data export folder (NDJSON) or OMOP CDM 5.4 tables "
                "(CSV or Parquet).",
            ),
        ],
        out: Annotated[Path, typer.Option("--out", help="Folder for the results.")],
        engine: Annotated[
            str, typer.Option("--engine", help="duckdb (default, embedded) or spark.")
        ] = "duckdb",
        as_of: Annotated[
            str | None, typer.Option("--as-of", help="Screen as of this date (YYYY-MM-DD).")
        ] = None,
        profile: Annotated[
            str | None,
            typer.Option("--profile", "-p", help="nice-ng239 (default), bsh-2014, us-label."),
        ] = None,
    ) -> None:
        """Care gaps across all patients: untested at risk, monitoring due, indeterminate
        not followed up, deficient untreated, folic acid without B12, maintenance overdue."""
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from b12dx.cli.io import parse_date
        from b12dx.errors import B12dxError
        from b12dx.knowledge.loader import load_knowledge
        from b12dx.screen.report import console_summary, html_report
        from b12dx.screen.run import ENGINES, screen

        def fail(message: str) -> None:
            sys.stderr.write(f"b12dx: error: {message}\n")
            raise typer.Exit(2)

        if engine not in ENGINES:
            fail(f"--engine: {engine!r} is not an engine (accepted: {', '.join(ENGINES)})")
        try:
            day = parse_date(as_of, "--as-of") if as_of else dt.date.today()
            kb = load_knowledge()
            chosen = kb.profile(profile)
            console = Console(stderr=True)
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task("starting", total=None)

                def step(name: str) -> None:
                    progress.update(task, description=name)

                result, paths = screen(source, out, kb, chosen, day, engine, step)
                step("writing report.html")
                html_report(result, out / "report.html")
        except B12dxError as exc:
            fail(str(exc))
            return
        console_summary(result, Console())
        for name in [*paths, "report.html"]:
            sys.stdout.write(f"wrote {out / name}\n")
