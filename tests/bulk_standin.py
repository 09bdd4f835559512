"""A small Bulk Data server serving a folder of NDJSON files, for what SMART's reference
server cannot be made to do: export a population the test chose (the parity test) and
fail mid-file (a connection broken half-way, a file shorter than the manifest says).

It follows the Bulk Data Access IG's exchange: GET ``/fhir/$export`` (or ``Group/ID`` or
``Patient``) with ``Prefer: respond-async`` -> 202 and ``Content-Location``; the status
URL -> 202 with ``Retry-After`` and ``X-Progress`` once, then 200 with the manifest; each
file with Range requests honoured; DELETE of the status URL -> 202. No authorisation.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from loopback import serving


@dataclass
class Faults:
    """What goes wrong: ``break_after`` bytes of the first file's first download are sent,
    then the connection is closed; ``short_by`` lines are left out of every file while
    the manifest counts them all; ``first_type`` is what the manifest calls the first
    file's type; ``status_host`` is where the kick-off says the status is."""

    break_after: int | None = None
    short_by: int = 0
    broken: bool = False
    # The first file's type as the manifest gives it; the host the status URL names.
    first_type: str | None = None
    status_host: str = "127.0.0.1"
    # A relative status URL; a refusal whose words carry terminal escapes; a manifest
    # sent gzip-compressed whatever was asked; extra bytes of padding in the manifest;
    # the token endpoint the server names.
    relative_status: bool = False
    refuse_with: str | None = None
    gzip_manifest: bool = False
    manifest_padding: int = 0
    # The manifest's padding nested this deep in arrays (valid JSON, small, deep).
    manifest_depth: int = 0
    token_endpoint: str | None = None


@dataclass
class Standin:
    folder: Path
    faults: Faults = field(default_factory=Faults)
    port: int = 0
    deleted: int = 0
    kicked_off: list[str] = field(default_factory=list)
    range_requests: int = 0

    @property
    def fhir(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"


def _handler(state: Standin) -> type[BaseHTTPRequestHandler]:
    files = sorted(state.folder.glob("*.ndjson"))
    polled: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/fhir/.well-known/smart-configuration":
                found = {"token_endpoint": state.faults.token_endpoint}
                self._send(200, json.dumps(found).encode())
            elif path == "/fhir/metadata":
                self._send(200, json.dumps({"resourceType": "CapabilityStatement"}).encode())
            elif path.endswith("/$export"):
                state.kicked_off.append(self.path)
                if state.faults.refuse_with is not None:
                    refusal = {"issue": [{"diagnostics": state.faults.refuse_with}]}
                    self._send(400, json.dumps(refusal).encode())
                    return
                location = f"http://{state.faults.status_host}:{state.port}/status/1"
                if state.faults.relative_status:
                    location = "/status/1"
                self._send(202, Content_Location=location)
            elif path == "/status/1":
                polled["n"] = polled.get("n", 0) + 1
                if polled["n"] == 1:
                    self._send(202, Retry_After="1", X_Progress="half way")
                    return
                output = [
                    {
                        "type": f.name.split(".")[0],
                        "url": f"http://127.0.0.1:{state.port}/files/{f.name}",
                        "count": sum(1 for line in f.open() if line.strip()),
                    }
                    for f in files
                ]
                if state.faults.first_type is not None:
                    output[0]["type"] = state.faults.first_type
                manifest = {
                    "transactionTime": "2026-12-01T00:00:00Z",
                    "request": "x",
                    "requiresAccessToken": False,
                    "output": output,
                    "error": [],
                    "padding": " " * state.faults.manifest_padding,
                }
                body = json.dumps(manifest).encode()
                if state.faults.manifest_depth:
                    depth = state.faults.manifest_depth
                    body = body[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
                if state.faults.gzip_manifest:
                    self._send(200, gzip.compress(body), Content_Encoding="gzip")
                else:
                    self._send(200, body)
            elif path.startswith("/files/"):
                self._file(state.folder / path.removeprefix("/files/"))
            else:
                self._send(404)

        def _file(self, path: Path) -> None:
            lines = path.read_bytes().splitlines(keepends=True)
            body = b"".join(lines[: len(lines) - state.faults.short_by])
            start = 0
            asked = self.headers.get("Range")
            if asked:
                state.range_requests += 1
                start = int(asked.removeprefix("bytes=").split("-")[0])
            f = state.faults
            if f.break_after is not None and not f.broken and path == files[0]:
                f.broken = True
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: f.break_after])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            if start:
                self._send(
                    206, body[start:], Content_Range=f"bytes {start}-{len(body) - 1}/{len(body)}"
                )
            else:
                self._send(200, body, Content_Type="application/fhir+ndjson")

        def do_DELETE(self) -> None:
            state.deleted += 1
            self._send(202)

    return Handler


@contextmanager
def standin(folder: Path, faults: Faults | None = None) -> Iterator[Standin]:
    state = Standin(folder, faults or Faults())
    with serving(_handler(state)) as port:
        state.port = port
        yield state
