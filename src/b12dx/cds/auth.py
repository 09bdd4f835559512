"""Authenticate the CDS Clients that call our CDS Service.

CDS Hooks 2.0.1, Trusting CDS Clients: every request from a CDS Client (the EHR) carries

    Authorization: Bearer <JWT>

where the JWT is signed with the client's private key (the spec requires services to
support ES384 and RS384), its header names the key (``kid``) and may point at the client's
JWK Set (``jku``), and its payload carries ``iss`` (who the client is), ``aud`` (the URL of
the CDS Service endpoint being invoked), ``exp``/``iat`` (a lifetime the spec says SHOULD
be at most five minutes), ``jti`` (a nonce against replay) and optionally ``sub`` and
``tenant``. The spec tells services to allowlist the issuers (and their ``jku``) they
trust; that allowlist is the list of :class:`TrustedIssuer` (read and keyed in
``issuers``) given to
:class:`ClientAuthenticator`.

Design choices, each a defence against a known JWT attack (RFC 8725):

* the accepted algorithms are fixed here (RS384, ES384), never taken from the token, so
  ``alg: none`` and the HS256-with-the-public-key confusion attack are refused before any
  key is looked at; each key is also bound to exactly one algorithm;
* keys come only from the issuer's configuration (an inline JWKS, or the JWKS URL
  configured for it). A ``jku`` header is only accepted when it equals that configured
  URL: fetching whatever URL a token names would let anyone sign tokens with their own
  key. ``jwk``/``x5u``/``x5c`` headers are ignored for the same reason;
* a JWKS URL is fetched with a timeout and a size cap, cached, refetched on an unknown
  ``kid`` (key rotation) at most once per ``_MIN_REFETCH_SECONDS``: anyone can write a
  token naming a trusted ``iss`` and an invented ``kid``, and must not be able to make us
  hammer the client's key endpoint;
* time checks use the injected clock, with a leeway for clock skew; a ``jti`` is
  remembered until the token would have expired anyway, so the cache stays bounded;
* refusal reasons (:attr:`AuthError.reason`) are fixed sentences that never echo token
  contents; the log names only configured issuers, never attacker-chosen strings.

Nothing here depends on the web framework: the route passes the ``Authorization`` header
and the URL it is serving, and maps :class:`AuthError` to HTTP 401.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from b12dx.cds.fhir_servers import FhirServer
from b12dx.cds.issuers import JwksError, Key, TrustedIssuer, load_issuers, parse_jwks
from b12dx.cds.replay import MemoryReplayCache, ReplayCache
from b12dx.jsonio import loads

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "ClientAuthenticator",
    "ClientIdentity",
    "TrustedIssuer",
    "load_issuers",
]

logger = logging.getLogger("b12dx.cds.auth")

#: The only signing algorithms accepted. CDS Hooks 2.0.1, Trusting CDS Clients requires
#: services to support ES384 and RS384; accepting nothing else keeps out ``none`` and the
#: symmetric HS* family (whose "key" would be the client's public key: RFC 8725 §2.1).
ALGORITHMS: tuple[str, ...] = ("RS384", "ES384")

#: Claims the spec marks REQUIRED in the payload (``sub`` and ``tenant`` are not).
_REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]

#: A CDS Hooks JWT is a few hundred bytes; refusing huge headers early keeps a client from
#: making us base64-decode and JSON-parse megabytes before anything is verified.
_MAX_AUTHORIZATION_CHARS = 16_384
#: A JWK Set is a few kilobytes; the cap protects memory if the URL serves something else.
_MAX_JWKS_BYTES = 256 * 1024
#: Minimum time between two fetches of one JWKS URL, whatever the tokens say.
_MIN_REFETCH_SECONDS = 10.0
#: A jti is a nonce; bounding its length bounds the replay cache's memory.
_MAX_JTI_CHARS = 256


class AuthError(Exception):
    """A request was refused.

    ``reason`` is a short sentence safe to return to the client: it says what was wrong
    (expired, wrong audience, unknown issuer...) but never repeats token contents.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ClientIdentity:
    """Who called, once the token has been verified."""

    iss: str
    sub: str | None
    jti: str
    tenant: str | None


@dataclass
class _RemoteJwks:
    """Cache state of one JWKS URL; ``lock`` serialises fetches so N requests wait for one."""

    url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: tuple[Key, ...] | None = None
    fetched_at: float = -math.inf
    last_attempt: float = -math.inf


@dataclass(frozen=True)
class _IssuerState:
    issuer: TrustedIssuer
    inline_keys: tuple[Key, ...] | None
    remote: _RemoteJwks | None


# --------------------------------------------------------------------------------------
# The authenticator


class ClientAuthenticator:
    """Verifies the bearer JWT of each CDS Service request (CDS Hooks 2.0.1, Trusting
    CDS Clients). Thread-safe; create one per application and reuse it.

    ``leeway_seconds`` absorbs clock skew between client and service in every time check.
    ``max_lifetime_seconds`` is how far in the future ``exp`` may lie (the spec: the
    client SHOULD make the token expire within five minutes). ``clock`` returns Unix time
    and is injectable for tests; it also drives the JWKS cache.
    """

    def __init__(
        self,
        issuers: Sequence[TrustedIssuer],
        *,
        leeway_seconds: int = 60,
        max_lifetime_seconds: int = 300,
        jwks_timeout_seconds: float = 2.0,
        jwks_cache_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        replay: ReplayCache | None = None,
    ) -> None:
        if leeway_seconds < 0 or max_lifetime_seconds <= 0:
            raise ValueError("leeway_seconds must be >= 0 and max_lifetime_seconds > 0")
        if jwks_timeout_seconds <= 0 or jwks_cache_seconds < 0:
            raise ValueError("jwks_timeout_seconds must be > 0 and jwks_cache_seconds >= 0")
        self._leeway = float(leeway_seconds)
        self._max_lifetime = float(max_lifetime_seconds)
        self._jwks_timeout = float(jwks_timeout_seconds)
        self._jwks_cache_seconds = float(jwks_cache_seconds)
        self._clock = clock
        # Shared by every worker when the service passes one (cds/replay.py).
        self._replay: ReplayCache = replay if replay is not None else MemoryReplayCache()
        self._issuers: dict[str, _IssuerState] = {}
        for issuer in issuers:
            if issuer.iss in self._issuers:
                raise ValueError(f"issuer {issuer.iss!r} is configured twice")
            inline = parse_jwks(issuer.jwks, strict=True) if issuer.jwks is not None else None
            remote = _RemoteJwks(issuer.jwks_url) if issuer.jwks_url is not None else None
            self._issuers[issuer.iss] = _IssuerState(issuer, inline, remote)

    @property
    def enabled(self) -> bool:
        """True when at least one issuer is configured.

        When False, whether to serve unauthenticated requests is the caller's decision
        (:meth:`authenticate` itself then refuses everything: it fails closed).
        """
        return bool(self._issuers)

    def fhir_servers(self, iss: str) -> tuple[FhirServer, ...]:
        """The FHIR servers the verified issuer ``iss`` may name."""
        state = self._issuers.get(iss)
        return state.issuer.fhir_servers if state is not None else ()

    def authenticate(self, authorization: str | None, audience: str) -> ClientIdentity:
        """Verify the ``Authorization`` header of a request to the endpoint ``audience``.

        ``audience`` is the absolute URL of the CDS Service endpoint being invoked, e.g.
        ``https://host/cds-services/b12-patient-view``, as the client addressed it (mind
        reverse proxies). Returns the caller's identity; raises :class:`AuthError`.
        """
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be the URL of the CDS Service endpoint")
        token = _bearer_token(authorization)
        if not self._issuers:
            # Fail closed: an authenticator with nobody to trust trusts nobody.
            raise self._refuse("no CDS Client is trusted by this service")

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise self._refuse("the bearer token is not a well-formed JWT") from None

        # CDS Hooks 2.0.1: the JWT header's typ is "JWT"; a token of another kind (an access
        # token, an ID token replayed here) is not a client's call (RFC 8725 §3.11).
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise self._refuse('the token\'s typ header must be "JWT"')
        # The algorithm allowlist comes first and is ours, not the token's (RFC 8725 §3.1).
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise self._refuse("the token's signing algorithm is not accepted (use RS384 or ES384)")
        iss = unverified.get("iss")
        if iss is None:
            raise self._refuse("the token lacks the required 'iss' claim")
        state = self._issuers.get(iss) if isinstance(iss, str) else None
        if state is None:
            raise self._refuse("the token's issuer is not trusted by this service")

        jku = header.get("jku")
        if jku is not None and jku != state.issuer.jwks_url:
            # CDS Hooks 2.0.1 says services SHOULD allowlist jku; we never fetch it, we only
            # accept it when it names the URL already configured for this issuer.
            raise self._refuse(
                "the token's jku does not match the JWKS URL configured for its issuer", iss
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._refuse("the token's kid header must be a string", iss)

        claims = self._verify_signature(token, state, alg, kid, audience)
        identity = self._check_claims(claims, iss)
        logger.debug("CDS client accepted: iss=%s", iss)
        return identity

    # -- steps ------------------------------------------------------------------------

    def _verify_signature(
        self, token: str, state: _IssuerState, alg: str, kid: str | None, audience: str
    ) -> dict[str, Any]:
        iss = state.issuer.iss
        candidates = self._candidate_keys(state, alg, kid, refresh=False)
        if not candidates and state.remote is not None:
            # An unknown kid usually means the client rotated its keys: look again, once.
            candidates = self._candidate_keys(state, alg, kid, refresh=True)
        if not candidates:
            raise self._refuse("no trusted key of the issuer matches the token's kid", iss)

        # The spec makes "kid" REQUIRED; without one we try each of the issuer's keys for
        # this algorithm (all are trusted for this issuer, so this widens nothing).
        base = audience[:-1] if audience.endswith("/") else audience
        for key in candidates:
            try:
                return jwt.decode(
                    token,
                    key=key.jwk,
                    algorithms=[key.alg],
                    audience=[base, base + "/"],  # tolerate a trailing-slash difference
                    issuer=iss,
                    options={
                        "require": list(_REQUIRED_CLAIMS),
                        "verify_signature": True,
                        "verify_aud": True,
                        "verify_iss": True,
                        # Time checks are done in _check_claims against the injected clock.
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.MissingRequiredClaimError as exc:
                claim = exc.claim if exc.claim in _REQUIRED_CLAIMS else "a required"
                raise self._refuse(f"the token lacks the required '{claim}' claim", iss) from None
            except jwt.InvalidAudienceError:
                raise self._refuse(
                    "the token's audience (aud) is not this CDS Service endpoint", iss
                ) from None
            except jwt.InvalidIssuerError:
                raise self._refuse(
                    "the token's issuer is not trusted by this service", iss
                ) from None
            except jwt.InvalidAlgorithmError:
                raise self._refuse(
                    "the token's signing algorithm does not fit its key", iss
                ) from None
            except jwt.PyJWTError:
                raise self._refuse("the bearer token is not a valid JWT", iss) from None
        raise self._refuse("the token's signature does not verify", iss)

    def _candidate_keys(
        self, state: _IssuerState, alg: str, kid: str | None, *, refresh: bool
    ) -> list[Key]:
        if state.inline_keys is not None:
            keys = state.inline_keys
        else:
            assert state.remote is not None
            try:
                keys = self._remote_keys(state.remote, refresh=refresh)
            except JwksError as exc:
                logger.warning(
                    "CDS client refused: JWKS of iss=%s unavailable (%s)", state.issuer.iss, exc
                )
                raise AuthError("the issuer's signing keys could not be retrieved") from None
        return [k for k in keys if k.alg == alg and (kid is None or k.kid == kid)]

    def _remote_keys(self, remote: _RemoteJwks, *, refresh: bool) -> tuple[Key, ...]:
        keys = remote.keys
        if not refresh and keys is not None and self._is_fresh(remote):
            return keys  # fast path without the lock: tuples are replaced, never mutated
        with remote.lock:
            fresh = remote.keys is not None and self._is_fresh(remote)
            if fresh and not refresh:
                assert remote.keys is not None
                return remote.keys  # another thread fetched while we waited
            now = self._clock()
            if now - remote.last_attempt < _MIN_REFETCH_SECONDS:
                # Rate limit: tokens naming a trusted iss are forgeable by anyone, so they
                # must not be able to make us fetch on every request.
                if fresh:
                    assert remote.keys is not None
                    return remote.keys
                raise JwksError("the last fetch failed moments ago")
            remote.last_attempt = now
            try:
                keys = self._fetch(remote.url)
            except JwksError:
                if fresh:
                    assert remote.keys is not None
                    return remote.keys  # a failed refresh keeps the still-valid keys
                raise
            remote.keys, remote.fetched_at = keys, now
            return keys

    def _is_fresh(self, remote: _RemoteJwks) -> bool:
        return self._clock() - remote.fetched_at < self._jwks_cache_seconds

    def _fetch(self, url: str) -> tuple[Key, ...]:
        body = bytearray()
        try:
            # No redirects: the configured URL is the trust anchor, not wherever it points.
            with (
                httpx.Client(timeout=self._jwks_timeout, follow_redirects=False) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JwksError(f"HTTP status {response.status_code}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        raise JwksError(f"response larger than {_MAX_JWKS_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise JwksError(type(exc).__name__) from None
        try:
            data = loads(bytes(body))
        except ValueError:
            raise JwksError("response is not JSON") from None
        keys = parse_jwks(data, strict=False)
        logger.info("fetched JWKS %s: %d usable key(s)", url, len(keys))
        return keys

    def _check_claims(self, claims: Mapping[str, Any], iss: str) -> ClientIdentity:
        now = self._clock()
        exp = _numeric_date(claims.get("exp"))
        iat = _numeric_date(claims.get("iat"))
        if exp is None or iat is None:
            raise self._refuse("the token's exp and iat must be numeric dates", iss)
        if exp <= now - self._leeway:
            raise self._refuse("the token has expired", iss)
        if exp > now + self._max_lifetime + self._leeway:
            # CDS Hooks 2.0.1: exp SHOULD be no more than 5 minutes in the future; a
            # long-lived token is a stolen-token risk and would bloat the replay cache.
            raise self._refuse("the token expires too far in the future", iss)
        if iat > now + self._leeway:
            raise self._refuse("the token was issued in the future (iat)", iss)
        if "nbf" in claims:
            nbf = _numeric_date(claims["nbf"])
            if nbf is None:
                raise self._refuse("the token's nbf must be a numeric date", iss)
            if nbf > now + self._leeway:
                raise self._refuse("the token is not valid yet (nbf)", iss)

        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI_CHARS:
            raise self._refuse(
                f"the token's jti must be a non-empty string of at most {_MAX_JTI_CHARS} "
                "characters",
                iss,
            )
        sub = claims.get("sub")
        tenant = claims.get("tenant")
        if sub is not None and not isinstance(sub, str):
            raise self._refuse("the token's sub must be a string", iss)
        if tenant is not None and not isinstance(tenant, str):
            raise self._refuse("the token's tenant must be a string", iss)

        # Last, so that a token refused for another reason does not burn its jti.
        if not self._replay.first_use(iss, jti, forget_after=exp + self._leeway, now=now):
            raise self._refuse("the token has already been used (replayed jti)", iss)
        return ClientIdentity(iss=iss, sub=sub, jti=jti, tenant=tenant)

    @staticmethod
    def _refuse(reason: str, iss: str | None = None) -> AuthError:
        # Only a configured issuer is logged: an unknown iss is attacker-chosen text.
        logger.info("CDS client refused: %s (iss=%s)", reason, iss or "-")
        return AuthError(reason)


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise ClientAuthenticator._refuse("the request has no Authorization header")
    if len(authorization) > _MAX_AUTHORIZATION_CHARS:
        raise ClientAuthenticator._refuse("the Authorization header is too long")
    parts = authorization.split()
    # The auth scheme is case-insensitive (RFC 7235 §2.1).
    if parts[0].lower() != "bearer":
        raise ClientAuthenticator._refuse("the Authorization header must use the Bearer scheme")
    if len(parts) != 2:
        raise ClientAuthenticator._refuse(
            "the Authorization header must be 'Bearer' followed by one token"
        )
    return parts[1]


def _numeric_date(value: Any) -> float | None:
    """An RFC 7519 NumericDate (seconds since the epoch), or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
