"""CDS Hooks 2.0.1, Trusting CDS Clients (b12dx.cds.auth): real keys, real signatures,
a real HTTP JWKS endpoint on 127.0.0.1, and an injected clock for every time rule."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from b12dx.cds.auth import (
    AuthError,
    ClientAuthenticator,
    ClientIdentity,
    TrustedIssuer,
    load_issuers,
)
from b12dx.cds.replay import SharedReplayCache
from jwt_keys import b64url, handmade, public_jwk
from loopback import serving

ISS = "https://ehr.example.org"
AUD = "https://cds.example.org/cds-services/b12-patient-view"
T0 = 1_800_000_000


class Clock:
    """A settable stand-in for time.time."""

    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def jwks(rsa_key, ec_key) -> dict[str, Any]:
    return {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}


def claims(clock: Clock, **overrides: Any) -> dict[str, Any]:
    """A valid CDS Hooks payload at the clock's time; an override of None drops the claim."""
    payload: dict[str, Any] = {
        "iss": ISS,
        "sub": "b12-client",
        "aud": AUD,
        "iat": int(clock.now),
        "exp": int(clock.now) + 240,
        "jti": str(uuid.uuid4()),
        "tenant": "hospital-1",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def sign(key: Any, alg: str, kid: str | None, payload: dict[str, Any], **headers: Any) -> str:
    extra = {"typ": "JWT", **headers}
    if kid is not None:
        extra["kid"] = kid
    # PyJWS rather than jwt.encode: the latter refuses some malformed claims we test with.
    return jwt.PyJWS().encode(json.dumps(payload).encode(), key, algorithm=alg, headers=extra)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(jwks, clock) -> ClientAuthenticator:
    return ClientAuthenticator([TrustedIssuer(ISS, jwks=jwks)], clock=clock)


@pytest.fixture(params=["memory", "shared"])
def replaying(request, jwks, clock, tmp_path) -> ClientAuthenticator:
    """An authenticator with each kind of replay cache: the process's own, and the file
    every worker of the server shares (what `b12dx serve` uses)."""
    cache = SharedReplayCache(tmp_path / "tokens.sqlite3") if request.param == "shared" else None
    return ClientAuthenticator([TrustedIssuer(ISS, jwks=jwks)], clock=clock, replay=cache)


def refused(auth: ClientAuthenticator, authorization: str | None, audience: str = AUD) -> str:
    with pytest.raises(AuthError) as info:
        auth.authenticate(authorization, audience)
    return info.value.reason


# -- accepted ------------------------------------------------------------------------


def test_valid_rs384_token_is_accepted_and_identifies_the_client(auth, clock, rsa_key) -> None:
    payload = claims(clock)
    token = sign(rsa_key, "RS384", "rsa-1", payload)
    identity = auth.authenticate(f"Bearer {token}", AUD)
    assert identity == ClientIdentity(
        iss=ISS, sub="b12-client", jti=payload["jti"], tenant="hospital-1"
    )


def test_valid_es384_token_is_accepted(auth, clock, ec_key) -> None:
    payload = claims(clock, sub=None, tenant=None)
    token = sign(ec_key, "ES384", "ec-1", payload)
    identity = auth.authenticate(f"Bearer {token}", AUD)
    assert identity == ClientIdentity(iss=ISS, sub=None, jti=payload["jti"], tenant=None)


def test_the_scheme_is_case_insensitive(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert auth.authenticate(f"bearer  {token}", AUD).iss == ISS


def test_a_token_without_kid_is_checked_against_the_issuers_keys(auth, clock, ec_key) -> None:
    # The spec makes kid REQUIRED, but every key tried belongs to the trusted issuer.
    token = sign(ec_key, "ES384", None, claims(clock))
    assert auth.authenticate(f"Bearer {token}", AUD).iss == ISS


@pytest.mark.parametrize(
    ("token_aud", "endpoint"),
    [
        ([AUD], AUD),
        (["https://other.example.org/cds-services/x", AUD], AUD),
        (AUD + "/", AUD),
        (AUD, AUD + "/"),
    ],
    ids=["list-of-one", "list-of-two", "slash-in-token", "slash-in-endpoint"],
)
def test_audience_list_and_trailing_slash_are_accepted(
    auth, clock, rsa_key, token_aud, endpoint
) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, aud=token_aud))
    assert auth.authenticate(f"Bearer {token}", endpoint).iss == ISS


# -- time ----------------------------------------------------------------------------


def test_expired_token_is_refused_but_leeway_absorbs_skew(auth, clock, rsa_key) -> None:
    payload = claims(clock, exp=T0 + 240)
    clock.now = T0 + 240 + 30  # expired, but within the 60 s leeway
    assert auth.authenticate(f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', payload)}", AUD)
    clock.now = T0 + 240 + 61
    token = sign(rsa_key, "RS384", "rsa-1", claims(Clock(T0), exp=T0 + 240))
    assert refused(auth, f"Bearer {token}") == "the token has expired"


@pytest.mark.parametrize(("lifetime", "ok"), [(300 + 59, True), (300 + 61, False), (3600, False)])
def test_exp_too_far_in_the_future_is_refused(auth, clock, rsa_key, lifetime, ok) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, exp=T0 + lifetime))
    if ok:
        assert auth.authenticate(f"Bearer {token}", AUD).iss == ISS
    else:
        assert refused(auth, f"Bearer {token}") == "the token expires too far in the future"


def test_iat_in_the_future_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, iat=T0 + 120))
    assert "issued in the future" in refused(auth, f"Bearer {token}")


def test_nbf_in_the_future_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, nbf=T0 + 120))
    assert "not valid yet" in refused(auth, f"Bearer {token}")


def test_non_numeric_exp_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, exp="soon"))
    assert "numeric" in refused(auth, f"Bearer {token}")


# -- audience, issuer ----------------------------------------------------------------


@pytest.mark.parametrize(
    "token_aud",
    [
        "https://cds.example.org/cds-services/other-service",
        "https://evil.example.org/cds-services/b12-patient-view",
        ["https://cds.example.org/cds-services/other-service"],
        AUD + "//",
    ],
)
def test_wrong_audience_is_refused(auth, clock, rsa_key, token_aud) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, aud=token_aud))
    assert "audience" in refused(auth, f"Bearer {token}")


def test_unknown_issuer_is_refused(auth, clock, rsa_key) -> None:
    # Same key, even: what matters is that the issuer is not configured.
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, iss="https://rogue.example.org"))
    assert refused(auth, f"Bearer {token}") == "the token's issuer is not trusted by this service"


def test_non_string_issuer_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, iss=["https://ehr.example.org"]))
    assert "not trusted" in refused(auth, f"Bearer {token}")


# -- replay --------------------------------------------------------------------------


def test_replayed_jti_is_refused_and_a_new_jti_accepted(replaying, clock, rsa_key) -> None:
    auth = replaying
    payload = claims(clock)
    token = sign(rsa_key, "RS384", "rsa-1", payload)
    auth.authenticate(f"Bearer {token}", AUD)
    reason = refused(auth, f"Bearer {token}")
    assert reason == "the token has already been used (replayed jti)"
    assert payload["jti"] not in reason and token not in reason  # nothing echoed back
    # Same jti in a freshly signed token is still a replay.
    again = sign(rsa_key, "RS384", "rsa-1", claims(clock, jti=payload["jti"]))
    assert "replayed" in refused(auth, f"Bearer {again}")
    fresh = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert auth.authenticate(f"Bearer {fresh}", AUD).jti != payload["jti"]


def test_a_refused_token_does_not_burn_its_jti(auth, clock, rsa_key) -> None:
    payload = claims(clock)
    wrong = sign(rsa_key, "RS384", "rsa-1", {**payload, "aud": "https://elsewhere/"})
    refused(auth, f"Bearer {wrong}")
    assert auth.authenticate(f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', payload)}", AUD)


def test_replay_cache_forgets_a_jti_once_its_token_has_expired(replaying, clock, rsa_key) -> None:
    auth = replaying
    for _ in range(3):
        auth.authenticate(f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', claims(clock))}", AUD)
    assert len(auth._replay) == 3
    clock.now = T0 + 240 + 61  # all three are past exp + leeway
    auth.authenticate(f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', claims(clock))}", AUD)
    assert len(auth._replay) == 1


def test_concurrent_replays_let_exactly_one_through(replaying, clock, rsa_key) -> None:
    auth = replaying
    header = f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', claims(clock))}"
    outcomes: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            auth.authenticate(header, AUD)
            ok = True
        except AuthError:
            ok = False
        with lock:
            outcomes.append(ok)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] * 7 + [True]


def test_a_token_accepted_by_one_worker_is_refused_by_every_other(
    jwks, clock, rsa_key, tmp_path
) -> None:
    # Each worker of `b12dx serve --workers N` builds its own authenticator over the same
    # file; with the per-process cache each of two workers accepted the token once.
    path = tmp_path / "tokens.sqlite3"
    workers = [
        ClientAuthenticator(
            [TrustedIssuer(ISS, jwks=jwks)], clock=clock, replay=SharedReplayCache(path)
        )
        for _ in range(3)
    ]
    header = f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', claims(clock))}"
    assert workers[0].authenticate(header, AUD)
    for other in workers[1:]:
        assert refused(other, header) == "the token has already been used (replayed jti)"
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_service_shares_its_replay_cache_between_workers(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("B12DX_DATA_DIR", str(tmp_path))
    from b12dx.cds.routes import settings_from_env

    assert isinstance(settings_from_env().authenticator._replay, SharedReplayCache)


# -- algorithms and keys -------------------------------------------------------------


def test_alg_none_is_refused(auth, clock) -> None:
    token = handmade({"alg": "none", "typ": "JWT"}, claims(clock), None)
    assert "algorithm is not accepted" in refused(auth, f"Bearer {token}")
    token = handmade({"alg": "None", "typ": "JWT", "kid": "rsa-1"}, claims(clock), None)
    assert "algorithm is not accepted" in refused(auth, f"Bearer {token}")


def test_hs256_signed_with_the_public_key_is_refused(auth, clock, rsa_key) -> None:
    # The classic key-confusion attack: the attacker knows the public key and uses its
    # PEM as an HMAC secret, hoping the verifier feeds the same bytes to HMAC.
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = handmade({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(clock), pem)
    assert "algorithm is not accepted" in refused(auth, f"Bearer {token}")
    # Even relabelled as RS384, an HMAC is not an RSA signature.
    token = handmade({"alg": "RS384", "typ": "JWT", "kid": "rsa-1"}, claims(clock), pem)
    assert "signature does not verify" in refused(auth, f"Bearer {token}")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_tokens_are_refused_whatever_the_secret(auth, clock, alg) -> None:
    token = sign(b"s" * 64, alg, "rsa-1", claims(clock))
    assert "algorithm is not accepted" in refused(auth, f"Bearer {token}")


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS384", "ES256"])
def test_other_asymmetric_algorithms_are_refused(auth, clock, alg) -> None:
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if alg == "ES256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    token = sign(key, alg, "rsa-1", claims(clock))
    assert "algorithm is not accepted" in refused(auth, f"Bearer {token}")


def test_a_different_key_with_the_same_kid_is_refused(auth, clock) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(impostor, "RS384", "rsa-1", claims(clock))
    assert refused(auth, f"Bearer {token}") == "the token's signature does not verify"
    impostor_ec = ec.generate_private_key(ec.SECP384R1())
    token = sign(impostor_ec, "ES384", "ec-1", claims(clock))
    assert refused(auth, f"Bearer {token}") == "the token's signature does not verify"


def test_algorithm_and_key_type_must_agree(auth, clock, ec_key) -> None:
    # An ES384 token naming the RSA key's kid finds no ES384 key with that kid.
    token = sign(ec_key, "ES384", "rsa-1", claims(clock))
    assert "no trusted key" in refused(auth, f"Bearer {token}")


def test_unknown_kid_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-9", claims(clock))
    assert "no trusted key" in refused(auth, f"Bearer {token}")


def test_a_tampered_payload_is_refused(auth, clock, rsa_key) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, tenant="hospital-1"))
    head, _, sig = token.split(".")
    forged = b64url(json.dumps(claims(clock, tenant="hospital-2")).encode())
    assert "signature" in refused(auth, f"Bearer {head}.{forged}.{sig}")


# -- claims and header ---------------------------------------------------------------


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_missing_required_claim_is_refused(auth, clock, rsa_key, claim) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, **{claim: None}))
    assert refused(auth, f"Bearer {token}") == f"the token lacks the required '{claim}' claim"


@pytest.mark.parametrize("jti", ["", 42, "x" * 257])
def test_malformed_jti_is_refused(auth, clock, rsa_key, jti) -> None:
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock, jti=jti))
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {token}", AUD)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "   ",
        "Basic x",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Token abc.def.ghi",
        "Bearer " + "a" * 20_000,
    ],
)
def test_missing_or_malformed_authorization_is_refused(auth, authorization) -> None:
    reason = refused(auth, authorization)
    assert reason and "Traceback" not in reason


def test_jku_not_matching_the_configured_url_is_refused(auth, clock, rsa_key) -> None:
    # Inline keys: there is no configured URL, so any jku is foreign.
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock), jku="https://evil.example/jwks")
    assert "jku" in refused(auth, f"Bearer {token}")


def test_no_issuers_means_disabled_and_closed(clock, rsa_key) -> None:
    auth = ClientAuthenticator([], clock=clock)
    assert not auth.enabled
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert "no CDS Client is trusted" in refused(auth, f"Bearer {token}")


def test_enabled_with_an_issuer(auth) -> None:
    assert auth.enabled


def test_audience_argument_must_be_given(auth) -> None:
    with pytest.raises(ValueError):
        auth.authenticate("Bearer x", "")


# -- JWKS over HTTP ------------------------------------------------------------------


@dataclass
class JwksServer:
    url: str
    body: bytes = b""
    status: int = 200
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self, jwks: dict[str, Any]) -> None:
        self.body, self.status = json.dumps(jwks).encode(), 200


@pytest.fixture
def jwks_server(monkeypatch) -> Iterator[JwksServer]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    state = JwksServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits += 1
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler, poll_s=0.05) as port:
        state.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        yield state


def test_jwks_url_is_fetched_cached_and_refetched_on_rotation(
    jwks_server, clock, rsa_key, ec_key
) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    auth = ClientAuthenticator([TrustedIssuer(ISS, jwks_url=jwks_server.url)], clock=clock)

    token = sign(rsa_key, "RS384", "rsa-1", claims(clock), jku=jwks_server.url)
    assert auth.authenticate(f"Bearer {token}", AUD).iss == ISS
    assert auth.authenticate(f"Bearer {sign(rsa_key, 'RS384', 'rsa-1', claims(clock))}", AUD)
    assert jwks_server.hits == 1  # cached

    # The client rotates: a new kid appears at the URL.
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-2")]})
    clock.now += 11
    token = sign(ec_key, "ES384", "ec-2", claims(clock))
    assert auth.authenticate(f"Bearer {token}", AUD).iss == ISS
    assert jwks_server.hits == 2  # refetched once for the unknown kid

    # An unknown kid right after a fetch does not trigger another one (rate limit).
    token = sign(ec_key, "ES384", "ec-3", claims(clock))
    assert "no trusted key" in refused(auth, f"Bearer {token}")
    assert jwks_server.hits == 2

    # Once the cache is stale, the next request fetches again; a removed key stops working.
    jwks_server.serve({"keys": [public_jwk(ec_key, "ec-2")]})
    clock.now += 301
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert "no trusted key" in refused(auth, f"Bearer {token}")
    assert jwks_server.hits == 3


def test_jku_different_from_the_configured_url_is_refused(jwks_server, clock, rsa_key) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    auth = ClientAuthenticator([TrustedIssuer(ISS, jwks_url=jwks_server.url)], clock=clock)
    evil = jwks_server.url.replace("jwks.json", "attacker.json")
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock), jku=evil)
    assert "jku" in refused(auth, f"Bearer {token}")
    assert jwks_server.hits == 0  # refused before any fetch


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b"not found"),
        (500, b"{}"),
        (200, b"<html>not json</html>"),
        (200, b'{"no": "keys"}'),
        (302, b""),
    ],
)
def test_a_bad_jwks_response_is_an_auth_error(jwks_server, clock, rsa_key, status, body) -> None:
    jwks_server.body, jwks_server.status = body, status
    auth = ClientAuthenticator([TrustedIssuer(ISS, jwks_url=jwks_server.url)], clock=clock)
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert refused(auth, f"Bearer {token}") == "the issuer's signing keys could not be retrieved"


def test_an_unreachable_jwks_url_is_an_auth_error_not_a_crash(clock, rsa_key) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    auth = ClientAuthenticator(
        [TrustedIssuer(ISS, jwks_url=url)], clock=clock, jwks_timeout_seconds=0.5
    )
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert refused(auth, f"Bearer {token}") == "the issuer's signing keys could not be retrieved"
    # Retried only after the rate-limit interval; still a clean refusal.
    clock.now += 11
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock))
    assert refused(auth, f"Bearer {token}") == "the issuer's signing keys could not be retrieved"


# -- configuration -------------------------------------------------------------------


def test_load_issuers_reads_url_and_inline_entries(tmp_path: Path, jwks) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(
        json.dumps(
            {
                "issuers": [
                    {"iss": ISS, "jwks_url": "https://ehr.example.org/.well-known/jwks.json"},
                    {"iss": "other-ehr", "jwks": jwks},
                ]
            }
        )
    )
    issuers = load_issuers(path)
    assert issuers == [
        TrustedIssuer(ISS, jwks_url="https://ehr.example.org/.well-known/jwks.json"),
        TrustedIssuer("other-ehr", jwks=jwks),
    ]
    assert ClientAuthenticator(issuers).enabled


def test_load_issuers_accepts_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text('{"issuers": []}')
    assert load_issuers(path) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not valid JSON (line 1"),
        ("[]", '{"issuers": [...]}'),
        ('{"issuers": {}}', '{"issuers": [...]}'),
        ('{"issuers": [], "extra": 1}', "unknown field(s) ['extra']"),
        ('{"issuers": ["x"]}', 'issuers[0]: expected an object with "iss"'),
        ('{"issuers": [{"jwks_url": "https://a/j"}]}', 'issuers[0]: "iss" must be'),
        ('{"issuers": [{"iss": "", "jwks_url": "https://a/j"}]}', 'issuers[0]: "iss" must be'),
        ('{"issuers": [{"iss": "a"}]}', 'issuers[0]: give exactly one of "jwks_url"'),
        (
            '{"issuers": [{"iss": "a", "jwks_url": "https://a/j", "jwks": {"keys": []}}]}',
            "give exactly one",
        ),
        ('{"issuers": [{"iss": "a", "jwks_url": "http://a.example/j"}]}', "must use https"),
        ('{"issuers": [{"iss": "a", "jwks_url": "/relative"}]}', "not an absolute URL"),
        ('{"issuers": [{"iss": "a", "jwks_url": 7}]}', '"jwks_url" must be a string'),
        ('{"issuers": [{"iss": "a", "jwks": []}]}', '"jwks" must be a JWK Set object'),
        ('{"issuers": [{"iss": "a", "jwks": {"kids": []}}]}', "a JWK Set must be an object"),
        ('{"issuers": [{"iss": "a", "jwks": {"keys": []}}]}', "holds no RSA or EC P-384"),
        (
            '{"issuers": [{"iss": "a", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}]}',
            "private or symmetric key material",
        ),
        (
            '{"issuers": [{"iss": "a", "jwks": {"keys": [{"kty": "RSA", "n": "AQ", "e": "x!"}]}}]}',
            "keys[0]: not a valid RSA public key",
        ),
        ('{"issuers": [{"iss": "a", "jwks_url": "https://a/j", "url": 1}]}', "['url']"),
        (
            '{"issuers": [{"iss": "a", "jwks_url": "https://a/j"},'
            ' {"iss": "a", "jwks_url": "https://b/j"}]}',
            'issuers[1]: "iss" repeats issuers[0]',
        ),
    ],
)
def test_load_issuers_rejects_bad_files_clearly(tmp_path: Path, content, expected) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_issuers(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_load_issuers_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_issuers(tmp_path / "absent.json")


def test_inline_private_key_and_short_rsa_key_are_rejected(rsa_key) -> None:
    private = json.loads(RSAAlgorithm.to_jwk(rsa_key))
    with pytest.raises(ValueError, match="private"):
        TrustedIssuer(ISS, jwks={"keys": [private]})
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="shorter than 2048"):
        TrustedIssuer(ISS, jwks={"keys": [public_jwk(short, "short")]})


def test_plain_http_jwks_url_is_allowed_only_on_loopback() -> None:
    TrustedIssuer(ISS, jwks_url="http://127.0.0.1:8080/jwks")
    TrustedIssuer(ISS, jwks_url="http://localhost/jwks")
    TrustedIssuer(ISS, jwks_url="http://[::1]/jwks")
    with pytest.raises(ValueError, match="https"):
        TrustedIssuer(ISS, jwks_url="http://ehr.example.org/jwks")


def test_duplicate_issuers_are_refused_by_the_authenticator(jwks) -> None:
    with pytest.raises(ValueError, match="twice"):
        ClientAuthenticator([TrustedIssuer(ISS, jwks=jwks), TrustedIssuer(ISS, jwks=jwks)])


@pytest.mark.parametrize("typ", [None, "at+jwt", "JOSE", 5])
def test_a_token_whose_typ_is_not_jwt_is_refused(auth, clock, rsa_key, typ) -> None:
    """CDS Hooks: the JWT header's typ is "JWT"; an access or ID token is not a call."""
    token = sign(rsa_key, "RS384", "rsa-1", claims(clock), typ=typ)
    assert ("typ" in jwt.get_unverified_header(token)) == (typ is not None)
    with pytest.raises(AuthError, match="typ"):
        auth.authenticate(f"Bearer {token}", AUD)
    lower = sign(rsa_key, "RS384", "rsa-1", claims(clock), typ="jwt")
    assert auth.authenticate(f"Bearer {lower}", AUD).iss == ISS
