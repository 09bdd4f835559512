"""A FHIR Bulk Data ``$export``, from kick-off to files on disk (FHIR Bulk Data Access
IG 2.0.0, "Export"): the request, the status polled as the server asks, each file
streamed to disk and resumed after a broken connection, the counts checked, the export
deleted on the server. Nothing is handed on unless every file arrived whole: the files
are written in a folder of their own and moved into place at the end. The server is not
trusted: answers are bounded (``bulk.http``), its text is made safe to print, the token
goes to its own origin only, and the whole export is bounded in time.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from b12dx.bulk.auth import BackendAuth
from b12dx.bulk.defaults import DEFAULT_WAIT_S
from b12dx.bulk.http import (
    IDENTITY,
    JsonAnswer,
    ServerRefused,
    origin,
    outcome,
    public,
    read_json,
    said,
    seconds,
    transient,
)
from b12dx.errors import B12dxError
from b12dx.fhir.read import REFERENCED_TYPES
from b12dx.fhir.record import USED_TYPES
from b12dx.jsonio import loads

# What b12dx reads: the patients, the resources a record is built from, and the
# medicines they refer to.
EXPORT_TYPES = ("Patient", *sorted(USED_TYPES), *sorted(REFERENCED_TYPES))
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
POLL_DEFAULT_S = 5.0  # between status requests when the server names no Retry-After
POLL_MOST_S = 120.0  # the longest wait between status requests, whatever it asks
DOWNLOAD_ATTEMPTS = 4  # a broken download is resumed this many times
TRANSIENT_ATTEMPTS = 10  # status answers the server calls transient, in a row
MAX_LINE_BYTES = 64 * 1024 * 1024  # one resource (one NDJSON line)
MAX_FILES = 10_000  # files in one manifest


class ExportFailed(B12dxError):
    pass


class _Restart(Exception):
    """A resumed download the server did not resume where asked: fetch it whole again."""


@dataclass
class Progress:
    """What the export reports while it runs (for a progress bar)."""

    status: str = "starting"
    bytes: int = 0


@dataclass
class ExportTarget:
    """The FHIR server's base URL and the kick-off URL (system, group or patient)."""

    base: str
    kickoff: str
    level: str

    @classmethod
    def parse(cls, url: str) -> ExportTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ExportFailed(f"INPUT: {said(url)!r} is not an http(s) URL of a FHIR server")
        if parts.query or parts.fragment:
            raise ExportFailed(
                "INPUT: give the FHIR server's URL without a query (_type and _since are "
                "b12dx's to set; --since for _since)"
            )
        path = parts.path.rstrip("/").removesuffix("/$export")
        segments = path.split("/")
        if len(segments) >= 2 and segments[-2] == "Group" and segments[-1]:
            level, base_path = "group", "/".join(segments[:-2])
        elif segments[-1] == "Patient":
            level, base_path = "patient", "/".join(segments[:-1])
        else:
            level, base_path = "system", path
        base = f"{parts.scheme}://{parts.netloc}{base_path}"
        return cls(base, f"{parts.scheme}://{parts.netloc}{path}/$export", level)


_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait: Retry-After as seconds or an HTTP date, within 0.5 s and
    POLL_MOST_S; ``default`` when it is neither."""
    wait = seconds(value) if value else None
    if wait is None and value:
        try:
            when = email.utils.parsedate_to_datetime(value)
            wait = seconds(when.timestamp() - time.time())
        except (TypeError, ValueError, OverflowError):
            wait = None
    return min(max(default if wait is None else wait, 0.5), POLL_MOST_S)


def _without_queries(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as kept on disk: file URLs without their query (a signed URL's
    signature would let whoever reads the folder fetch the files)."""

    def strip(url: Any) -> Any:
        if not isinstance(url, str):
            return url
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    kept = dict(manifest)
    for key in ("output", "error", "deleted"):
        items = manifest.get(key)
        if isinstance(items, list):
            kept[key] = [
                {**i, "url": strip(i.get("url"))} if isinstance(i, dict) else i for i in items
            ]
    return kept


@dataclass
class _Lines:
    """Counts NDJSON resources from a stream of bytes, holding at most one line's start:
    non-blank lines, each at most MAX_LINE_BYTES, the last whole."""

    count: int = 0
    length: int = 0
    content: bool = False
    tail: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> None:
        pieces = chunk.split(b"\n")
        for i, piece in enumerate(pieces):
            self.length += len(piece)
            if self.length > MAX_LINE_BYTES:
                raise ExportFailed(
                    f"a resource of the export is longer than {MAX_LINE_BYTES} bytes"
                )
            if piece.strip():
                self.content = True
            if i < len(pieces) - 1:  # a newline ends this line
                self.count += self.content
                self.length, self.content = 0, False
                self.tail.clear()
            else:
                self.tail += piece

    def finish(self, name: str) -> int:
        if self.content:  # a last line with no newline: whole only if it is JSON
            try:
                loads(bytes(self.tail))
            except ValueError:
                raise ExportFailed(f"{name} ends in the middle of a resource") from None
            self.count += 1
        return self.count


def _lines_of(path: Path) -> _Lines:
    """The resources already in a partly downloaded file (read again only to resume)."""
    lines = _Lines()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            lines.feed(chunk)
    return lines


@dataclass
class BulkExport:
    """One export from ``target`` into ``folder``, authorised by ``auth`` (None: an open
    server), taking at most ``wait_s`` from kick-off to the last file. ``report`` is
    called as it progresses."""

    target: ExportTarget
    folder: Path
    auth: BackendAuth | None = None
    since: str | None = None
    wait_s: float = DEFAULT_WAIT_S
    timeout_s: float = 60.0
    report: Callable[[Progress], None] = lambda _p: None
    progress: Progress = field(default_factory=Progress)
    sleep: Callable[[float], None] = time.sleep
    status_url: str | None = None  # the export's, once kicked off
    _deadline: float = 0.0

    def _headers(self, client: httpx.Client, accept: str = FHIR_JSON) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.auth is not None:
            headers["Authorization"] = f"Bearer {self.auth.token(client, self.target.base)}"
        return headers

    def _say(self, status: str) -> None:
        self.progress.status = said(status, 120)
        self.report(self.progress)

    def _left(self, what: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ExportFailed(
                f"the export took longer than {self.wait_s:g} s ({what}; --export-wait)"
            )
        return left

    def _json(self, client: httpx.Client, method: str, url: str, **headers: str) -> JsonAnswer:
        try:
            return read_json(client, method, url, headers={**self._headers(client), **headers})
        except httpx.HTTPError as exc:
            raise ExportFailed(f"{public(url)} did not answer ({said(exc)})") from None
        except ServerRefused as exc:
            raise ExportFailed(str(exc)) from None

    def run(self) -> dict[str, Any]:
        """Export, download and check every file; the manifest. The files are in
        ``folder`` only when all arrived whole."""
        self._deadline = time.monotonic() + self.wait_s
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            status_url = self.status_url = self._kick_off(client)
            try:
                manifest = self._poll(client, status_url)
                self._download_all(client, manifest)
            finally:
                self._delete(client, status_url)
        return manifest

    def _types(self, client: httpx.Client) -> list[str]:
        """The types b12dx reads that the server holds, by its CapabilityStatement (a
        server may refuse a _type it does not hold); all of them when it says nothing."""
        try:
            answer = self._json(client, "GET", f"{self.target.base}/metadata")
        except ExportFailed:
            return list(EXPORT_TYPES)
        body = answer.body if answer.status == 200 and isinstance(answer.body, dict) else {}
        rest = body.get("rest")
        held: set[str] = set()
        for part in rest if isinstance(rest, list) else []:
            resources = part.get("resource") if isinstance(part, dict) else None
            for r in resources if isinstance(resources, list) else []:
                kind = r.get("type") if isinstance(r, dict) else None
                if isinstance(kind, str):
                    held.add(kind)
        if not held:
            return list(EXPORT_TYPES)
        if "Patient" not in held:
            raise ExportFailed("the FHIR server's CapabilityStatement lists no Patient resource")
        return [t for t in EXPORT_TYPES if t in held]

    def _kick_off(self, client: httpx.Client) -> str:
        query = {"_type": ",".join(self._types(client)), "_outputFormat": NDJSON}
        if self.since:
            query["_since"] = self.since
        url = f"{self.target.kickoff}?{urlencode(query)}"
        self._say(f"asking {public(self.target.base)} for a {self.target.level} export")
        answer = self._json(client, "GET", url, Prefer="respond-async")
        location = answer.headers.get("Content-Location")
        if answer.status != 202 or not location:
            raise ExportFailed(
                f"the FHIR server refused the export (HTTP {answer.status}: {outcome(answer)})"
            )
        location = urljoin(url, str(location))  # a relative status URL is the server's own
        if origin(location) != origin(self.target.base):
            # The status URL gets the access token on every poll: only the server's own.
            raise ExportFailed(
                f"the FHIR server sent the export's status to another address "
                f"({public(location)}); b12dx sends its access token to the FHIR server only"
            )
        return location

    def _poll(self, client: httpx.Client, status_url: str) -> dict[str, Any]:
        wait = POLL_DEFAULT_S
        transients = 0
        while True:
            self._left("waiting for the server")
            answer = self._json(client, "GET", status_url)
            if answer.status == 200:
                manifest = answer.body
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise ExportFailed("the export's manifest is not JSON with an output list")
                return manifest
            # A failure the server calls transient (an OperationOutcome issue of code
            # "transient", as the IG asks) is asked again; any other ends the export.
            if answer.status >= 500 and transient(answer.body):
                transients += 1
                if transients >= TRANSIENT_ATTEMPTS:
                    raise ExportFailed(
                        f"the export's status failed {TRANSIENT_ATTEMPTS} times in a row "
                        f"(HTTP {answer.status}: {outcome(answer)})"
                    )
            elif answer.status not in (202, 429):
                raise ExportFailed(
                    f"the export failed on the server (HTTP {answer.status}: {outcome(answer)})"
                )
            else:
                transients = 0
                progress = answer.headers.get("X-Progress", "in progress")
                self._say(f"the server is exporting: {progress}")
            wait = _retry_after(answer.headers.get("Retry-After"), wait)
            if wait >= self._left("waiting for the server"):
                raise ExportFailed(
                    f"the export was not ready within {self.wait_s:g} s (--export-wait)"
                )
            self.sleep(wait)

    def _download_all(self, client: httpx.Client, manifest: dict[str, Any]) -> None:
        errors = manifest.get("error") or []
        if not isinstance(errors, list):
            raise ExportFailed("the export's manifest has an error field that is not a list")
        outputs = manifest["output"]
        if len(outputs) > MAX_FILES:
            raise ExportFailed(f"the export's manifest lists more than {MAX_FILES} files")
        staging = self.folder / ".export.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        moved = False
        names: list[Path] = []
        try:
            if errors:
                raise ExportFailed(self._errors(client, errors))
            token = manifest.get("requiresAccessToken") is True
            for n, item in enumerate(outputs, 1):
                kind = item.get("type") if isinstance(item, dict) else None
                url = item.get("url") if isinstance(item, dict) else None
                # The type names the file written: a FHIR resource type, nothing else (no
                # path of the server's choosing).
                if not (isinstance(kind, str) and isinstance(url, str) and _TYPE.fullmatch(kind)):
                    raise ExportFailed(
                        "the export's manifest lists a file without a resource type or a url"
                    )
                path = staging / f"{kind}.{n:03d}.ndjson"
                lines = self._download(client, url, path, token)
                expected = item.get("count")
                counted = isinstance(expected, int) and not isinstance(expected, bool)
                if counted and expected != lines:
                    raise ExportFailed(
                        f"{kind} file {n} holds {lines} resources, the manifest says {expected}"
                    )
                names.append(path)
                self._say(f"downloaded {n} of {len(outputs)} files")
            # This export's files, and no other export's: what an earlier run left goes.
            for old in [*self.folder.glob("*.ndjson"), self.folder / "export-manifest.json"]:
                old.unlink(missing_ok=True)
            for path in names:
                path.replace(self.folder / path.name)
            kept = json.dumps(_without_queries(manifest), indent=2)
            (self.folder / "export-manifest.json").write_text(kept)
            moved = True
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if not moved:
                for path in names:  # any of this export's files already moved
                    (self.folder / path.name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.folder.rmdir()  # only when empty

    def _token_for(self, client: httpx.Client, url: str, required: bool) -> dict[str, str]:
        headers = {"Accept": NDJSON, **IDENTITY}
        if not required or self.auth is None:
            return headers
        # The access token goes to the FHIR server's own origin only: a file URL elsewhere
        # (a storage bucket) must not need it.
        if origin(url) != origin(self.target.base):
            raise ExportFailed(
                f"the export's files are on {public(url)}, not the FHIR server, and need its "
                "access token: b12dx sends the token to the FHIR server only"
            )
        return {**self._headers(client, NDJSON), **IDENTITY}

    def _download(self, client: httpx.Client, url: str, path: Path, token: bool) -> int:
        """Stream ``url`` to ``path`` as sent (no decompression), resuming with a Range
        request after a broken connection; the number of resources (lines) written."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            have = path.stat().st_size if path.exists() else 0
            headers = self._token_for(client, url, token)
            if have:
                headers["Range"] = f"bytes={have}-"
            lines = _lines_of(path) if have else _Lines()
            try:
                lines = self._fetch(client, url, path, headers, have, lines)
                break
            except _Restart:
                path.unlink(missing_ok=True)
            except httpx.HTTPError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise ExportFailed(
                        f"a file of the export broke off {DOWNLOAD_ATTEMPTS} times "
                        f"({said(exc)}): {public(url)}"
                    ) from None
        else:
            raise ExportFailed(f"a file of the export could not be resumed: {public(url)}")
        return lines.finish(path.name)

    def _fetch(
        self,
        client: httpx.Client,
        url: str,
        path: Path,
        headers: dict[str, str],
        have: int,
        lines: _Lines,
    ) -> _Lines:
        """Stream the answer to ``path``, counting its resources into ``lines`` (those
        of the part already there) as they arrive; the count."""
        # A file may redirect to where it is stored (a bucket); httpx drops the
        # Authorization header when a redirect leaves the origin.
        with client.stream("GET", url, headers=headers, follow_redirects=True) as answer:
            if answer.status_code == 206:
                sent = answer.headers.get("Content-Range", "")
                if not sent.startswith(f"bytes {have}-"):
                    raise _Restart  # not where it was asked to resume
            elif answer.status_code == 200:
                have, lines = 0, _Lines()  # sent whole (again): start over
            else:
                raise ExportFailed(
                    f"a file of the export could not be downloaded (HTTP "
                    f"{answer.status_code}: {public(url)})"
                )
            encoding = answer.headers.get("Content-Encoding", "identity").lower()
            if encoding not in ("identity", ""):
                raise ExportFailed(
                    f"a file of the export came compressed ({said(encoding, 20)}) though "
                    f"asked for as it is: {public(url)}"
                )
            with path.open("ab" if have else "wb") as f:
                for chunk in answer.iter_raw():  # as it arrives: a break keeps it
                    f.write(chunk)
                    lines.feed(chunk)
                    self.progress.bytes += len(chunk)
                    self.report(self.progress)
                    self._left("downloading")
        return lines

    def _errors(self, client: httpx.Client, errors: list[Any]) -> str:
        """The server's own account of what it could not export (its first lines)."""
        found: list[str] = []
        for item in errors[:5]:
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str):
                continue
            try:
                headers = self._token_for(client, url, True)
                with client.stream("GET", url, headers=headers) as answer:
                    start = b""
                    for chunk in answer.iter_raw():
                        start += chunk
                        if len(start) > 64 * 1024:
                            break
                for line in start.splitlines()[:3]:
                    try:
                        body = loads(line)
                    except ValueError:
                        continue
                    found.append(outcome(JsonAnswer(400, httpx.Headers(), "", body, "")))
            except (httpx.HTTPError, ExportFailed):
                found.append(public(url))
        return (
            "the FHIR server reported errors in the export, so it is not screened: "
            f"{'; '.join(found) or 'see its error files'}"
        )

    def _delete(self, client: httpx.Client, status_url: str) -> None:
        """Ask the server to delete the export's files (done or not); a refusal is no
        failure of ours."""
        with contextlib.suppress(httpx.HTTPError, B12dxError):
            client.delete(status_url, headers={**self._headers(client), **IDENTITY})
