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

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from b12dx.bulk.defaults import DEFAULT_SCOPE
from b12dx.errors import B12dxError

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
        if self.token_url:
            return self.token_url
        url = f"{base.rstrip('/')}/.well-known/smart-configuration"
        try:
            answer = client.get(url, headers={"Accept": "application/json"})
            endpoint = answer.json().get("token_endpoint") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            endpoint = None
        if not isinstance(endpoint, str) or not endpoint:
            raise AuthFailed(
                f"the FHIR server names no token endpoint at {url}: give it with --token-url"
            )
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
        endpoint = self.token_endpoint(client, base)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(endpoint),
        }
        try:
            answer = client.post(endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AuthFailed(f"the token endpoint {endpoint} did not answer ({exc})") from None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code != 200 or not isinstance(body.get("access_token"), str):
            why = body.get("error_description") or body.get("error") or answer.reason_phrase
            raise AuthFailed(
                f"the token endpoint refused client {self.client_id!r} "
                f"(HTTP {answer.status_code}: {why})"
            )
        self._token = body["access_token"]
        lifetime = body.get("expires_in")
        self._expires = time.monotonic() + (
            float(lifetime) if isinstance(lifetime, int | float) else 300.0
        )
        return self._token
