"""``b12dx``: the command line. Each command reads, calls the library and prints; the
clinical decisions are all the engine's.

Exit status: 0 done; 2 bad input or usage (one message on standard error naming the field
and what is accepted); 1 an unexpected failure (a bug).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from b12dx.cli import followup, screen, synth
from b12dx.cli.accounts import practice_app, user_app
from b12dx.cli.export_options import (
    DEFAULT_SCOPE,
    DEFAULT_WAIT_S,
    ClientIdOption,
    ExportWaitOption,
    KeyIdOption,
    PrivateKeyOption,
    ScopeOption,
    SinceOption,
    TokenUrlOption,
)
from b12dx.errors import B12dxError, InputError

app = typer.Typer(
    rich_markup_mode=None,
    name="b12dx",
    help="Decision support for vitamin B12 deficiency with neurological or muscular "
    "involvement. It supports and does not replace a clinician's judgement.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.add_typer(practice_app, name="practice")
app.add_typer(user_app, name="user")


def _version(shown: bool) -> None:
    if shown:
        from b12dx.version import versions

        typer.echo(" ".join(f"{name} {value}" for name, value in versions().items()))
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the package, engine, knowledge and contract versions, and exit.",
        ),
    ] = False,
) -> None:
    """Decision support for vitamin B12 deficiency with neurological or muscular
    involvement. It supports and does not replace a clinician's judgement."""


ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Guideline profile: nice-ng239 (default), bsh-2014, us-label."
    ),
]


def _fail(message: str) -> None:
    sys.stderr.write(f"b12dx: error: {message}\n")
    sys.exit(2)


@app.command()
def assess(
    file: Annotated[
        str,
        typer.Argument(
            help="Patient record (JSON, contract v1) or a FHIR R4 Bundle of one patient; "
            "'-' reads stdin."
        ),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the contract's assessment JSON only.")
    ] = False,
    fhir_out: Annotated[
        bool,
        typer.Option(
            "--fhir",
            help="Print a FHIR R4 Bundle: RiskAssessment, ServiceRequests for the next tests, "
            "MedicationRequest for the regimen.",
        ),
    ] = False,
    profile: ProfileOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Assess as of this date (YYYY-MM-DD); default: the record's as_of, else today.",
        ),
    ] = None,
    brief: Annotated[
        bool,
        typer.Option(
            "--brief", help="Only the urgency, what to do now, the results and the schedule."
        ),
    ] = False,
) -> None:
    """Assess one person: testing, suspicion, labs, status, urgency, plan, sources."""
    from b12dx.cli.io import parse_date, read_record
    from b12dx.engine.assess import assess as run
    from b12dx.fhir.read import is_fhir

    if json_out and fhir_out:  # each prints one document on its own; neither may win
        raise InputError.single("", "--json and --fhir cannot be used together")
    if brief and (json_out or fhir_out):
        raise InputError.single("", "--brief is for the terminal report: not with --json or --fhir")
    record = read_record(file)
    when: dt.date | None = parse_date(as_of, "--as-of") if as_of else None
    if is_fhir(record):
        from b12dx.fhir.assess import assess_bundle

        result = assess_bundle(record, as_of=when or dt.date.today(), profile=profile)
    else:
        if when is None and isinstance(record, dict) and record.get("as_of") is None:
            when = dt.date.today()  # the adapter, not the engine, reads the clock
        result = run(record, profile=profile, as_of=when)
    if fhir_out:
        from b12dx.fhir.out import assessment_bundle
        from b12dx.knowledge.loader import load_knowledge

        patient = result.fhir_input.patient if result.fhir_input else None
        bundle = assessment_bundle(load_knowledge(), result, patient)
        sys.stdout.write(json.dumps(bundle, indent=2) + "\n")
        return
    if json_out:
        sys.stdout.write(result.model_dump_json(indent=2, exclude_none=False) + "\n")
        return
    from rich.console import Console

    from b12dx.cli.report import render, render_brief

    console = Console()
    if brief:
        render_brief(result, console)
    elif console.is_terminal:
        # The full report is longer than a screen: page it, as git and man do. less shows
        # the report's colours only with -R; like git, say so when LESS is unset (F: quit
        # when it fits the screen, R: colours, X: leave it on the screen), and keep a
        # reader's own LESS.
        os.environ.setdefault("LESS", "FRX")
        with console.pager(styles=True):
            render(result, console)
    else:
        render(result, console)


@app.command("fhir-import")
def fhir_import(
    directory: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="A FHIR Bulk Data export (a folder of NDJSON files), or a FHIR server to "
            "export from (https://.../fhir, .../fhir/Group/ID or .../fhir/Patient).",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write one record per patient (<id>.json) and import-report.json here; "
            "default: JSON Lines on standard output.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Build the records as of this date; default today."),
    ] = None,
    with_assessment: Annotated[
        bool, typer.Option("--assess", help="Also assess each patient and print a summary table.")
    ] = False,
    profile: ProfileOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into an --out folder that is not empty.")
    ] = False,
    client_id: ClientIdOption = None,
    private_key: PrivateKeyOption = None,
    key_id: KeyIdOption = None,
    scope: ScopeOption = DEFAULT_SCOPE,
    token_url: TokenUrlOption = None,
    since: SinceOption = None,
    export_wait: ExportWaitOption = DEFAULT_WAIT_S,
) -> None:
    """Read a FHIR Bulk export (a folder, or exported from a FHIR server) and build one
    patient record per Patient."""
    import tempfile

    from b12dx.cli.bulk import run_import
    from b12dx.cli.export_options import ExportOptions, export, is_server_url
    from b12dx.cli.io import output_folder, parse_date
    from b12dx.errors import MissingExtra
    from b12dx.extras import need

    when = parse_date(as_of, "--as-of") if as_of else dt.date.today()
    if out is not None:
        out = output_folder(out, "--out", force)
    exporting = ExportOptions(client_id, private_key, key_id, scope, token_url, since, export_wait)
    if not is_server_url(directory):
        if misplaced := exporting.misplaced():
            _fail(misplaced)
        run_import(Path(directory), out, when, with_assessment, profile)
        return
    try:
        need("bulk", "b12dx fhir-import https://...")
        if out is not None:  # the export is kept beside the records
            run_import(export(directory, out / "export", exporting), out, when,
                       with_assessment, profile)  # fmt: skip
            return
        with tempfile.TemporaryDirectory(prefix="b12dx-export-") as folder:
            run_import(export(directory, Path(folder) / "export", exporting), None, when,
                       with_assessment, profile)  # fmt: skip
    except (B12dxError, MissingExtra) as exc:
        _fail(str(exc))


@app.command()
def schema(
    which: Annotated[str, typer.Argument(help="input or output", metavar="input|output")],
) -> None:
    """Print the JSON Schema of the contract's input or output."""
    from b12dx.schema import input_schema, output_schema

    if which not in ("input", "output"):
        raise InputError.single("which", f"{which!r} is not a schema", "input, output")
    chosen = input_schema() if which == "input" else output_schema()
    sys.stdout.write(json.dumps(chosen, indent=2) + "\n")


@app.command()
def explain(
    entry_id: Annotated[
        str, typer.Argument(metavar="ID", help="A rule, symptom, risk factor, test, regimen... id.")
    ],
) -> None:
    """Explain one knowledge-base entry with its sources."""
    from b12dx.cli.browse import explain as show

    show(entry_id)


@app.command()
def knowledge(
    topic: Annotated[
        str | None, typer.Argument(help="A topic, e.g. symptoms; omit to list topics.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List the knowledge base: its topics, or the entries of one topic."""
    from b12dx.cli.browse import listing

    listing(topic, as_json=json_out)


@app.command()
def example(
    name: Annotated[str | None, typer.Argument(help="Example name; omit to list them.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="List the examples as JSON (name, description).")
    ] = False,
) -> None:
    """Print a ready example patient (pipe it into `b12dx assess -`), or list them."""
    from b12dx import examples

    if json_out:
        if name is not None:  # an example is JSON already
            raise InputError.single("--json", "lists the examples: give no NAME with it")
        listed = [{"name": k, "description": d} for k, d in examples.catalogue().items()]
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
        return
    if name is None:
        for key, description in examples.catalogue().items():
            sys.stdout.write(f"{key:32} {description}\n")
        return
    sys.stdout.write(examples.text(name))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless told).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log each request (method, path, status).")
    ] = False,
    cds_issuers: Annotated[
        Path | None,
        typer.Option(
            "--cds-issuers",
            help="JSON file of the EHRs trusted to call the CDS Hooks services (issuer and "
            "JWKS URL or keys); default: B12DX_CDS_ISSUERS.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Follow-up database URL or SQLite file; default: B12DX_DATABASE_URL."
        ),
    ] = None,
    require_login: Annotated[
        bool | None,
        typer.Option(
            "--require-login/--no-require-login",
            help="Sign-in for the follow-up pages; default: required unless --host is "
            "loopback. Off is refused beyond loopback.",
        ),
    ] = None,
    cds_cors_origins: Annotated[
        str | None,
        typer.Option(
            "--cds-cors-origins",
            help="Web origins whose pages may call the CDS Hooks services (CORS), "
            "comma-separated, e.g. https://sandbox.cds-hooks.org, or *; default: "
            "B12DX_CDS_CORS_ORIGINS, else none.",
        ),
    ] = None,
    cds_open: Annotated[
        bool,
        typer.Option(
            "--cds-open",
            help="Serve CDS Hooks beyond loopback without client authentication (refused "
            "otherwise: every CDS call should carry a signed JWT).",
        ),
    ] = False,
    head_timeout: Annotated[
        float,
        typer.Option(
            "--head-timeout",
            help="Seconds a client has to send the request line and headers (then 408).",
            min=0.1,
        ),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout",
            help="Seconds a client has to send the whole body after the headers (then 408).",
            min=0.1,
        ),
    ] = 60.0,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            help="Open connections per worker; the next is answered 503 and closed.",
            min=1,
        ),
    ] = 2000,
    max_requests: Annotated[
        int,
        typer.Option(
            "--max-requests",
            help="Requests answered at once per worker; the next is answered 503.",
            min=1,
        ),
    ] = 200,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            "--trusted-proxies",
            help="Addresses of the reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto headers are believed, comma-separated (e.g. 127.0.0.1 for a "
            "proxy on this machine); default: none, so no client can choose the address its "
            "sign-in attempts are counted against.",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="The https URL users and health records reach the server at (behind a "
            "proxy); required beyond loopback: CDS tokens' audience and every link are built "
            "from it, never from a request's Host header. Given on loopback it means a proxy "
            "in front, so sign-in is required. Default: B12DX_PUBLIC_URL.",
        ),
    ] = None,
) -> None:
    """Start the web app (patient check, clinician view, follow-up), the JSON API and CDS
    Hooks. Connection limits: a request head of 16 KiB at most (431; a request target of
    8 KiB, 414), sent within --head-timeout, its body within --body-timeout (408),
    --max-connections and --max-requests per worker (503), idle keep-alive closed after
    5 s (the Security page of the documentation)."""
    import os

    from b12dx.extras import need

    need("web", "b12dx serve")
    import uvicorn

    from b12dx.cds.auth import load_issuers
    from b12dx.cds.routes import ENV_CDS_OPEN, ENV_CORS_ORIGINS, cors_origins
    from b12dx.network import is_loopback
    from b12dx.web.settings import ENV_CDS_OPEN_WARNED, check_port, configure_serve

    if public_url is not None:
        os.environ["B12DX_PUBLIC_URL"] = public_url
    proxies = [p.strip() for p in (trusted_proxies or "").split(",") if p.strip()]
    # A public URL or trusted proxies mean a proxy in front: its requests come from this
    # machine with a local Host, so loopback alone says nothing about who is asking.
    behind_proxy = bool(os.environ.get("B12DX_PUBLIC_URL")) or bool(proxies)
    exposed = not is_loopback(host) or behind_proxy
    if not is_loopback(host) and not os.environ.get("B12DX_PUBLIC_URL"):
        # A JWT minted for another service on the same path, sent with this server's
        # name in its Host header, would otherwise be taken as addressed to it.
        raise InputError.single(
            "--public-url",
            f"serving on {host} needs the URL users reach it at: the CDS tokens' audience "
            "and the links are built from it, never from a request's Host header",
            "--public-url https://... (or B12DX_PUBLIC_URL)",
        )
    if cds_issuers is not None:
        os.environ["B12DX_CDS_ISSUERS"] = str(cds_issuers)
    issuers_file = os.environ.get("B12DX_CDS_ISSUERS")
    if not issuers_file and exposed and not cds_open:
        # CDS Hooks: every call carries a JWT. Beyond this machine, no issuers means no
        # client authentication, which is only served when asked for in so many words.
        raise InputError.single(
            "--cds-issuers",
            f"CDS Hooks on {host} without trusted issuers would answer anyone who reaches it",
            "--cds-issuers FILE (or B12DX_CDS_ISSUERS), or --cds-open to serve CDS unauthenticated",
        )
    if cds_open:
        os.environ[ENV_CDS_OPEN] = "1"
    if cds_cors_origins is not None:
        os.environ[ENV_CORS_ORIGINS] = cds_cors_origins
    try:
        origins = cors_origins(os.environ.get(ENV_CORS_ORIGINS))
    except InputError as exc:
        raise InputError.single(
            "--cds-cors-origins", exc.errors[0].message, exc.errors[0].accepted
        ) from None

    check_port(host, port)  # before the database is opened or made
    for line in configure_serve(host, db, require_login, behind_proxy):
        sys.stderr.write(f"b12dx: {line}\n")

    if issuers_file:
        try:
            count = len(load_issuers(Path(issuers_file)))
        except ValueError as exc:
            raise InputError.single("--cds-issuers", str(exc)) from None
        sys.stderr.write(f"b12dx: CDS Hooks clients must authenticate ({count} issuers).\n")
    else:
        # True to what the server does (cds/routes.py): without --cds-open only this
        # machine, by a loopback name, is answered.
        who = (
            "any caller can use /cds-services"
            if cds_open
            else "only programs on this machine, calling it by a loopback name, can use "
            "/cds-services"
        )
        sys.stderr.write(
            f"b12dx: WARNING: CDS Hooks client authentication is off; {who}. "
            "Give --cds-issuers FILE to require signed JWTs.\n"
        )
        os.environ[ENV_CDS_OPEN_WARNED] = "1"  # said once here, not again by each worker

    if origins:
        sys.stderr.write(f"b12dx: CDS Hooks may be called by pages of: {', '.join(origins)}\n")
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(f"b12dx: serving on {host}: reachable beyond this machine.\n")
    from b12dx.web.server import Limits, raise_open_files_limit

    limits = Limits(head_timeout, body_timeout, max_connections, max_requests)
    os.environ.update(limits.to_env())  # each worker reads them (web/server.py)
    # Room for every worker's connections, its database and log files.
    raise_open_files_limit(max_connections * workers + 256)
    uvicorn.run(
        "b12dx.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
        server_header=False,
        http="b12dx.web.server:GuardedProtocol",
        timeout_keep_alive=5,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told: only the proxies
        # named are believed, none by default.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


# patient, record, due, backup, restore: follow-up over time (b12dx.store)
followup.register(app)
screen.register(app)
synth.register(app)  # synthetic population for screening (b12dx.synth.generate)


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors exit 2 (click); b12dx errors exit 2 with one message."""
    try:
        app(args=argv)
    except InputError as exc:
        lines = [str(e) for e in exc.errors]
        message = (
            lines[0]
            if len(lines) == 1
            else (f"{len(lines)} problems in the input:\n  " + "\n  ".join(lines))
        )
        _fail(f"invalid input: {message}")
    except B12dxError as exc:
        _fail(str(exc))
    except ModuleNotFoundError as exc:
        # A command whose extra is not installed, reached before its own check.
        from b12dx.extras import extra_of, missing_extra

        extra = extra_of(exc.name)
        if extra is None or exc.name is None:
            raise
        command = " ".join(["b12dx", *(argv if argv is not None else sys.argv[1:])[:1]])
        _fail(str(missing_extra(extra, command, [exc.name])))
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
