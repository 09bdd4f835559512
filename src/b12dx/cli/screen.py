"""``b12dx screen``: care gaps across a whole population (``b12dx.screen``)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from b12dx.cli.export_options import (
    DEFAULT_SCOPE,
    DEFAULT_WAIT_S,
    ClientIdOption,
    ExportOptions,
    ExportWaitOption,
    KeyIdOption,
    PrivateKeyOption,
    ScopeOption,
    SinceOption,
    TokenUrlOption,
    export,
    is_server_url,
)


def _as_of(source: Path | None, as_of: str | None) -> tuple[dt.date, bool]:
    """The screening date, and whether it is the one synthetic data was made for: --as-of
    wins; else the date in the input's b12dx-synth.json (``b12dx synth`` histories end on
    it, and screened as of today their gaps are miscounted); else today."""
    from b12dx.cli.io import parse_date
    from b12dx.synth.generate import made_for

    if as_of:
        return parse_date(as_of, "--as-of"), False
    made = made_for(source) if source is not None and source.is_dir() else None
    return (made, True) if made is not None else (dt.date.today(), False)


def register(app: typer.Typer) -> None:
    @app.command("screen")
    def screen_command(
        out: Annotated[Path, typer.Option("--out", help="Folder for the results.")],
        input_: Annotated[
            str | None,
            typer.Argument(
                metavar="INPUT",
                help="A FHIR Bulk Data export folder (NDJSON), OMOP CDM 5.4 tables (a "
                "folder of CSV or Parquet), or an OMOP CDM in PostgreSQL "
                "(postgresql://user@host/database, with --cdm-schema). None with "
                "--engine spark --cdm-schema: the OMOP tables of that database of the "
                "Spark catalog.",
                show_default=False,
            ),
        ] = None,
        engine: Annotated[
            str, typer.Option("--engine", help="duckdb (default, embedded) or spark.")
        ] = "duckdb",
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="Screen as of this date (YYYY-MM-DD); default: the date `b12dx synth` "
                "made the input for (its b12dx-synth.json), else today.",
            ),
        ] = None,
        profile: Annotated[
            str | None,
            typer.Option("--profile", "-p", help="nice-ng239 (default), bsh-2014, us-label."),
        ] = None,
        force: Annotated[
            bool,
            typer.Option("--force", help="Write into an --out folder that is not empty."),
        ] = False,
        omop_type_concepts: Annotated[
            str | None,
            typer.Option(
                "--omop-type-concepts",
                help="OMOP input: keep only drug exposures and measurements of these "
                "provenances (drug_type_concept_id / measurement_type_concept_id, "
                "comma-separated, e.g. 32817 for EHR records); default: all.",
            ),
        ] = None,
        spark_master: Annotated[
            str | None,
            typer.Option(
                "--spark-master",
                help="With --engine spark: the cluster (spark://host:7077, yarn, k8s://...); "
                "default $B12DX_SPARK_MASTER, else local[*] on this machine.",
            ),
        ] = None,
        cdm_schema: Annotated[
            str | None,
            typer.Option(
                "--cdm-schema",
                help="A PostgreSQL INPUT: the schema holding the CDM's clinical tables "
                "(read only); with --engine spark and no INPUT, the database of the Spark "
                "catalog holding them (catalog.database where the catalog has three levels).",
            ),
        ] = None,
        vocabulary_schema: Annotated[
            str | None,
            typer.Option(
                "--vocabulary-schema",
                help="A PostgreSQL INPUT or the Spark catalog: the schema holding concept, "
                "concept_relationship and concept_ancestor; default: the CDM schema.",
            ),
        ] = None,
        client_id: ClientIdOption = None,
        private_key: PrivateKeyOption = None,
        key_id: KeyIdOption = None,
        scope: ScopeOption = DEFAULT_SCOPE,
        token_url: TokenUrlOption = None,
        since: SinceOption = None,
        export_wait: ExportWaitOption = DEFAULT_WAIT_S,
        results_schema: Annotated[
            str | None,
            typer.Option(
                "--results-schema",
                help="A PostgreSQL INPUT: also write the gaps as the table b12dx_gaps in "
                "this schema (replaced whole on each run); the login needs CREATE there.",
            ),
        ] = None,
    ) -> None:
        """Care gaps across all patients: a new finding to be seen now, untested at risk,
        monitoring due, indeterminate not followed up, deficient untreated, folic acid
        without B12, maintenance overdue."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from b12dx.errors import B12dxError, MissingExtra
        from b12dx.extras import need

        database = (input_ or "").split(":", 1)[0].lower() in ("postgresql", "postgres")
        server = input_ is not None and is_server_url(input_)
        exporting = ExportOptions(
            client_id, private_key, key_id, scope, token_url, since, export_wait
        )
        try:
            need("screen", "b12dx screen")
            if server:
                need("bulk", "b12dx screen https://...")
            if database:
                need("screen-postgres", "b12dx screen postgresql://...")
            if engine == "spark":
                need("spark", "b12dx screen --engine spark")
        except MissingExtra as exc:
            sys.stderr.write(f"b12dx: error: {exc}\n")
            raise typer.Exit(2) from None
        from b12dx.cli.io import output_folder
        from b12dx.knowledge.loader import load_knowledge
        from b12dx.screen.report import console_summary, html_report
        from b12dx.screen.run import ENGINES, STEPS, screen
        from b12dx.synth.generate import MANIFEST

        def fail(message: str) -> None:
            sys.stderr.write(f"b12dx: error: {message}\n")
            raise typer.Exit(2)

        if engine not in ENGINES:
            fail(f"--engine: {engine!r} is not an engine (accepted: {', '.join(ENGINES)})")
        if spark_master is not None and engine != "spark":
            fail("--spark-master: only used with --engine spark")
        from b12dx.screen.cdm_database import CdmDatabase, SparkCatalog

        source: Path | CdmDatabase | SparkCatalog
        if input_ is None:
            if engine != "spark" or cdm_schema is None:
                fail(
                    "INPUT: required (a folder, or postgresql://...), except with --engine "
                    "spark --cdm-schema DATABASE to read the OMOP tables of the Spark catalog"
                )
                return
            if results_schema is not None:
                fail("--results-schema: only used with a PostgreSQL INPUT (postgresql://...)")
            try:
                source = SparkCatalog(cdm_schema, vocabulary_schema)
            except B12dxError as exc:
                fail(str(exc))
                return
        elif server:
            source = out / "export"
        elif database:
            if cdm_schema is None:
                fail(
                    "--cdm-schema: required with a PostgreSQL INPUT (the schema of the CDM's "
                    "person, drug_exposure, measurement... tables, e.g. cdm)"
                )
                return
            try:
                source = CdmDatabase(input_, cdm_schema, vocabulary_schema, results_schema)
            except B12dxError as exc:
                fail(str(exc))
                return
        else:
            for option, value in (
                ("--cdm-schema", cdm_schema),
                ("--vocabulary-schema", vocabulary_schema),
                ("--results-schema", results_schema),
            ):
                if value is not None:
                    fail(f"{option}: only used with a PostgreSQL INPUT (postgresql://...)")
            source = Path(input_)
        if not server and (misplaced := exporting.misplaced()):
            fail(misplaced)
        type_concepts: tuple[int, ...] = ()
        if omop_type_concepts is not None:
            parts = [p.strip() for p in omop_type_concepts.split(",") if p.strip()]
            if not parts or not all(p.isdigit() for p in parts):
                fail(
                    f"--omop-type-concepts: {omop_type_concepts!r} is not a list of concept "
                    "ids (accepted: whole numbers, comma-separated, e.g. 32817,32818)"
                )
            type_concepts = tuple(int(p) for p in parts)
        try:
            output_folder(out, "--out", force)
            began = time.time() - 1  # file times are whole seconds on some file systems
            if server:
                assert input_ is not None
                export(input_, out / "export", exporting)
            day, made = _as_of(source if isinstance(source, Path) else None, as_of)
            kb = load_knowledge()
            chosen = kb.profile(profile)
            console = Console(stderr=True)
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                # A bar is for a terminal; piped, it would leave a blank line before an
                # error or the summary.
                disable=not console.is_terminal,
            ) as progress:
                # One step per stage screen() announces, plus the report.
                task = progress.add_task("starting", total=STEPS + 1)
                started = False

                def step(name: str) -> None:
                    nonlocal started
                    progress.update(task, description=name, advance=1 if started else 0)
                    started = True

                result, _ = screen(
                    source, out, kb, chosen, day, engine, step, spark_master, type_concepts
                )
                step("writing report.html")
                html_report(result, out / "report.html", kb)
                progress.update(task, advance=1)
        except B12dxError as exc:
            fail(str(exc))
            return
        except OSError as exc:
            fail(f"{exc.filename or out}: {exc.strerror or exc}")
            return
        if made and isinstance(source, Path):  # not today: say why, before the counts
            sys.stdout.write(
                f"as of {day}, the date the synthetic data was made for ({source / MANIFEST}); "
                "give --as-of for another date\n"
            )
        console_summary(result, Console(), kb)
        # Every file this run wrote (the worklist and the per-gap lists too), and the
        # folders of person-level tables and of a server's export.
        written = sorted(
            p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")
            and p.stat().st_mtime >= began
        )  # fmt: skip
        folders = [f"{out / d}/" for d in ("tables", "export") if (out / d).is_dir()]
        for name in [*(str(out / n) for n in written), *folders]:
            sys.stdout.write(f"wrote {name}\n")
        if isinstance(source, CdmDatabase) and source.results_schema:
            table = f"{source.results_schema}.b12dx_gaps"
            sys.stdout.write(
                f"wrote {table} in {source.label}\n"
                if result.people
                else f"left {table} as it was: nobody was screened on {day}\n"
            )
