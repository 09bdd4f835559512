"""Talking to a FHIR server b12dx does not trust: bounded JSON answers, no compression,
the server's words made safe to print, and URLs compared by origin.

A server could otherwise send a small compressed answer that unpacks to gigabytes, a
JSON body of any size, terminal escape sequences or markup in its messages, or a signed
storage URL that a console or a saved file should not show.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from b12dx.errors import B12dxError
from b12dx.jsonio import loads

# The largest JSON answer read (a manifest, a CapabilityStatement, a token, an error).
MAX_JSON_BYTES = 10 * 1024 * 1024
# No compression: sizes are what is sent, and a Range offset counts the same bytes.
IDENTITY = {"Accept-Encoding": "identity"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_PORTS = {"http": 80, "https": 443}


class ServerRefused(B12dxError):
    pass


def said(text: object, most: int = 300) -> str:
    """A server's text made safe to print: control characters (terminal escapes) out,
    at most ``most`` characters."""
    clean = _CONTROL.sub(" ", str(text)).strip()
    return clean if len(clean) <= most else clean[:most] + "..."


def public(url: str) -> str:
    """``url`` without its query and fragment (a signed storage URL's signature is
    there), safe to print."""
    parts = urlsplit(url)
    return said(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), 200)


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _PORTS.get(scheme, 0)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


@dataclass(frozen=True)
class JsonAnswer:
    status: int
    headers: httpx.Headers
    reason: str
    body: Any  # the parsed JSON, None when the answer is not JSON
    text: str  # its start, for messages


def read_json(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> JsonAnswer:
    """The answer, its JSON read up to MAX_JSON_BYTES and no further."""
    request = client.build_request(method, url, headers={**(headers or {}), **IDENTITY}, data=data)
    answer = client.send(request, stream=True)
    try:
        body = bytearray()
        for chunk in answer.iter_raw():
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                raise ServerRefused(
                    f"{public(url)} answered with more than {MAX_JSON_BYTES} bytes of JSON"
                )
    finally:
        answer.close()
    try:  # the project's one JSON reader: no NaN, and a bound on nesting
        parsed = loads(bytes(body)) if body else None
    except ValueError:
        parsed = None
    text = bytes(body[:300]).decode("utf-8", "replace")
    return JsonAnswer(answer.status_code, answer.headers, answer.reason_phrase, parsed, text)


def seconds(value: object) -> float | None:
    """A finite, non-negative number of seconds, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def outcome(answer: JsonAnswer) -> str:
    """The server's own words for an error (an OperationOutcome's diagnostics), safe to
    print."""
    body, text = answer.body, ""
    if isinstance(body, dict) and isinstance(body.get("issue"), list):
        parts = []
        for issue in body["issue"]:
            if isinstance(issue, dict):
                details = issue.get("details")
                detail_text = details.get("text") if isinstance(details, dict) else None
                parts.append(str(issue.get("diagnostics") or detail_text or ""))
        text = "; ".join(p for p in parts if p)
    return said(text or answer.text or answer.reason)


def transient(body: Any) -> bool:
    """An OperationOutcome the server calls transient (the IG's sign to ask again)."""
    issues = body.get("issue") if isinstance(body, dict) else None
    return isinstance(issues, list) and any(
        isinstance(i, dict) and i.get("code") == "transient" for i in issues
    )
