"""A FHIR Bulk Data ``$export``, from kick-off to files on disk (FHIR Bulk Data Access
IG 2.0.0, "Export"): the request, the status polled as the server asks, each file
streamed to disk and resumed after a broken connection, the counts checked, the export
deleted on the server. Nothing is handed on unless every file arrived whole: the files
are written under ``.partial`` names in a folder of their own and renamed at the end.
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
from urllib.parse import urlencode, urlsplit

import httpx

from b12dx.bulk.auth import BackendAuth
from b12dx.bulk.defaults import DEFAULT_WAIT_S
from b12dx.errors import B12dxError
from b12dx.fhir.read import REFERENCED_TYPES
from b12dx.fhir.record import USED_TYPES

# What b12dx reads: the patients, the resources a record is built from, and the
# medicines they refer to.
EXPORT_TYPES = ("Patient", *sorted(USED_TYPES), *sorted(REFERENCED_TYPES))
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
POLL_DEFAULT_S = 5.0  # between status requests when the server names no Retry-After
POLL_MOST_S = 120.0  # the longest wait between status requests, whatever it asks
DOWNLOAD_ATTEMPTS = 4  # a broken download is resumed this many times
TRANSIENT_ATTEMPTS = 10  # status answers the server calls transient, in a row


class ExportFailed(B12dxError):
    pass


@dataclass
class Progress:
    """What the export reports while it runs (for a progress bar)."""

    status: str = "starting"
    files_done: int = 0
    files: int = 0
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
            raise ExportFailed(f"INPUT: {url!r} is not an http(s) URL of a FHIR server")
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
    """Seconds to wait: Retry-After as seconds or an HTTP date, within POLL_MOST_S."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        seconds = when.timestamp() - time.time() if when is not None else default
    return min(max(seconds, 0.5), POLL_MOST_S)


def _transient(answer: httpx.Response) -> bool:
    try:
        issues = answer.json().get("issue", [])
        return any(isinstance(i, dict) and i.get("code") == "transient" for i in issues)
    except (ValueError, AttributeError):
        return False


def _outcome(answer: httpx.Response) -> str:
    """The server's own words for an error (an OperationOutcome's diagnostics)."""
    try:
        body = answer.json()
        issues = body.get("issue", []) if isinstance(body, dict) else []
        said = [str(i.get("diagnostics") or i.get("details", {}).get("text", "")) for i in issues]
        text = "; ".join(s for s in said if s)
    except (ValueError, AttributeError):
        text = ""
    return text or answer.text[:200].strip() or answer.reason_phrase


@dataclass
class BulkExport:
    """One export from ``target`` into ``folder``, authorised by ``auth`` (None: an open
    server). ``report`` is called as it progresses."""

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

    def _headers(self, client: httpx.Client, accept: str = FHIR_JSON) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.auth is not None:
            headers["Authorization"] = f"Bearer {self.auth.token(client, self.target.base)}"
        return headers

    def _say(self, status: str) -> None:
        self.progress.status = status
        self.report(self.progress)

    def run(self) -> dict[str, Any]:
        """Export, download and check every file; the manifest. The files are in
        ``folder`` only when all arrived whole."""
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
            answer = client.get(f"{self.target.base}/metadata", headers=self._headers(client))
            rest = answer.json().get("rest", []) if answer.status_code == 200 else []
            held = {
                r.get("type")
                for part in rest
                if isinstance(part, dict)
                for r in part.get("resource", [])
                if isinstance(r, dict)
            }
        except (httpx.HTTPError, ValueError, AttributeError):
            held = set()
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
        self._say(f"asking {self.target.base} for a {self.target.level} export")
        try:
            answer = client.get(url, headers={**self._headers(client), "Prefer": "respond-async"})
        except httpx.HTTPError as exc:
            raise ExportFailed(
                f"the FHIR server did not answer the export request ({exc})"
            ) from None
        location = answer.headers.get("Content-Location")
        if answer.status_code != 202 or not location:
            raise ExportFailed(
                f"the FHIR server refused the export (HTTP {answer.status_code}: "
                f"{_outcome(answer)})"
            )
        if not self._own(location):
            # The status URL gets the access token on every poll: only the server's own.
            raise ExportFailed(
                f"the FHIR server sent the export's status to another address ({location}); "
                "b12dx sends its access token to the FHIR server only"
            )
        return str(location)

    def _poll(self, client: httpx.Client, status_url: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.wait_s
        wait = POLL_DEFAULT_S
        transient = 0
        while True:
            try:
                answer = client.get(status_url, headers=self._headers(client))
            except httpx.HTTPError as exc:
                raise ExportFailed(f"the export's status could not be read ({exc})") from None
            if answer.status_code == 200:
                try:
                    manifest = answer.json()
                except ValueError:
                    raise ExportFailed("the export's manifest is not JSON") from None
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise ExportFailed("the export's manifest has no output list")
                return manifest
            # A failure the server calls transient (an OperationOutcome issue of code
            # "transient", as the IG asks) is asked again; any other ends the export.
            if answer.status_code >= 500 and _transient(answer):
                transient += 1
                if transient < TRANSIENT_ATTEMPTS:
                    self.sleep(_retry_after(answer.headers.get("Retry-After"), wait))
                    continue
            if answer.status_code not in (202, 429):
                raise ExportFailed(
                    f"the export failed on the server (HTTP {answer.status_code}: "
                    f"{_outcome(answer)})"
                )
            transient = 0
            progress = answer.headers.get("X-Progress", "in progress")
            self._say(f"the server is exporting: {progress[:100]}")
            wait = _retry_after(answer.headers.get("Retry-After"), wait)
            if time.monotonic() + wait > deadline:
                raise ExportFailed(
                    f"the export was not ready within {self.wait_s:g} s (--export-wait)"
                )
            self.sleep(wait)

    def _download_all(self, client: httpx.Client, manifest: dict[str, Any]) -> None:
        errors = manifest.get("error") or []
        outputs = [o for o in manifest["output"] if isinstance(o, dict)]
        self.progress.files = len(outputs)
        staging = self.folder / ".export.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            if errors:
                raise ExportFailed(self._errors(client, errors))
            names: list[Path] = []
            for n, item in enumerate(outputs, 1):
                kind, url = item.get("type"), item.get("url")
                # The type names the file written: a FHIR resource type, nothing else (no
                # path of the server's choosing).
                if (
                    not isinstance(kind, str)
                    or not isinstance(url, str)
                    or not _TYPE.fullmatch(kind)
                ):
                    raise ExportFailed(
                        "the export's manifest lists a file without a resource type or a "
                        f"url: {str(item)[:200]}"
                    )
                path = staging / f"{kind}.{n:03d}.ndjson"
                lines = self._download(client, url, path, bool(manifest.get("requiresAccessToken")))
                expected = item.get("count")
                if isinstance(expected, int) and expected != lines:
                    raise ExportFailed(
                        f"{kind} file {n} holds {lines} resources, the manifest says {expected}"
                    )
                names.append(path)
                self.progress.files_done = n
                self._say(f"downloaded {n} of {len(outputs)} files")
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in names:
                path.replace(self.folder / path.name)
            (self.folder / "export-manifest.json").write_text(json.dumps(manifest, indent=2))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _token_for(self, client: httpx.Client, url: str, required: bool) -> dict[str, str]:
        headers = {"Accept": NDJSON}
        if not required or self.auth is None:
            return headers
        # The access token goes to the FHIR server's own origin only: a file URL elsewhere
        # (a storage bucket) must not need it.
        if not self._own(url):
            there = urlsplit(url)
            raise ExportFailed(
                f"the export's files are on {there.scheme}://{there.netloc}, not the FHIR "
                "server, and need its access token: b12dx sends the token to the FHIR "
                "server only"
            )
        return self._headers(client, NDJSON)

    def _own(self, url: str) -> bool:
        """Whether ``url`` is on the FHIR server's own origin."""
        own, there = urlsplit(self.target.base), urlsplit(url)
        return (there.scheme, there.netloc) == (own.scheme, own.netloc)

    def _download(self, client: httpx.Client, url: str, path: Path, token: bool) -> int:
        """Stream ``url`` to ``path``, resuming with a Range request after a broken
        connection; the number of lines (resources) written."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            have = path.stat().st_size if path.exists() else 0
            headers = self._token_for(client, url, token)
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                # A file may redirect to where it is stored (a bucket); httpx drops the
                # Authorization header when a redirect leaves the origin.
                with client.stream("GET", url, headers=headers, follow_redirects=True) as answer:
                    if answer.status_code == 200 and have:
                        have = 0  # the server sent it whole again: start over
                    elif answer.status_code not in (200, 206):
                        raise ExportFailed(
                            f"a file of the export could not be downloaded (HTTP "
                            f"{answer.status_code}: {url})"
                        )
                    with path.open("ab" if have else "wb") as f:
                        for chunk in answer.iter_bytes():  # as it arrives: a break keeps it
                            f.write(chunk)
                            self.progress.bytes += len(chunk)
                            self.report(self.progress)
                break
            except httpx.HTTPError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise ExportFailed(
                        f"a file of the export broke off {DOWNLOAD_ATTEMPTS} times ({exc}): {url}"
                    ) from None
        return _count_lines(path)

    def _errors(self, client: httpx.Client, errors: list[Any]) -> str:
        """The server's own account of what it could not export."""
        said: list[str] = []
        for item in errors[:5]:
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str):
                continue
            try:
                answer = client.get(url, headers=self._token_for(client, url, True))
                for line in answer.text.splitlines()[:3]:
                    said.append(_outcome(httpx.Response(400, content=line.encode())))
            except (httpx.HTTPError, ExportFailed):
                said.append(url)
        return (
            f"the FHIR server reported errors in the export, so it is not screened: "
            f"{'; '.join(said) or 'see its error files'}"
        )

    def _delete(self, client: httpx.Client, status_url: str) -> None:
        """Ask the server to delete the export's files (done or not); a refusal is no
        failure of ours."""
        with contextlib.suppress(httpx.HTTPError, B12dxError):
            client.delete(status_url, headers=self._headers(client))


def _count_lines(path: Path) -> int:
    """Resources in an NDJSON file: its non-blank lines, the last whole (a file cut
    mid-line is refused)."""
    count = 0
    last = b"\n"
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                count += 1
            last = line
    if last.strip() and not last.endswith(b"\n"):
        try:
            json.loads(last)
        except ValueError:
            raise ExportFailed(f"{path.name} ends in the middle of a resource") from None
    return count
