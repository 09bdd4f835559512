"""The options `screen` and `fhir-import` share for reading a FHIR server: a Bulk Data
export with SMART Backend Services (``b12dx.bulk``), shown with a progress bar."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from b12dx.bulk.defaults import DEFAULT_SCOPE, DEFAULT_WAIT_S

__all__ = ["DEFAULT_SCOPE", "DEFAULT_WAIT_S", "ExportOptions", "export", "is_server_url"]

ClientIdOption = Annotated[
    str | None,
    typer.Option(
        "--client-id",
        help="A FHIR server INPUT: the client id registered with its authorisation server "
        "(SMART Backend Services); none: the server is open.",
    ),
]
PrivateKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--private-key",
        help="With --client-id: the client's private key (PEM; RSA for RS384, EC P-384 for "
        "ES384), whose public key the server holds in the client's JWKS.",
    ),
]
KeyIdOption = Annotated[
    str | None,
    typer.Option("--key-id", help="With --client-id: the key's kid in the client's JWKS."),
]
ScopeOption = Annotated[
    str,
    typer.Option("--scope", help="With --client-id: the scopes asked for."),
]
TokenUrlOption = Annotated[
    str | None,
    typer.Option(
        "--token-url",
        help="With --client-id: the token endpoint; default: the server's "
        ".well-known/smart-configuration.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="A FHIR server INPUT: export only resources changed since this instant "
        "(_since; e.g. 2026-01-01T00:00:00Z).",
    ),
]
ExportWaitOption = Annotated[
    float,
    typer.Option(
        "--export-wait",
        help="A FHIR server INPUT: the longest the server may take to prepare the export, "
        "in seconds.",
    ),
]


@dataclass(frozen=True)
class ExportOptions:
    client_id: str | None
    private_key: Path | None
    key_id: str | None
    scope: str
    token_url: str | None
    since: str | None
    export_wait: float

    def misplaced(self) -> str | None:
        """Why these options cannot be used when INPUT is not a FHIR server, if any was
        given."""
        names = {
            "--client-id": self.client_id,
            "--private-key": self.private_key,
            "--key-id": self.key_id,
            "--token-url": self.token_url,
            "--since": self.since,
        }
        given = [name for name, value in names.items() if value is not None]
        return f"{given[0]}: only used with a FHIR server INPUT (https://...)" if given else None


def is_server_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def export(url: str, folder: Path, options: ExportOptions) -> Path:
    """Export ``url`` into ``folder`` with a progress bar on standard error; the folder.
    A failure is a B12dxError (nothing is left in ``folder``)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from b12dx.bulk.auth import BackendAuth
    from b12dx.bulk.export import BulkExport, ExportTarget
    from b12dx.bulk.export import Progress as State
    from b12dx.errors import InputError

    if (options.client_id is None) != (options.private_key is None):
        raise InputError.single(
            "--client-id" if options.client_id is None else "--private-key",
            "is needed with the other: the client id and its private key go together",
        )
    auth = (
        BackendAuth(
            options.client_id,
            options.private_key,
            options.key_id,
            options.scope,
            options.token_url,
        )
        if options.client_id is not None and options.private_key is not None
        else None
    )
    target = ExportTarget.parse(url)
    with Progress(
        TextColumn("{task.description}", markup=False),  # the server's words, as text
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=(console := Console(stderr=True)),
        transient=True,
        disable=not console.is_terminal,  # a bar is for a terminal
    ) as bar:
        task = bar.add_task("starting the export", total=None)

        def report(state: State) -> None:
            bar.update(task, description=state.status, completed=state.bytes)

        BulkExport(target, folder, auth, options.since, options.export_wait, report=report).run()
    sys.stderr.write(f"exported {url} into {folder}\n")
    return folder
