"""JWTResolver: the attack corpus, claims, the verified-token cache and JWKS over real HTTP.

Tokens are real: made with `jwt.encode`, or assembled by hand (base64url + HMAC) where
PyJWT refuses to make the hostile ones. Keys are real RSA and EC keys, and JWKS is served by a
real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tenant_trace import (
    ConfigurationError,
    JWTResolver,
    Rejection,
    RequestView,
    Tenant,
    TenantPolicy,
)
from tests.conftest import FAR_EXP, FakeClock

SECRET = "jwt-tests-hmac-secret-long-enough-for-hs512-" + "x" * 24
DROP = object()
# Seconds the key server and the resolver wait for each other when all is well: generous,
# since a busy machine is slow and the per-test timeout catches a real hang.
PATIENCE = 10.0


# -- tokens -------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def craft(header: object, payload: object, *, secret: str | bytes | None = SECRET) -> str:
    """A token assembled by hand: any header and payload (a str is used verbatim as JSON
    text), HS256-signed with `secret`, or with an empty signature when `secret` is None."""
    head = header if isinstance(header, str) else json.dumps(header)
    body = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64(head.encode())}.{b64(body.encode())}"
    if secret is None:
        return signing_input + "."
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def claims(**changes: object) -> dict[str, object]:
    """Good claims (tenant acme, valid until 2100) with `changes`; DROP removes a claim."""
    result: dict[str, object] = {"tenant_id": "acme", "exp": FAR_EXP}
    for name, value in changes.items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


HS256 = {"alg": "HS256", "typ": "JWT"}


def bearer(token: str) -> RequestView:
    return RequestView(headers=[("Authorization", f"Bearer {token}")])


def hs(**options: Any) -> JWTResolver:
    return JWTResolver(key=SECRET, algorithms=["HS256"], **options)


def rejection(resolver: JWTResolver, token: str) -> Rejection:
    with pytest.raises(Rejection) as info:
        resolver(bearer(token))
    exc = info.value
    body = json.loads(exc.body())
    assert body == {"error": exc.code, "detail": exc.detail}
    if token:
        assert token not in exc.detail
    return exc


# -- keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "RS256"
    else:
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "ES256"
    return {**data, "kid": kid, "use": "sig", "alg": alg}


# -- the attack corpus, HS256 -------------------------------------------------------------

HS256_CORPUS = [
    pytest.param(lambda: craft({"alg": "none"}, claims(), secret=None), "invalid_token",
                 id="alg-none"),
    pytest.param(lambda: craft({"alg": "None"}, claims(), secret=None), "invalid_token",
                 id="alg-None"),
    pytest.param(lambda: craft({"alg": ""}, claims(), secret=None), "invalid_token",
                 id="alg-empty"),
    pytest.param(lambda: craft({"alg": "none"}, claims()), "invalid_token",
                 id="alg-none-with-signature"),
    pytest.param(lambda: craft({"typ": "JWT"}, claims()), "invalid_token", id="alg-missing"),
    pytest.param(lambda: jwt.encode(claims(), SECRET, algorithm="HS512"), "invalid_token",
                 id="alg-not-configured"),
    pytest.param(lambda: craft(HS256, claims(), secret="another-secret-of-32-bytes-or-more"),
                 "invalid_token", id="wrong-secret"),
    pytest.param(lambda: craft(HS256, claims())[:-2], "invalid_token", id="truncated-signature"),
    pytest.param(lambda: craft(HS256, claims(exp=DROP)), "invalid_token", id="missing-exp"),
    pytest.param(lambda: craft(HS256, claims(tenant_id=DROP)), "invalid_token",
                 id="missing-tenant-claim"),
    pytest.param(lambda: craft(HS256, claims(tenant_id=None)), "invalid_token",
                 id="tenant-null"),
    pytest.param(lambda: craft(HS256, claims(tenant_id=42)), "invalid_token",
                 id="tenant-number"),
    pytest.param(lambda: craft(HS256, claims(tenant_id=["acme"])), "invalid_token",
                 id="tenant-list"),
    pytest.param(lambda: craft(HS256, claims(tenant_id={"id": "acme"})), "invalid_token",
                 id="tenant-object"),
    pytest.param(lambda: craft(HS256, claims(tenant_id=True)), "invalid_token",
                 id="tenant-bool"),
    pytest.param(lambda: craft(HS256, claims(tenant_id="a" * 256)), "invalid_token",
                 id="tenant-256-chars"),
    pytest.param(lambda: craft(HS256, claims(tenant_id="acme\r\nX-Evil: 1")), "invalid_token",
                 id="tenant-crlf"),
    pytest.param(lambda: craft(HS256, claims(tenant_id="")), "invalid_token",
                 id="tenant-empty"),
    pytest.param(lambda: craft(HS256, claims(tenant_id="acme\u202e")), "invalid_token",
                 id="tenant-bidi"),
    pytest.param(lambda: craft(HS256, claims(exp=[])), "invalid_token", id="exp-list"),
    pytest.param(lambda: craft(HS256, claims(exp={})), "invalid_token", id="exp-object"),
    pytest.param(lambda: craft(HS256, claims(exp=None)), "invalid_token", id="exp-null"),
    pytest.param(lambda: craft(HS256, '{"tenant_id": "acme", "exp": 1e400}'), "invalid_token",
                 id="exp-1e400"),
    pytest.param(lambda: craft(HS256, '{"tenant_id": "acme", "exp": NaN}'), "invalid_token",
                 id="exp-nan"),
    pytest.param(lambda: craft(HS256, claims(exp="tomorrow")), "invalid_token",
                 id="exp-string"),
    pytest.param(lambda: craft(HS256, claims(exp=int(time.time()) - 10)), "expired_token",
                 id="expired"),
    pytest.param(lambda: craft(HS256, claims(nbf=int(time.time()) + 60)), "invalid_token",
                 id="not-yet-valid"),
    pytest.param(lambda: craft(HS256, claims(nbf=[])), "invalid_token", id="nbf-list"),
    pytest.param(lambda: craft(HS256, claims(iat=int(time.time()) + 60)), "invalid_token",
                 id="issued-in-the-future"),
    pytest.param(lambda: craft(HS256, claims(iat="yesterday")), "invalid_token",
                 id="iat-string"),
    pytest.param(lambda: "", "invalid_token", id="empty"),
    pytest.param(lambda: "a.b", "invalid_token", id="two-segments"),
    pytest.param(lambda: "a.b.c.d", "invalid_token", id="four-segments"),
    pytest.param(lambda: "!!!.@@@.###", "invalid_token", id="bad-base64"),
    pytest.param(lambda: craft(HS256, claims()).replace(".", ".\u00e9", 1), "invalid_token",
                 id="non-ascii"),
    pytest.param(lambda: craft("[]", claims()), "invalid_token", id="header-array"),
    pytest.param(lambda: craft("null", claims()), "invalid_token", id="header-null"),
    pytest.param(lambda: craft('"HS256"', claims()), "invalid_token", id="header-string"),
    pytest.param(lambda: craft("{", claims()), "invalid_token", id="header-not-json"),
    pytest.param(lambda: craft(HS256, "[1, 2]"), "invalid_token", id="payload-array"),
    pytest.param(lambda: craft(HS256, "{"), "invalid_token", id="payload-not-json"),
    pytest.param(lambda: craft("[" * 5000 + "]" * 5000, claims()), "invalid_token",
                 id="header-deeply-nested"),
    pytest.param(lambda: craft(HS256, claims(pad="x" * 16_000)), "invalid_token",
                 id="16kb-token"),
]  # fmt: skip


def test_the_crafting_helper_makes_tokens_that_verify() -> None:
    """The control for the corpus: the same hand-made token, unspoilt, is accepted."""
    assert hs()(bearer(craft(HS256, claims()))) == Tenant("acme", "jwt")


@pytest.mark.parametrize(("make", "code"), HS256_CORPUS)
def test_attack_corpus_is_401(make: Callable[[], str], code: str) -> None:
    exc = rejection(hs(), make())
    assert (exc.status, exc.code) == (401, code)
    assert exc.headers == (("www-authenticate", 'Bearer error="invalid_token"'),)


@pytest.mark.parametrize(("make", "code"), HS256_CORPUS[:12])
def test_attack_corpus_is_401_through_the_policy_with_a_default(
    make: Callable[[], str], code: str
) -> None:
    """A bad credential is never replaced by the default tenant."""
    policy = TenantPolicy(hs(), default="anonymous")
    with pytest.raises(Rejection) as info:
        policy.resolve(bearer(make()))
    assert (info.value.status, info.value.code) == (401, code)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"tenant_id": "acme", "exp": 1' + "0" * 400 + "}", id="exp-10e400"),
        pytest.param(claims(nbf=-(10**400)), id="nbf-minus-10e400"),
        pytest.param(claims(exp=1e300), id="exp-1e300"),
        pytest.param(claims(exp=FAR_EXP + 0.9), id="exp-fractional"),
    ],
)
def test_extreme_but_valid_dates_resolve(payload: object) -> None:
    resolver = hs()
    token = craft(HS256, payload)
    assert resolver(bearer(token)) == Tenant("acme", "jwt")
    assert resolver(bearer(token)) == Tenant("acme", "jwt")  # and from the cache


# -- public-key algorithms ----------------------------------------------------------------


def test_rs256_with_a_pem_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = JWTResolver(key=public_pem(rsa_key), algorithms=["RS256"])
    token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert resolver(bearer(token)) == Tenant("acme", "jwt")


def test_es256_with_a_key_object(ec_key: ec.EllipticCurvePrivateKey) -> None:
    resolver = JWTResolver(key=ec_key.public_key(), algorithms=["ES256"])
    token = jwt.encode(claims(), ec_key, algorithm="ES256")
    assert resolver(bearer(token)) == Tenant("acme", "jwt")


def test_hs256_signed_with_the_rs256_public_key_is_401(rsa_key: rsa.RSAPrivateKey) -> None:
    """The algorithm-confusion attack: the public key used as an HMAC secret."""
    pem = public_pem(rsa_key)
    resolver = JWTResolver(key=pem, algorithms=["RS256"])
    exc = rejection(resolver, craft(HS256, claims(), secret=pem))
    assert (exc.status, exc.code) == (401, "invalid_token")


@pytest.mark.parametrize(
    "alg", [pytest.param("none"), pytest.param("None"), pytest.param("", id="empty")]
)
def test_unsigned_tokens_against_rs256_are_401(rsa_key: rsa.RSAPrivateKey, alg: str) -> None:
    resolver = JWTResolver(key=public_pem(rsa_key), algorithms=["RS256"])
    assert rejection(resolver, craft({"alg": alg}, claims(), secret=None)).status == 401


def test_a_token_signed_by_another_rsa_key_is_401(
    rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    resolver = JWTResolver(key=public_pem(rsa_key), algorithms=["RS256"])
    token = jwt.encode(claims(), rsa_key_2, algorithm="RS256")
    assert rejection(resolver, token).status == 401


def test_an_es256_token_against_an_rs256_key_is_401(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    resolver = JWTResolver(key=public_pem(rsa_key), algorithms=["RS256", "ES256"])
    assert rejection(resolver, jwt.encode(claims(), ec_key, algorithm="ES256")).status == 401


# -- audience, issuer, leeway, claims -----------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        pytest.param({}, True, id="good"),
        pytest.param({"aud": ["other", "api://tenants"]}, True, id="aud-list-with-ours"),
        pytest.param({"aud": "api://other"}, False, id="wrong-aud"),
        pytest.param({"aud": DROP}, False, id="missing-aud"),
        pytest.param({"aud": ["api://tenants-x"]}, False, id="aud-list-without-ours"),
        pytest.param({"iss": "https://idp.evil"}, False, id="issuer-evil"),
        pytest.param({"iss": "https://id"}, False, id="issuer-prefix"),
        pytest.param({"iss": "https://idp/"}, False, id="issuer-trailing-slash"),
        pytest.param({"iss": ["https://idp"]}, False, id="issuer-list"),
        pytest.param({"iss": DROP}, False, id="missing-issuer"),
    ],
)
def test_audience_and_exact_issuer(changes: dict[str, object], ok: bool) -> None:
    resolver = hs(audience="api://tenants", issuer="https://idp")
    token = craft(HS256, claims(**{"aud": "api://tenants", "iss": "https://idp", **changes}))
    if ok:
        assert resolver(bearer(token)) == Tenant("acme", "jwt")
    else:
        assert rejection(resolver, token).status == 401


@pytest.mark.parametrize(
    ("leeway", "ok"), [pytest.param(0, False, id="no-leeway"), pytest.param(60, True, id="60s")]
)
def test_expired_with_and_without_leeway(leeway: float, ok: bool) -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 10), SECRET)
    resolver = hs(leeway=leeway)
    if ok:
        assert resolver(bearer(token)) == Tenant("acme", "jwt")
    else:
        exc = rejection(resolver, token)
        assert (exc.status, exc.code) == (401, "expired_token")


@pytest.mark.parametrize(
    ("org", "expected"),
    [
        pytest.param({"id": "acme"}, "acme", id="nested"),
        pytest.param({"id": "acme", "name": "Acme"}, "acme", id="nested-with-siblings"),
        pytest.param("acme", None, id="not-an-object"),
        pytest.param({"id": 7}, None, id="nested-number"),
        pytest.param({"name": "Acme"}, None, id="nested-missing"),
        pytest.param(DROP, None, id="missing"),
        pytest.param([{"id": "acme"}], None, id="list"),
    ],
)
def test_nested_claim_path(org: object, expected: str | None) -> None:
    resolver = hs(claim="org.id")
    token = craft(HS256, claims(tenant_id=DROP, org=org))
    if expected is not None:
        assert resolver(bearer(token)) == Tenant(expected, "jwt")
    else:
        assert rejection(resolver, token).status == 401


def test_extra_required_claims() -> None:
    resolver = hs(required_claims=("exp", "sub"))
    assert rejection(resolver, craft(HS256, claims())).status == 401
    assert resolver(bearer(craft(HS256, claims(sub="user-1")))) == Tenant("acme", "jwt")


def test_an_optional_exp_when_configured() -> None:
    resolver = hs(required_claims=())
    assert resolver(bearer(craft(HS256, claims(exp=DROP)))) == Tenant("acme", "jwt")


# -- where the token is -------------------------------------------------------------------


def test_a_token_from_a_cookie() -> None:
    resolver = hs(cookie="session")
    good = craft(HS256, claims())
    other = craft(HS256, claims(tenant_id="globex"))
    request = RequestView(
        headers=[("Cookie", f"theme=dark; session={good}"), ("Authorization", f"Bearer {other}")]
    )
    assert resolver(request) == Tenant("acme", "jwt")
    assert resolver(RequestView(headers=[("Authorization", f"Bearer {good}")])) is None
    bad = RequestView(headers=[("Cookie", "session=not.a.token")])
    with pytest.raises(Rejection) as info:
        resolver(bad)
    assert info.value.status == 401


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic YWxhZGRpbjpvcGVuc2VzYW1l", id="basic"),
        pytest.param("Digest username=x", id="digest"),
        pytest.param("Bearertoken", id="no-space"),
    ],
)
def test_other_authorization_schemes_give_no_tenant(value: str) -> None:
    assert hs()(RequestView(headers=[("Authorization", value)])) is None
    assert hs()(RequestView()) is None


def test_bearer_without_a_token_is_401() -> None:
    for value in ("Bearer", "Bearer ", "bearer    "):
        with pytest.raises(Rejection) as info:
            hs()(RequestView(headers=[("Authorization", value)]))
        assert info.value.status == 401


def test_the_scheme_is_case_insensitive() -> None:
    token = craft(HS256, claims())
    assert hs()(RequestView(headers=[("authorization", f"BEARER {token}")])) == Tenant(
        "acme", "jwt"
    )


def test_two_different_authorization_headers_are_400() -> None:
    first, second = craft(HS256, claims()), craft(HS256, claims(tenant_id="globex"))
    request = RequestView(
        headers=[("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
    )
    with pytest.raises(Rejection) as info:
        hs()(request)
    assert (info.value.status, info.value.code) == (400, "duplicate_header")
    same = RequestView(headers=[("Authorization", f"Bearer {first}")] * 2)
    assert hs()(same) == Tenant("acme", "jwt")


def test_a_named_header_without_a_scheme() -> None:
    resolver = hs(header="X-Tenant-Token", scheme=None)
    token = craft(HS256, claims())
    assert resolver(RequestView(headers=[("X-Tenant-Token", token)])) == Tenant("acme", "jwt")
    assert resolver(bearer(token)) is None


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"algorithms": ["HS256"]}, id="no-key"),
        pytest.param({"key": SECRET, "jwks_url": "http://127.0.0.1/j", "algorithms": ["RS256"]},
                     id="key-and-jwks"),
        pytest.param({"key": SECRET, "algorithms": "HS256"}, id="algorithms-as-a-string"),
        pytest.param({"key": SECRET, "algorithms": []}, id="no-algorithms"),
        pytest.param({"key": SECRET, "algorithms": ["none"]}, id="alg-none"),
        pytest.param({"key": SECRET, "algorithms": ["HS256", "None"]}, id="alg-None-in-list"),
        pytest.param({"key": SECRET, "algorithms": ["XX256"]}, id="unknown-alg"),
        pytest.param({"key": SECRET, "algorithms": ["HS256", "RS256"]}, id="hmac-and-rsa"),
        pytest.param({"jwks_url": "http://127.0.0.1/j", "algorithms": ["HS256"]},
                     id="jwks-with-hmac"),
        pytest.param({"key": "not a pem", "algorithms": ["RS256"]}, id="bad-rsa-key"),
    ],
)  # fmt: skip
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        JWTResolver(**kwargs)


def test_a_pem_public_key_as_an_hmac_secret_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        JWTResolver(key=public_pem(rsa_key), algorithms=["HS256"])


def test_repr_never_shows_the_key() -> None:
    assert SECRET not in repr(hs())
    assert "HS256" in repr(hs())


# -- the verified-token cache -------------------------------------------------------------


def test_a_cached_token_still_expires() -> None:
    clock = FakeClock(FAR_EXP - 60)
    resolver = hs(wall_clock=clock, leeway=5)
    token = craft(HS256, claims())
    assert resolver(bearer(token)) == Tenant("acme", "jwt")
    assert token in resolver._cache  # the next calls are cache hits
    clock.advance(60 + 5)  # at exp, plus the leeway: still valid
    assert resolver(bearer(token)) == Tenant("acme", "jwt")
    clock.advance(1)
    exc = rejection(resolver, token)
    assert (exc.status, exc.code) == (401, "expired_token")
    assert token not in resolver._cache


def test_a_cached_token_is_not_valid_before_its_nbf() -> None:
    clock = FakeClock(2000)
    resolver = hs(wall_clock=clock)
    token = craft(HS256, claims(nbf=1000))  # PyJWT checks it against the real time: valid
    assert resolver(bearer(token)) == Tenant("acme", "jwt")
    clock.now = 999  # a clock set back: the cached token is not valid yet
    exc = rejection(resolver, token)
    assert (exc.status, exc.code) == (401, "invalid_token")
    assert exc.detail == "token is not valid yet"


def test_a_cached_token_is_the_same_tenant_and_skips_the_work() -> None:
    resolver = hs()
    token = craft(HS256, claims())
    first = resolver(bearer(token))
    assert resolver(bearer(token)) is first


@pytest.mark.parametrize("size", [pytest.param(0, id="disabled"), pytest.param(4, id="four")])
def test_the_cache_is_bounded(size: int) -> None:
    resolver = hs(cache_size=size)
    tokens = [craft(HS256, claims(tenant_id=f"t{n}")) for n in range(20)]
    for n, token in enumerate(tokens):
        assert resolver(bearer(token)) == Tenant(f"t{n}", "jwt")
        assert len(resolver._cache) <= size
    assert len(resolver._cache) == size
    assert all(token in resolver._cache for token in tokens[len(tokens) - size :])
    assert resolver(bearer(tokens[0])) == Tenant("t0", "jwt")  # evicted, verified again


def test_rejected_tokens_are_not_cached() -> None:
    resolver = hs()
    token = craft(HS256, claims(tenant_id="bad\n"))
    for _ in range(2):
        assert rejection(resolver, token).status == 401
    assert not resolver._cache


# -- JWKS over real HTTP ------------------------------------------------------------------


class LoopGate:
    """Makes the key server answer only when a coroutine on the event loop lets it.

    Were a JWKS fetch made on the loop's own thread, the loop would be blocked while the
    server waits: nothing could open the gate, and the answer would be counted as late.
    """

    def __init__(self) -> None:
        self.waiting = threading.Event()
        self.opened = threading.Event()
        self.late = 0

    def wait(self) -> None:  # on the server's thread
        self.waiting.set()
        if not self.opened.wait(timeout=PATIENCE):
            self.late += 1
        self.opened.clear()

    async def keep_opening(self) -> None:  # on the event loop
        while True:
            await asyncio.sleep(0.002)
            if self.waiting.is_set():
                self.waiting.clear()
                self.opened.set()


class KeyServer:
    """A JWKS endpoint on 127.0.0.1 that counts requests and answers as the test says."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.body: bytes | None = None  # raw body instead of the key set
        self.answering = threading.Event()  # cleared: requests hang until it is set again
        self.answering.set()
        self.gate: LoopGate | None = None
        self.hits = 0
        self._arrived = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._arrived:
                    owner.hits += 1
                    owner._arrived.notify_all()
                if owner.gate is not None:
                    owner.gate.wait()
                owner.answering.wait()
                body = (
                    owner.body
                    if owner.body is not None
                    else json.dumps({"keys": owner.keys}).encode()
                )
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.keys, self.status, self.body, self.gate = [], 200, None, None
        self.answering.set()
        with self._arrived:
            self.hits = 0

    def wait_for_hits(self, n: int) -> None:
        """Until `n` requests have arrived: a client that timed out may be ahead of them."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: self.hits >= n, PATIENCE), self.hits

    def close(self) -> None:
        self.answering.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def key_server_instance() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


@pytest.fixture
def key_server(
    key_server_instance: KeyServer, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> KeyServer:
    key_server_instance.reset()
    key_server_instance.keys = [jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]
    return key_server_instance


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **changes: object) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid})


def jwks_resolver(url: str, **options: Any) -> JWTResolver:
    options.setdefault("jwks_timeout", PATIENCE)
    return JWTResolver(jwks_url=url, algorithms=["RS256", "ES256"], **options)


def test_jwks_rs256_and_es256_keys_are_fetched_once(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    resolver = jwks_resolver(key_server.url)
    for n in range(5):
        assert resolver(bearer(signed(rsa_key, "rsa-1", tenant_id=f"r{n}"))) == Tenant(
            f"r{n}", "jwt"
        )
        assert resolver(bearer(signed(ec_key, "ec-1", tenant_id=f"e{n}"))) == Tenant(f"e{n}", "jwt")
    assert key_server.hits == 1


def test_jwks_key_rotation_picks_up_a_new_kid(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    resolver = jwks_resolver(key_server.url, jwks_cooldown=30, clock=clock)
    assert resolver(bearer(signed(rsa_key, "rsa-1"))) == Tenant("acme", "jwt")
    key_server.keys = [jwk(rsa_key, "rsa-1"), jwk(rsa_key_2, "rsa-2")]  # the IdP rotates
    new = signed(rsa_key_2, "rsa-2", tenant_id="globex")
    assert rejection(resolver, new).code == "invalid_token"  # unknown until the cooldown ends
    assert key_server.hits == 1
    clock.advance(30)
    assert resolver(bearer(new)) == Tenant("globex", "jwt")
    assert resolver(bearer(signed(rsa_key, "rsa-1"))) == Tenant("acme", "jwt")
    assert key_server.hits == 2


def test_jwks_a_kid_that_is_moved_to_another_key_does_not_verify(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, rsa_key_2: rsa.RSAPrivateKey
) -> None:
    resolver = jwks_resolver(key_server.url)
    exc = rejection(resolver, signed(rsa_key_2, "rsa-1"))
    assert (exc.status, exc.code) == (401, "invalid_token")


def test_jwks_unknown_kid_is_401_and_does_not_fetch_per_request(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    resolver = jwks_resolver(key_server.url)
    for n in range(20):
        exc = rejection(resolver, signed(rsa_key, f"unknown-{n}"))
        assert (exc.status, exc.code) == (401, "invalid_token")
    assert key_server.hits == 1


def test_jwks_server_down_is_503_without_a_fetch_per_request(
    dead_url: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    resolver = jwks_resolver(dead_url)
    for n in range(20):
        exc = rejection(resolver, signed(rsa_key, f"kid-{n}"))
        assert (exc.status, exc.code) == (503, "key_server_unavailable")


def test_jwks_server_erroring_is_503_once_per_cooldown(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    key_server.status = 500
    clock = FakeClock()
    resolver = jwks_resolver(key_server.url, jwks_cooldown=30, clock=clock)
    for _ in range(20):
        exc = rejection(resolver, signed(rsa_key, "rsa-1"))
        assert (exc.status, exc.code) == (503, "key_server_unavailable")
        clock.advance(1)
    assert key_server.hits == 1
    key_server.status = 200  # the key server recovers; after the cooldown, one fetch
    clock.advance(9.5)
    assert rejection(resolver, signed(rsa_key, "rsa-1")).status == 503
    assert key_server.hits == 1
    clock.advance(0.5)
    assert resolver(bearer(signed(rsa_key, "rsa-1"))) == Tenant("acme", "jwt")
    assert key_server.hits == 2


def test_jwks_server_hanging_costs_one_timeout_per_cooldown(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A key server that accepts and never answers: the first request waits out the timeout
    and gets a 503; the next ones get a 503 without asking it again until the cooldown
    ends."""
    key_server.answering.clear()
    clock = FakeClock()
    resolver = jwks_resolver(key_server.url, jwks_timeout=0.2, jwks_cooldown=30, clock=clock)
    for _ in range(21):
        assert rejection(resolver, signed(rsa_key, "rsa-1")).status == 503
    key_server.wait_for_hits(1)
    clock.advance(30)
    assert rejection(resolver, signed(rsa_key, "rsa-1")).status == 503
    key_server.wait_for_hits(2)
    assert key_server.hits == 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>Bad Gateway</html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"keys": []}', id="no-keys"),
        pytest.param(b'{"keys": [{"kty": "nonsense"}]}', id="unusable-key"),
        pytest.param(b'{"keys": "nope"}', id="keys-not-a-list"),
    ],
)
def test_jwks_garbage_from_the_key_server_is_503(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, body: bytes
) -> None:
    key_server.body = body
    resolver = jwks_resolver(key_server.url)
    for _ in range(3):
        exc = rejection(resolver, signed(rsa_key, "rsa-1"))
        assert (exc.status, exc.code) == (503, "key_server_unavailable")
    assert key_server.hits == 1


def test_jwks_keys_already_fetched_survive_a_key_server_outage(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    resolver = jwks_resolver(key_server.url, jwks_lifespan=300, jwks_cooldown=30, clock=clock)
    assert resolver(bearer(signed(rsa_key, "rsa-1"))) == Tenant("acme", "jwt")
    key_server.status = 503
    clock.advance(301)  # the keys are past their lifespan: fetched again, and that fails
    assert resolver(bearer(signed(rsa_key, "rsa-1", tenant_id="globex"))) == Tenant("globex", "jwt")
    assert key_server.hits == 2


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda key: craft({"alg": "none", "kid": "rsa-1"}, claims(), secret=None),
                     id="alg-none"),
        pytest.param(lambda key: craft({"alg": "HS256", "kid": "rsa-1"}, claims(),
                                       secret=public_pem(key)), id="hs256-with-public-key"),
        pytest.param(lambda key: "a.b", id="malformed"),
        pytest.param(lambda key: craft({"alg": "RS256", "kid": ["rsa-1"]}, claims()),
                     id="kid-not-a-string"),
    ],
)  # fmt: skip
def test_jwks_attacks_are_401(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, make: Callable[[Any], str]
) -> None:
    exc = rejection(jwks_resolver(key_server.url), make(rsa_key))
    assert exc.status == 401


def test_jwks_aresolve_fetches_off_the_event_loop(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    key_server.gate = gate = LoopGate()
    resolver = jwks_resolver(key_server.url)

    async def main() -> Tenant | None:
        opener = asyncio.create_task(gate.keep_opening())
        try:
            return await resolver.aresolve(bearer(signed(rsa_key, "rsa-1")))
        finally:
            opener.cancel()

    assert asyncio.run(main()) == Tenant("acme", "jwt")
    assert key_server.hits == 1
    assert gate.late == 0


@pytest.mark.parametrize(
    ("kid", "expected"),
    [pytest.param("rsa-1", 200, id="known-kid"), pytest.param("rotated", 401, id="unknown-kid")],
)
def test_jwks_aresolve_never_fetches_on_the_loop_even_with_no_cooldown(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, kid: str, expected: int
) -> None:
    key_server.gate = gate = LoopGate()
    resolver = jwks_resolver(key_server.url, jwks_cooldown=0, jwks_lifespan=0)

    async def main() -> int:
        opener = asyncio.create_task(gate.keep_opening())
        try:
            await TenantPolicy(resolver).aresolve(bearer(signed(rsa_key, kid)))
        except Rejection as exc:
            return exc.status
        finally:
            opener.cancel()
        return 200

    assert asyncio.run(main()) == expected
    assert key_server.hits >= 1
    assert gate.late == 0


def test_jwks_aresolve_server_down_is_503(dead_url: str, rsa_key: rsa.RSAPrivateKey) -> None:
    resolver = jwks_resolver(dead_url)

    async def main() -> list[int]:
        statuses = []
        for _ in range(5):
            try:
                await resolver.aresolve(bearer(signed(rsa_key, "rsa-1")))
            except Rejection as exc:
                statuses.append(exc.status)
        return statuses

    assert asyncio.run(main()) == [503] * 5


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        pytest.param(lambda key: signed(key, "new-kid", pad="x" * 16_000), "token is too large",
                     id="16kb-token"),
        pytest.param(lambda key: "", "token is empty", id="empty"),
    ],
)  # fmt: skip
def test_jwks_aresolve_checks_the_token_before_any_fetch(
    key_server: KeyServer, rsa_key: rsa.RSAPrivateKey, make: Callable[[Any], str], detail: str
) -> None:
    """The async path refuses what the sync path refuses, without asking the key server."""
    resolver = jwks_resolver(key_server.url)
    token = make(rsa_key)
    with pytest.raises(Rejection) as sync:
        resolver(bearer(token))
    with pytest.raises(Rejection) as info:
        asyncio.run(resolver.aresolve(bearer(token)))
    assert (info.value.status, info.value.detail) == (401, detail) == (401, sync.value.detail)
    assert key_server.hits == 0
