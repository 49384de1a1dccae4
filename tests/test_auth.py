"""Auth flows of fetch profiles (crawler/fetcher/auth.py) over a mock transport: bearer,
basic, digest and OAuth2 client credentials, as the server sees them.

tests/test_profiles.py runs the same flows end to end against loopback servers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from crawler import errors
from crawler.fetcher import REDACTED, Fetcher
from crawler.fetcher.auth import ClientCredentials
from crawler.profiles import load_profiles
from crawler.specs import AuthSpec, Profiles, TransportSpec
from tests import mock_transport as mock
from tests.mock_transport import MockWeb

API = "http://api.test"
TOKEN_URL = "http://auth.test/token"
SECRET = "s3cret:/+ %"
CLIENT = "crawler id"


def _profiles(auth: dict[str, str], hosts: tuple[str, ...] = ("api.test",)) -> Profiles:
    return load_profiles([{"hosts": list(hosts), "auth": auth}])


def _oauth2(scope: str = "read") -> dict[str, str]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": TOKEN_URL,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "scope": scope,
    }


async def _status(fetcher: Fetcher, url: str, credentials: bool = True) -> int:
    response, _ = await fetcher.fetch(url, credentials=credentials)
    response.close()
    return response.status


@pytest.mark.anyio
@pytest.mark.parametrize("store_credentials", [False, True])
async def test_bearer_goes_to_its_profile_hosts_only(store_credentials: bool) -> None:
    web = MockWeb()
    fetcher = web.fetcher(
        profiles=_profiles({"type": "bearer", "token": SECRET}),
        store_credentials=store_credentials,
    )
    try:
        response, _ = await fetcher.fetch(f"{API}/a")
        response.close()
        await _status(fetcher, "http://other.test/b")
        await _status(fetcher, f"{API}/robots.txt", credentials=False)
    finally:
        await fetcher.aclose()
    sent = [r.headers.get("authorization") for r in web.requests]
    assert sent == [f"Bearer {SECRET}", None, None]
    recorded = dict(response.request_headers)["Authorization"]
    assert recorded == (f"Bearer {SECRET}" if store_credentials else REDACTED)


@pytest.mark.anyio
async def test_basic_credentials_are_sent_with_the_first_request() -> None:
    web = MockWeb()
    web.route(f"{API}/a", mock.ok())
    fetcher = web.fetcher(
        profiles=_profiles({"type": "basic", "username": "alice", "password": SECRET})
    )
    try:
        assert await _status(fetcher, f"{API}/a") == 200
    finally:
        await fetcher.aclose()
    [request] = web.requests
    expected = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _digest_server(username: str, password: str) -> mock.Handler:
    """RFC 7616 with qop=auth and MD5: 401 with a challenge unless the answer is right."""
    realm, nonce = "api", "n0nce"

    def handle(request: httpx2.Request) -> httpx2.Response:
        given = request.headers.get("authorization", "")
        if given.startswith("Digest "):
            fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(given[7:]))
            ha1 = _md5(f"{username}:{realm}:{password}")
            ha2 = _md5(f"{request.method}:{fields['uri']}")
            parts = (ha1, nonce, fields["nc"], fields["cnonce"], fields["qop"], ha2)
            if fields["username"] == username and fields["response"] == _md5(":".join(parts)):
                return httpx2.Response(200, content=b"in")
        challenge = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
        return httpx2.Response(401, headers={"WWW-Authenticate": challenge})

    return handle


@pytest.mark.anyio
@pytest.mark.parametrize(("password", "status"), [(SECRET, 200), ("wrong", 401)])
async def test_digest_answers_the_challenge_once(password: str, status: int) -> None:
    web = MockWeb()
    web.route(f"{API}/secret", _digest_server("alice", SECRET))
    fetcher = web.fetcher(
        profiles=_profiles({"type": "digest", "username": "alice", "password": password})
    )
    try:
        assert await _status(fetcher, f"{API}/secret") == status
    finally:
        await fetcher.aclose()
    first, second = web.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"].startswith('Digest username="alice"')


class TokenServer:
    """An OAuth2 token endpoint issuing tok-1, tok-2, ... and an API that accepts `valid`."""

    def __init__(self, web: MockWeb, answer: dict[str, Any] | None = None) -> None:
        self.issued = 0
        self.valid: set[str] = set()
        self.answer = answer or {"expires_in": 3600}
        web.route(TOKEN_URL, self.token)
        web.route(f"{API}/data", self.api)

    async def token(self, request: httpx2.Request) -> httpx2.Response:
        await anyio.sleep(0.01)  # concurrent first requests all wait for this one
        self.issued += 1
        issued = f"tok-{self.issued}"
        self.valid.add(issued)
        return httpx2.Response(200, json={"access_token": issued, **self.answer})

    def api(self, request: httpx2.Request) -> httpx2.Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        return httpx2.Response(200 if given in self.valid else 401, content=b"x" * 100)


@pytest.fixture
async def oauth2() -> AsyncIterator[tuple[MockWeb, TokenServer, Fetcher]]:
    web = MockWeb()
    server = TokenServer(web)
    fetcher = web.fetcher(profiles=_profiles(_oauth2()))
    try:
        yield web, server, fetcher
    finally:
        await fetcher.aclose()


@pytest.mark.anyio
async def test_oauth2_token_is_fetched_once_for_concurrent_requests(
    oauth2: tuple[MockWeb, TokenServer, Fetcher],
) -> None:
    web, _, fetcher = oauth2
    statuses: list[int] = []

    async def get() -> None:
        statuses.append(await _status(fetcher, f"{API}/data"))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(get)
    assert statuses == [200] * 4
    [token_request] = web.hits(TOKEN_URL)
    assert token_request.method == "POST"
    assert urllib.parse.parse_qs(token_request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["read"],
    }
    # RFC 6749 2.3.1: id and secret are form-encoded, then sent as Basic credentials.
    userinfo = base64.b64decode(token_request.headers["authorization"].removeprefix("Basic "))
    assert userinfo.decode() == "crawler%20id:s3cret%3A%2F%2B%20%25"
    assert urllib.parse.unquote(userinfo.decode().split(":")[1]) == SECRET
    assert token_request.headers["accept"] == "application/json"
    api_requests = web.hits(f"{API}/data")
    assert {r.headers["authorization"] for r in api_requests} == {"Bearer tok-1"}


@pytest.mark.anyio
async def test_oauth2_renews_once_after_a_401_and_retries_once(
    oauth2: tuple[MockWeb, TokenServer, Fetcher],
) -> None:
    web, server, fetcher = oauth2
    assert await _status(fetcher, f"{API}/data") == 200
    server.valid.clear()  # tok-1 revoked: a 401, a new token, the same request again
    assert await _status(fetcher, f"{API}/data") == 200
    server.valid.clear()
    server.answer = {"access_token": "tok-refused"}  # the renewal is refused too: one 401
    assert await _status(fetcher, f"{API}/data") == 401
    sent = [r.headers["authorization"] for r in web.hits(f"{API}/data")]
    assert sent == [f"Bearer {t}" for t in ("tok-1", "tok-1", "tok-2", "tok-2", "tok-refused")]
    assert len(web.hits(TOKEN_URL)) == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "says"),
    [
        (mock.status(500), "token endpoint answered 500"),
        (mock.fail(httpx2.ConnectError), "token endpoint unreachable: mock ConnectError"),
        (mock.ok(b"not json", content_type="application/json"), "no usable access_token"),
        (mock.ok(json.dumps({"token": "x"}).encode()), "no usable access_token"),
        (mock.ok(json.dumps({"access_token": ""}).encode()), "an empty access_token"),
    ],
)
async def test_oauth2_token_endpoint_failures_fail_with_reason_auth(
    handler: mock.Handler, says: str
) -> None:
    web = MockWeb()
    web.route(TOKEN_URL, handler)
    fetcher = web.fetcher(profiles=_profiles(_oauth2()))
    try:
        with pytest.raises(errors.AuthFailed, match=says) as failed:
            await fetcher.fetch(f"{API}/data")
    finally:
        await fetcher.aclose()
    assert failed.value.reason == "auth"
    assert web.hits(f"{API}/data") == []  # nothing is sent without its credentials


@pytest.mark.anyio
@pytest.mark.parametrize(("expires_in", "renewed_at"), [(100, 90.0), (None, 3570.0), (600, 570.0)])
async def test_oauth2_token_is_renewed_before_it_expires(
    expires_in: int | None, renewed_at: float
) -> None:
    """Renewed when less than min(30 s, 10% of its lifetime) is left (3600 s if unsaid)."""
    web = MockWeb()
    server = TokenServer(web, {} if expires_in is None else {"expires_in": expires_in})
    now = [5000.0]
    spec = AuthSpec(
        type="oauth2_client_credentials", token_url=TOKEN_URL, client_id=CLIENT, secret=SECRET
    )
    async with (
        httpx2.AsyncClient(transport=web.transport(TransportSpec())) as tokens,
        httpx2.AsyncClient(transport=web.transport(TransportSpec())) as client,
    ):
        auth = ClientCredentials(spec, tokens, clock=lambda: now[0])
        for at in (0.0, renewed_at - 0.5, renewed_at, renewed_at + 1):
            now[0] = 5000.0 + at
            assert (await client.get(f"{API}/data", auth=auth)).status_code == 200
    sent = [r.headers["authorization"] for r in web.hits(f"{API}/data")]
    assert sent == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]
    assert server.issued == auth.fetched == 2
