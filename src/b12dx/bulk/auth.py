"""SMART Backend Services: the access token a system (no user) gets to read a FHIR server.

The client proves who it is with a JWT signed by its own private key (RS384 or ES384,
the algorithms the SMART App Launch 2.x Backend Services profile requires servers to
support); the server checks it against the public key (JWKS) registered for the client.
The token is kept in this object's memory only, never written, and asked for again a
minute before it expires.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from b12dx.bulk.defaults import DEFAULT_SCOPE
from b12dx.bulk.http import (
    ServerRefused,
    origin,
    public,
    read_json,
    said,
    seconds,
)
from b12dx.errors import B12dxError
from b12dx.network import is_loopback

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300  # the profile's most: five minutes
RENEW_BEFORE_S = 60


class AuthFailed(B12dxError):
    pass


def load_key(path: Path) -> tuple[Any, str]:
    """The private key in a PEM file and the algorithm it signs with (RS384, ES384)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuthFailed(
            f"--private-key: {path} is not a readable PEM private key without a passphrase "
            f"({type(exc).__name__})"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key, "ES384"
    raise AuthFailed(
        "--private-key: an RSA key (RS384) or an EC P-384 key (ES384) is needed "
        "(SMART Backend Services)"
    )


def _secure(url: str, what: str) -> None:
    """Credentials go over TLS only, but to this machine."""
    if origin(url)[0] != "https" and not is_loopback(urlsplit(url).hostname):
        raise AuthFailed(
            f"{what} ({public(url)}) is not https: b12dx sends credentials over TLS only"
        )


@dataclass
class BackendAuth:
    """A SMART Backend Services client: its id, key, key id (``kid`` of its JWKS entry)
    and the scope it asks for. ``token_url``: found from the server's
    ``.well-known/smart-configuration`` when not given."""

    client_id: str
    key_path: Path
    key_id: str | None = None
    scope: str = DEFAULT_SCOPE
    token_url: str | None = None
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    def token_endpoint(self, client: httpx.Client, base: str) -> str:
        """The token endpoint: --token-url, else the one the FHIR server names, if it is
        on the server's own address (a server could otherwise name another EHR's
        endpoint, have b12dx fetch a real token there and receive it)."""
        if self.token_url:
            _secure(self.token_url, "--token-url")
            return self.token_url
        url = f"{base.rstrip('/')}/.well-known/smart-configuration"
        try:
            answer = read_json(client, "GET", url, headers={"Accept": "application/json"})
            body = answer.body if answer.status == 200 and isinstance(answer.body, dict) else {}
            endpoint = body.get("token_endpoint")
        except (httpx.HTTPError, ServerRefused):
            endpoint = None
        if not isinstance(endpoint, str) or not endpoint:
            raise AuthFailed(
                f"the FHIR server names no token endpoint at {public(url)}: give it with "
                "--token-url"
            )
        if origin(endpoint) != origin(base):
            raise AuthFailed(
                f"the FHIR server names a token endpoint on another address "
                f"({public(endpoint)}): give it with --token-url if that is the server's "
                "own authorisation service"
            )
        _secure(endpoint, "the token endpoint")
        self.token_url = endpoint
        return endpoint

    def assertion(self, audience: str) -> str:
        key, algorithm = load_key(self.key_path)
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    def token(self, client: httpx.Client, base: str) -> str:
        """A current access token, asked for when there is none or it is about to end."""
        if self._token and time.monotonic() < self._expires - RENEW_BEFORE_S:
            return self._token
        _secure(base, "the FHIR server")  # which gets the token
        endpoint = self.token_endpoint(client, base)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(endpoint),
        }
        try:
            answer = read_json(
                client, "POST", endpoint, headers={"Accept": "application/json"}, data=form
            )
        except (httpx.HTTPError, ServerRefused) as exc:
            raise AuthFailed(
                f"the token endpoint {public(endpoint)} did not answer ({said(exc)})"
            ) from None
        body = answer.body if isinstance(answer.body, dict) else {}
        token = body.get("access_token")
        if answer.status != 200 or not isinstance(token, str) or not token:
            why = body.get("error_description") or body.get("error") or answer.reason
            raise AuthFailed(
                f"the token endpoint refused client {said(self.client_id, 60)!r} "
                f"(HTTP {answer.status}: {said(why)})"
            )
        self._token = token
        lifetime = seconds(body.get("expires_in"))
        self._expires = time.monotonic() + min(lifetime or 300.0, 24 * 3600.0)
        return token
