"""The CDS Clients b12dx trusts (``load_issuers``: the operator's issuers file) and the
public keys each signs with: a JWK Set given inline or fetched from its ``jwks_url``,
read into keys bound to one algorithm each (``parse_jwks``). Used by ``auth``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from b12dx.cds.fhir_servers import FhirServer, parse_servers
from b12dx.jsonio import loads
from b12dx.network import is_loopback

# One logger for client authentication, as an operator filters it.
logger = logging.getLogger("b12dx.cds.auth")

#: RSA keys shorter than this are not trusted (NIST SP 800-131A; RFC 7518 §3.3).
_MIN_RSA_BITS = 2048
#: JWK members that only a private key has; a JWKS holding them is a leaked key.
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS Client we trust, and where its public keys come from.

    Exactly one of ``jwks_url`` (fetched, cached, refetched on key rotation) or ``jwks``
    (an inline JWK Set ``{"keys": [...]}``) is given. ``jwks_url`` must be https (plain
    http is tolerated only for loopback hosts): the keys fetched decide whom we trust, so
    they must not be swappable on the wire.
    """

    iss: str
    jwks_url: str | None = None
    # Excluded from the hash: a mapping is not hashable, and ``iss`` identifies the entry.
    jwks: Mapping[str, Any] | None = field(default=None, hash=False)
    # The FHIR servers this client may ask the service to read from (cds/fhir_servers.py);
    # none: its calls are answered from their prefetch only.
    fhir_servers: tuple[FhirServer, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.iss, str) or not self.iss.strip():
            raise ValueError('"iss" must be a non-empty string (the CDS Client\'s issuer id)')
        if (self.jwks_url is None) == (self.jwks is None):
            raise ValueError(
                'give exactly one of "jwks_url" (an https URL serving the JWK Set) '
                'or "jwks" (an inline JWK Set {"keys": [...]})'
            )
        if self.jwks_url is not None:
            check_jwks_url(self.jwks_url)
        if self.jwks is not None:
            # Parsed here so that a bad inline key fails at start-up, not at first request.
            parse_jwks(self.jwks, strict=True)


# --------------------------------------------------------------------------------------
# Configuration


def load_issuers(path: Path) -> list[TrustedIssuer]:
    """Read the trusted CDS Clients from a JSON file.

    The file looks like::

        {"issuers": [
            {"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks",
             "fhir_servers": ["https://ehr.example.org/fhir/r4"]},
            {"iss": "other-ehr", "jwks": {"keys": [{"kty": "EC", "crv": "P-384", ...}]}}
        ]}

    ``fhir_servers``: the FHIR base URLs this client may have the service read from
    (``{"url": ..., "private": true}`` for one on a private network); without it the
    client's calls are answered from their prefetch alone.

    Raises ValueError naming the file, the entry and the field, and what is accepted.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the CDS issuers file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the CDS issuers file is not UTF-8 text") from None
    try:
        data = loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("issuers"), list):
        raise ValueError(f'{path}: expected a JSON object {{"issuers": [...]}}')
    unknown_top = sorted(set(data) - {"issuers"})
    if unknown_top:
        raise ValueError(f'{path}: unknown field(s) {unknown_top}; accepted: "issuers"')

    issuers: list[TrustedIssuer] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(data["issuers"]):
        where = f"{path}: issuers[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(
                f'{where}: expected an object with "iss" and one of "jwks_url" or "jwks"'
            )
        unknown = sorted(set(entry) - {"iss", "jwks_url", "jwks", "fhir_servers"})
        if unknown:
            raise ValueError(
                f'{where}: unknown field(s) {unknown}; accepted: "iss", "jwks_url", "jwks", '
                '"fhir_servers"'
            )
        iss = entry.get("iss")
        if not isinstance(iss, str):
            raise ValueError(f'{where}: "iss" must be a non-empty string (the client\'s issuer id)')
        jwks_url = entry.get("jwks_url")
        if jwks_url is not None and not isinstance(jwks_url, str):
            raise ValueError(f'{where}: "jwks_url" must be a string (an https URL)')
        jwks = entry.get("jwks")
        if jwks is not None and not isinstance(jwks, dict):
            raise ValueError(f'{where}: "jwks" must be a JWK Set object {{"keys": [...]}}')
        try:
            servers = parse_servers(entry.get("fhir_servers", []), f"{where}.fhir_servers")
            issuer = TrustedIssuer(iss=iss, jwks_url=jwks_url, jwks=jwks, fhir_servers=servers)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if issuer.iss in seen:
            raise ValueError(
                f'{where}: "iss" repeats issuers[{seen[issuer.iss]}]; each issuer appears once'
            )
        seen[issuer.iss] = index
        issuers.append(issuer)
    return issuers


def check_jwks_url(url: str) -> None:
    if not isinstance(url, str):
        raise ValueError('"jwks_url" must be a string (an https URL)')
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f'"jwks_url" {url!r} is not an absolute URL (https://host/path)')
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise ValueError(f'"jwks_url" {url!r} must use https (plain http only for localhost/127.0.0.1)')


# --------------------------------------------------------------------------------------
# Keys


@dataclass(frozen=True)
class Key:
    """One verification key, bound to the single algorithm it may verify."""

    kid: str | None
    alg: str
    jwk: jwt.PyJWK


class JwksError(Exception):
    """A JWK Set could not be obtained or read (detail is for the log only)."""


def parse_jwks(jwks: Any, *, strict: bool) -> tuple[Key, ...]:
    """The RS384/ES384 public keys of a JWK Set.

    ``strict`` (inline configuration) raises ValueError for anything suspicious so the
    operator sees it at start-up; otherwise (a fetched JWKS) unusable keys are skipped,
    since a client may legitimately publish keys for other purposes or algorithms.
    """
    fail: type[Exception] = ValueError if strict else JwksError
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise fail('a JWK Set must be an object {"keys": [...]}')
    keys: list[Key] = []
    for index, jwk in enumerate(jwks["keys"]):
        where = f"keys[{index}]"
        if not isinstance(jwk, Mapping):
            if strict:
                raise ValueError(f"{where}: a JWK must be an object")
            continue
        if _PRIVATE_JWK_MEMBERS & set(jwk):
            # A private or symmetric key in a *public* key set is a leaked secret (or an
            # HMAC key, which we never accept): refuse to use it rather than trust it.
            if strict:
                raise ValueError(
                    f"{where}: contains private or symmetric key material; "
                    "configure only the client's public keys"
                )
            logger.warning("JWKS key %s ignored: it contains private key material", where)
            continue
        key = key_from_jwk(jwk, where, strict=strict)
        if key is not None:
            keys.append(key)
    if strict and not keys:
        raise ValueError("the JWK Set holds no RSA or EC P-384 public key (for RS384/ES384)")
    return tuple(keys)


def key_from_jwk(jwk: Mapping[str, Any], where: str, *, strict: bool) -> Key | None:
    if jwk.get("use") not in (None, "sig"):
        return None  # an encryption key: not for verifying signatures
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        alg = "RS384"
    elif kty == "EC" and crv == "P-384":
        alg = "ES384"
    else:
        # Other key types/curves (e.g. P-256 for ES256) cannot verify RS384/ES384.
        return None
    if jwk.get("alg") not in (None, alg):
        return None  # the key is declared for another algorithm (e.g. RS256): respect it
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        if strict:
            raise ValueError(f'{where}: "kid" must be a string')
        return None
    try:
        # Binding the algorithm here means PyJWT will only ever verify with this one.
        pyjwk = jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        if strict:
            raise ValueError(f"{where}: not a valid {kty} public key ({exc})") from None
        logger.warning("JWKS key %s ignored: not a valid %s public key", where, kty)
        return None
    if isinstance(pyjwk.key, rsa.RSAPublicKey) and pyjwk.key.key_size < _MIN_RSA_BITS:
        if strict:
            raise ValueError(f"{where}: RSA key shorter than {_MIN_RSA_BITS} bits")
        logger.warning("JWKS key %s ignored: RSA key shorter than %d bits", where, _MIN_RSA_BITS)
        return None
    return Key(kid=kid, alg=alg, jwk=pyjwk)
