"""Credentials of fetch profiles as httpx2 sees them: auth flows (bearer, OAuth2 client
credentials; basic and digest are httpx2's own) and cookie jars kept across restarts."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpx2

from crawler import errors
from crawler.fetcher.transport import translate
from crawler.specs import AuthSpec, Profile

TOKEN_MARGIN = 30.0  # an OAuth2 token is renewed when less than min(this, 10%) of it is left
DISCARD_BYTES = 64 * 1024  # of a refused body read to keep its connection (else closed)


class Bearer(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx2.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request


async def discard(response: httpx2.Response) -> None:
    """Read and drop the body of a response an auth flow answers, releasing its connection.

    httpx2 reads that body itself, but only after the flow has sent its next request: a
    flow that does I/O in between (a token renewal) would do it while the response holds
    its connection. At most DISCARD_BYTES are read; a longer body closes the connection.
    """
    stream = response.stream
    assert isinstance(stream, httpx2.AsyncByteStream)
    read = 0
    try:
        async for chunk in stream:
            read += len(chunk)
            if read > DISCARD_BYTES:
                break
    finally:
        await stream.aclose()
    response.stream = httpx2.ByteStream(b"")  # what httpx2 then reads: nothing


class ClientCredentials(httpx2.Auth):
    """OAuth2 client credentials (RFC 6749 4.4): one token shared by all requests, fetched
    once for many concurrent requests, renewed before it expires and once after a 401.

    `client` must not share a connection pool with the requests it authenticates: when the
    token endpoint is on the protected origin, a token request would wait for a connection
    held by a request that waits for the token (the Fetcher gives it a client of its own).
    """

    def __init__(
        self,
        spec: AuthSpec,
        client: httpx2.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._client = client  # sends the token requests
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = anyio.Lock()
        self.fetched = 0

    def _token_request(self) -> httpx2.Request:
        form = {"grant_type": "client_credentials"}
        if self._spec.scope:
            form["scope"] = self._spec.scope
        basic = base64.b64encode(
            f"{quote(self._spec.client_id, safe='')}:{quote(self._spec.secret, safe='')}".encode()
        ).decode("ascii")
        return self._client.build_request(
            "POST",
            self._spec.token_url,
            data=form,
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )

    async def _renew(self, stale: str | None) -> str:
        """The current token; a new one when there is none, it expires, or it is `stale`."""
        async with self._lock:  # one token request at a time; the others wait and reuse it
            if self._token is None or self._token == stale or self._clock() >= self._renew_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        try:
            response = await self._client.send(self._token_request())
        except httpx2.HTTPError as exc:
            raise errors.AuthFailed(f"token endpoint unreachable: {translate(exc)}") from None
        if response.status_code != 200:
            raise errors.AuthFailed(f"token endpoint answered {response.status_code}")
        try:
            data = json.loads(response.content)
            token = data["access_token"]
            lifetime = float(data.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise errors.AuthFailed("token endpoint answered no usable access_token") from None
        if not isinstance(token, str) or not token:
            raise errors.AuthFailed("token endpoint answered an empty access_token")
        self._token = token
        self._renew_at = self._clock() + lifetime - min(TOKEN_MARGIN, lifetime / 10)
        self.fetched += 1

    async def async_auth_flow(self, request: httpx2.Request) -> Any:
        token = await self._renew(None)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # expired early or revoked: renew once, retry once
            await discard(response)  # its connection is free before the renewal needs one
            request.headers["Authorization"] = f"Bearer {await self._renew(token)}"
            yield request


def auth_for(
    spec: AuthSpec | None, token_client: Callable[[str], httpx2.AsyncClient]
) -> httpx2.Auth | None:
    """The auth of a profile; `token_client(url)` gives the client for a token endpoint."""
    if spec is None:
        return None
    if spec.type == "basic":
        return httpx2.BasicAuth(spec.username, spec.secret)
    if spec.type == "digest":
        return httpx2.DigestAuth(spec.username, spec.secret)
    if spec.type == "bearer":
        return Bearer(spec.secret)
    return ClientCredentials(spec, token_client(spec.token_url))


class CookieStore(Protocol):
    """Where profile cookie jars are kept across restarts (the frontier database)."""

    async def load_cookies(self, profile: str) -> str | None: ...

    async def save_cookies(self, profile: str, jar: str) -> None: ...


def jar_json(jar: httpx2.Cookies) -> str:
    return json.dumps(
        [
            {
                "name": c.name,
                "value": c.value,
                "domain": c.domain,
                "path": c.path,
                "secure": c.secure,
                "expires": c.expires,
            }
            for c in jar.jar
        ]
    )


def jar_from(text: str | None) -> httpx2.Cookies:
    jar = httpx2.Cookies()
    for item in json.loads(text) if text else []:
        cookie = http.cookiejar.Cookie(
            0, item["name"], item["value"], None, False, item["domain"],
            bool(item["domain"]), item["domain"].startswith("."), item["path"], True,
            item["secure"], item["expires"], False, None, None, {},
        )  # fmt: skip
        jar.jar.set_cookie(cookie)
    return jar


def profile_key(profile: Profile) -> str:
    """A profile's stable name for its saved cookies (its name, else what it matches)."""
    if profile.name:
        return profile.name
    if profile.url_regex is not None:
        return profile.url_regex.pattern
    return ",".join(profile.hosts)
