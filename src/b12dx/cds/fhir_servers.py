"""Which FHIR servers the CDS service may call, and calling only those.

A hook call names its ``fhirServer`` and hands over a bearer token for it: were the service
to fetch from whatever address it is given, any caller (or a web page the clinician visits)
could make it send requests, with a token, to cloud metadata, the clinic's own network or
this machine's ports, and read the answers' shape from its errors and timing (server-side
request forgery). So:

* a FHIR server is called only when it is on the allowlist: each trusted issuer's
  ``fhir_servers`` (``cds/auth.py``, the issuers file), or, without issuers, the service's
  own list (``B12DX_CDS_FHIR_SERVERS``); an entry is a base URL, and a ``fhirServer`` is
  allowed when it has the entry's scheme, host and port and starts with its path;
* the host is resolved before the call and every address it resolves to must be public;
  a private, loopback, link-local or otherwise reserved address is refused unless the
  entry says ``"private": true`` (a hospital's internal server, a test stand-in); the
  connection then goes to the address that was checked (no second lookup that DNS
  rebinding could change), with the name kept for TLS and the Host header;
* redirects are never followed, and every refusal says the same thing, so that nothing
  about what lies behind an address is told.
"""

from __future__ import annotations

import asyncio
import ipaddress
import posixpath
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from b12dx.jsonio import loads

# What every refusal says: nothing about the address or what answered there.
REFUSED = "fhirServer is not a FHIR server this service may call"


class ServerRefused(Exception):
    """The fhirServer may not be called (not allowlisted, or resolves to a private address)."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


@dataclass(frozen=True)
class FhirServer:
    """An allowlisted FHIR base URL; ``private`` allows it to resolve to a private,
    loopback or link-local address."""

    url: str
    private: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{self.url!r}: a FHIR server is an https (or http) base URL")
        if parts.scheme == "http" and not self.private:
            # A token over plain http is readable on the wire: only a private (local or
            # internal) server may be reached that way, and the entry must say so.
            raise ValueError(f'{self.url!r}: plain http needs "private": true')
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{self.url!r}: a base URL has no query, fragment or user")

    def allows(self, url: str) -> bool:
        return within_base(self.url, url)


def within_base(base_url: str, url: str) -> bool:
    """Whether ``url`` is on ``base_url``'s origin and under its path, once both paths are
    read as a server reads them (percent-decoded, "." and ".." steps resolved): a caller's
    token goes nowhere else (``/fhir/../admin`` and ``/fhir%2F..%2Fadmin`` are
    ``/admin``, not under ``/fhir``)."""
    a, b = _origin_path(base_url), _origin_path(url)
    if a is None or b is None or a[0] != b[0]:
        return False
    base = a[1].rstrip("/")
    return b[1] == base or b[1].startswith(base + "/") or not base


def _normal_path(path: str) -> str:
    decoded = unquote(path or "/")
    normal = posixpath.normpath(decoded)
    return "/" if normal in (".", "//") else normal


def _origin_path(url: str) -> tuple[tuple[str, str, int], str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    if parts.username or parts.password:
        return None
    return (parts.scheme, parts.hostname.lower().rstrip("."), port), _normal_path(parts.path)


def parse_servers(value: Any, where: str) -> tuple[FhirServer, ...]:
    """An allowlist from JSON: a list of base URLs or ``{"url": ..., "private": bool}``."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of FHIR base URLs")
    out = []
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ValueError(f'{here}: expected a base URL or {{"url": ..., "private": true}}')
        unknown = sorted(set(entry) - {"url", "private"})
        if unknown:
            raise ValueError(f'{here}: unknown field(s) {unknown}; accepted: "url", "private"')
        private = entry.get("private", False)
        if not isinstance(private, bool):
            raise ValueError(f'{here}: "private" must be true or false')
        try:
            out.append(FhirServer(entry["url"], private))
        except ValueError as exc:
            raise ValueError(f"{here}: {exc}") from None
    return tuple(out)


def servers_from_env(text: str | None) -> tuple[FhirServer, ...]:
    """``B12DX_CDS_FHIR_SERVERS``: the allowlist without issuers, as a JSON list."""
    if not text:
        return ()
    try:
        value = loads(text)
    except ValueError:
        raise ValueError("B12DX_CDS_FHIR_SERVERS: expected a JSON list of base URLs") from None
    return parse_servers(value, "B12DX_CDS_FHIR_SERVERS")


# IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, and
# the local-use prefix of RFC 8215), SIIT's IPv4-translated (RFC 2765) and the deprecated
# IPv4-compatible addresses (RFC 4291). A private IPv4 address inside one is private.
_CARRY_IPV4 = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, in any of its embedded forms."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002::/16
        return ip.sixtofour
    if ip.teredo is not None:  # 2001::/32: (server, client)
        return ip.teredo[1]
    if any(ip in net for net in _CARRY_IPV4) and int(ip) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:  # fec0::/10, deprecated but still routed inside some sites
            return False
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            return v4.is_global and not v4.is_multicast
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Target:
    """A fhirServer that may be called, and the address checked for it."""

    base: str
    host: str
    address: str


async def check(url: str, allowed: Sequence[FhirServer]) -> Target:
    """The fhirServer when the allowlist and its addresses let it be called; else
    ServerRefused (the same refusal whatever the reason)."""
    entry = next((s for s in allowed if s.allows(url)), None)
    parsed = _origin_path(url)
    if entry is None or parsed is None:
        raise ServerRefused
    (_, host, port), _ = parsed
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ServerRefused from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses or not (entry.private or all(is_public(a) for a in addresses)):
        raise ServerRefused
    return Target(url, host, addresses[0])


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends every request for ``target.host`` to the address that was checked, keeping
    the name for TLS (SNI and the certificate) and the Host header; any other host is
    refused (a next link elsewhere never leaves)."""

    def __init__(self, target: Target, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.target = target
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = (request.url.host or "").lower().rstrip(".")
        if host != self.target.host:
            raise httpx.ConnectError(REFUSED, request=request)
        request.url = request.url.copy_with(host=self.target.address)
        request.extensions = {**request.extensions, "sni_hostname": self.target.host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
