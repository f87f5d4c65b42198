"""One tenant, one id (the hardening issue, items 4 and 7): every source (a header's bytes,
a JWT claim, a Host name, the internal header between services) reads the same text, in one
normalization form, and refuses invisible and filler characters."""

from __future__ import annotations

import unicodedata
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import tenant_trace
from examples.common import JWT_SECRET, TENANT_OPTIONS
from tenant_trace.propagate.http import INTERNAL_TENANT_HEADER
from tenant_trace_fastapi import TenantTraceMiddleware
from tests.conftest import FAR_EXP
from tests.test_propagation import CLIENTS, server  # noqa: F401 (a fixture)

app = FastAPI()
app.add_middleware(TenantTraceMiddleware, **TENANT_OPTIONS)


@app.get("/whoami")
async def whoami() -> dict[str, Any]:
    return {"tenant": tenant_trace.get_current_tenant()}


def token(tenant: str) -> str:
    return jwt.encode({"tenant_id": tenant, "exp": FAR_EXP}, JWT_SECRET, "HS256")


def ask(**headers: str | bytes) -> Any:
    with TestClient(app, base_url="http://localhost") as client:
        return client.get("/whoami", headers=headers)


FULL_WIDTH = "\uff41\uff43\uff4d\uff45"  # acme in full-width letters
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Tenant-ID": NFC.encode()}, id="header-utf8-nfc"),
        pytest.param({"X-Tenant-ID": NFD.encode()}, id="header-utf8-nfd"),
        pytest.param({"X-Tenant-ID": NFC.encode("latin-1")}, id="header-latin1"),
        pytest.param({"Authorization": f"Bearer {token(NFC)}"}, id="jwt-nfc"),
        pytest.param({"Authorization": f"Bearer {token(NFD)}"}, id="jwt-nfd"),
        pytest.param({"Host": "xn--caf-dma.example.com"}, id="host-punycode"),
        pytest.param({"Host": NFC.encode() + b".example.com"}, id="host-utf8"),
        pytest.param(
            {
                "X-Tenant-ID": NFD.encode(),
                "Authorization": f"Bearer {token(NFC)}",
                "Host": "xn--caf-dma.example.com",
            },
            id="all-three-agree",
        ),
    ],
)
def test_every_source_reads_cafe_as_one_id(headers: dict[str, str | bytes]) -> None:
    response = ask(**headers)
    assert (response.status_code, response.json()) == (200, {"tenant": NFC})


def test_full_width_letters_are_the_ascii_id_from_every_source() -> None:
    assert ask(**{"X-Tenant-ID": FULL_WIDTH.encode()}).json() == {"tenant": "acme"}
    assert ask(Authorization=f"Bearer {token(FULL_WIDTH)}").json() == {"tenant": "acme"}
    assert ask(Host=f"{FULL_WIDTH}.example.com".encode()).json() == {"tenant": "acme"}
    both = {"X-Tenant-ID": "acme", "Authorization": f"Bearer {token(FULL_WIDTH)}"}
    assert ask(**both).json() == {"tenant": "acme"}


INVISIBLE = ["\u3164", "\u115f", "\uffa0", "\u2800", "\u034f", "\u00ad", "\u200b", "\ufe0f"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
@pytest.mark.parametrize("source", ["header", "jwt"])
def test_ids_with_invisible_or_filler_characters_are_refused(char: str, source: str) -> None:
    forged = f"ac{char}me"
    if source == "header":
        response = ask(**{"X-Tenant-ID": forged.encode()})
        assert (response.status_code, response.json()["error"]) == (400, "invalid_tenant")
    else:  # a token whose claim is no valid id is an invalid token
        response = ask(Authorization=f"Bearer {token(forged)}")
        assert (response.status_code, response.json()["error"]) == (401, "invalid_token")
    assert "invisible characters" in response.json()["detail"]
    with pytest.raises(tenant_trace.InvalidTenantError):
        tenant_trace.validate_tenant_id(forged)


@pytest.mark.parametrize("tenant", ["café", "東京", FULL_WIDTH, "a,b", "100%", "a b"])
@pytest.mark.parametrize("call", CLIENTS)
def test_the_internal_header_carries_any_valid_id(
    call: Any,
    tenant: str,
    server: str,  # noqa: F811
) -> None:
    expected = tenant_trace.validate_tenant_id(tenant)
    with tenant_trace.tenant_context(tenant):
        seen = call(f"{server}/internal", {})
    assert (seen["tenant"], seen["source"]) == (expected, "internal")


def test_the_internal_header_is_percent_encoded_ascii() -> None:
    with tenant_trace.tenant_context("東京,x"):
        headers = tenant_trace.outbound_headers(tenant_header=INTERNAL_TENANT_HEADER)
    assert headers[INTERNAL_TENANT_HEADER] == "%E6%9D%B1%E4%BA%AC%2Cx"
