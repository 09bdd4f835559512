"""``b12dx synth``: write a deterministic synthetic population to test and benchmark screening.

The population and its sources are ``b12dx.synth.generate``; this module only reads the
options, checks them and shows progress.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer

PROGRESS_FROM = 100_000  # patients: below this the command is done in a second or two


def _fail(message: str) -> None:
    sys.stderr.write(f"b12dx: error: {message}\n")
    raise typer.Exit(2)


def synth(
    patients: Annotated[
        int, typer.Option("--patients", help="How many people to generate (1 or more).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write into (created; must be empty).")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet (OMOP CDM 5.4 tables as Parquet, default), omop (the same as "
            "CSV) or ndjson (a FHIR R4 Bulk Data export).",
        ),
    ] = "parquet",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Reference date YYYY-MM-DD (default 2026-06-30)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that is not empty.")
    ] = False,
) -> None:
    """Write a synthetic population (diets, medicines, conditions, symptoms, B12/MMA
    results, B12 treatment) with every screening gap and its near miss."""
    from b12dx.errors import MissingExtra
    from b12dx.extras import need

    try:
        need("screen", "b12dx synth")
    except MissingExtra as exc:
        _fail(str(exc))
    from b12dx.cli.io import output_folder
    from b12dx.errors import InputError
    from b12dx.synth.generate import DEFAULT_AS_OF, FORMATS, generate

    if patients < 1:
        _fail(f"--patients is {patients}; give a whole number of 1 or more")
    if fmt not in FORMATS:
        _fail(f"--format is {fmt!r}; accepted: {', '.join(FORMATS)}")
    reference = DEFAULT_AS_OF
    if as_of is not None:
        try:
            reference = dt.date.fromisoformat(as_of)
        except ValueError:
            _fail(f"--as-of is {as_of!r}; give a date as YYYY-MM-DD")
    try:
        output_folder(out, "--out", force)
    except InputError as exc:
        _fail(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--out {out} cannot be created ({exc.strerror})")

    if patients < PROGRESS_FROM:
        generate(patients, out, fmt, seed, reference)  # type: ignore[arg-type]
    else:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("Generating", total=patients)
            generate(
                patients, out, fmt, seed, reference,  # type: ignore[arg-type]
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
    sys.stderr.write(f"b12dx: wrote {patients} patients ({fmt}) to {out}\n")


def register(app: typer.Typer) -> None:
    """Add ``synth`` to ``b12dx``."""
    app.command("synth")(synth)
