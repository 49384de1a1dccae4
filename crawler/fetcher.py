"""Fetcher: one shared httpx2 client; streams a response with caps and maps errors to ours.

This is the only module that imports httpx2/httpcore2. httpx2 is the maintained
continuation of httpx (same API): its connection pool stays fast at hundreds of concurrent
requests where httpx 0.28's slows down sharply (see README).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.cookiejar
import ipaddress
import json
import re
import socket
import ssl
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpcore2
import httpx2

from crawler import errors
from crawler.decoding import BodyDecoder
from crawler.guard import AddressGuard
from crawler.models import Response
from crawler.profiles import AuthSpec, Profile, Profiles, Transport
from crawler.settings import FetchSettings

SPOOL_BYTES = 256 * 1024
_UNSAFE_HEADER = re.compile(rb"[\r\n\x00]")
KEEPALIVE_SECONDS = 30.0
ACCEPT_ENCODING = "gzip, deflate"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves host names itself and connects only to addresses the guard permits."""

    def __init__(self, guard: AddressGuard | None, opened: ContextVar[list[str] | None]) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._guard = guard
        self._opened = opened

    async def _addresses(self, host: str, port: int) -> list[str]:
        if _is_ip(host):
            if self._guard is not None and not self._guard.permits(host):
                raise errors.BlockedAddress(f"{host} is a blocked address")
            return [host]
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise errors.DnsError(f"cannot resolve {host}: {exc}") from None
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if self._guard is None:
            return found
        allowed = [a for a in found if self._guard.permits(a)]
        if not allowed:
            raise errors.BlockedAddress(f"{host} resolves to blocked address(es) {found}")
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        opened = self._opened.get()
        if opened is not None:
            opened.append(host)
        last: Exception | None = None
        for address in await self._addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:  # pragma: no cover - never configured
        raise errors.BlockedAddress("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _Transport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with our network backend plugged into httpcore2's pool."""

    def __init__(self, common: dict[str, Any], proxy: str, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        if proxy.startswith("socks5"):
            url = httpx2.URL(proxy)
            self._pool = httpcore2.AsyncSOCKSProxy(
                proxy_url=httpcore2.URL(
                    scheme=b"socks5", host=url.raw_host, port=url.port, target=url.raw_path
                ),
                proxy_auth=(url.username, url.password) if url.username else None,
                ssl_context=ssl_context,
                **common,
            )
        elif proxy:
            url = httpx2.URL(proxy)
            self._pool = httpcore2.AsyncHTTPProxy(
                proxy_url=httpcore2.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                proxy_auth=(url.username, url.password) if url.username else None,
                ssl_context=ssl_context,
                **common,
            )
        else:
            self._pool = httpcore2.AsyncConnectionPool(ssl_context=ssl_context, **common)


class _Tracked(httpx2.AsyncByteStream):
    """A response body stream that reports when it is closed."""

    def __init__(self, stream: httpx2.AsyncByteStream, on_close: Callable[[], None]) -> None:
        self._stream = stream
        self._on_close: Callable[[], None] | None = on_close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # no extra generator layer per chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None


Origin = tuple[bytes, bytes, int | None]


class _PerOriginTransport(httpx2.AsyncBaseTransport):
    """Routes each request to a small connection pool of its own origin.

    httpcore2's pool scans every connection it holds (probing idle sockets) whenever a
    request starts or ends, and a pool shared by many hosts evicts one host's keep-alive
    connections to open another's. One pool per origin, sized by the per-host
    concurrency, keeps both costs at the scale of one host. Idle pools beyond
    `max_idle` are closed, least recently used first.
    """

    def __init__(self, make: Callable[[], _Transport], max_idle: int) -> None:
        self._make = make
        self._max_idle = max_idle
        self._pools: dict[Origin, _Transport] = {}
        self._active: dict[Origin, int] = {}
        self._idle: dict[Origin, None] = {}  # insertion order = least recently used first

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        pool = self._pools.get(origin)
        if pool is None:
            await self._evict()
            pool = self._pools.get(origin)  # another request may have made it meanwhile
            if pool is None:
                pool = self._pools[origin] = self._make()
        self._idle.pop(origin, None)
        self._active[origin] = self._active.get(origin, 0) + 1
        try:
            response = await pool.handle_async_request(request)
        except BaseException:
            self._release(origin)
            raise
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _Tracked(response.stream, lambda: self._release(origin))
        return response

    def _release(self, origin: Origin) -> None:
        left = self._active[origin] - 1
        if left:
            self._active[origin] = left
        else:
            del self._active[origin]
            self._idle[origin] = None

    async def _evict(self) -> None:
        while len(self._idle) >= self._max_idle:
            origin = next(iter(self._idle))
            del self._idle[origin]
            await self._pools.pop(origin).aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def _proxy_from(settings: FetchSettings) -> str:
    if settings.proxy:
        return settings.proxy
    if settings.trust_env:
        found = urllib.request.getproxies()
        return found.get("https") or found.get("http") or ""
    return ""


def _translate(exc: Exception) -> errors.FetchError:
    """Map an httpx2 exception onto the crawler's own tree (the one boundary for them)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx2.ConnectTimeout):
        return errors.FetchTimeout(f"connect timeout: {text}")
    if isinstance(exc, httpx2.TimeoutException):
        return errors.FetchTimeout(text)
    if isinstance(exc, httpx2.ConnectError):
        if isinstance(exc.__context__, ssl.SSLError) or "SSL" in text or "certificate" in text:
            return errors.TLSFailed(text)
        return errors.ConnectFailed(text)
    if isinstance(exc, httpx2.ReadError | httpx2.WriteError | httpx2.CloseError):
        return errors.ConnectionLost(text)
    if isinstance(exc, httpx2.ProtocolError):
        return errors.ProtocolError(text)
    if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
        return errors.InvalidURL(text)
    return errors.ProtocolError(f"{type(exc).__name__}: {text}")


def payload_digest(sha1: Any) -> str:
    return "sha1:" + base64.b32encode(sha1.digest()).decode("ascii")


REDACTED = "[redacted]"
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})
TOKEN_MARGIN = 30.0  # an OAuth2 token is renewed when less than min(this, 10%) of it is left


class _Bearer(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx2.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request


class _ClientCredentials(httpx2.Auth):
    """OAuth2 client credentials (RFC 6749 4.4): one token shared by all requests, fetched
    once for many concurrent requests, renewed before it expires and once after a 401."""

    def __init__(self, spec: AuthSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self._spec = spec
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = anyio.Lock()
        self.client: httpx2.AsyncClient | None = None  # sends the token requests
        self.fetched = 0

    def _token_request(self) -> httpx2.Request:
        form = {"grant_type": "client_credentials"}
        if self._spec.scope:
            form["scope"] = self._spec.scope
        basic = base64.b64encode(
            f"{quote(self._spec.client_id, safe='')}:{quote(self._spec.secret, safe='')}".encode()
        ).decode("ascii")
        assert self.client is not None
        return self.client.build_request(
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
        assert self.client is not None
        try:
            response = await self.client.send(self._token_request())
        except httpx2.HTTPError as exc:
            raise errors.AuthFailed(f"token endpoint unreachable: {_translate(exc)}") from None
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
            request.headers["Authorization"] = f"Bearer {await self._renew(token)}"
            yield request


def _auth_for(spec: AuthSpec | None) -> httpx2.Auth | None:
    if spec is None:
        return None
    if spec.type == "basic":
        return httpx2.BasicAuth(spec.username, spec.secret)
    if spec.type == "digest":
        return httpx2.DigestAuth(spec.username, spec.secret)
    if spec.type == "bearer":
        return _Bearer(spec.secret)
    return _ClientCredentials(spec)


class CookieStore(Protocol):
    """Where profile cookie jars are kept across restarts (the frontier database)."""

    async def load_cookies(self, profile: str) -> str | None: ...

    async def save_cookies(self, profile: str, jar: str) -> None: ...


def _jar_json(jar: httpx2.Cookies) -> str:
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


def _jar_from(text: str | None) -> httpx2.Cookies:
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


class Fetcher:
    """Fetches one URL at a time per call; share one instance between all workers.

    One pooled client serves every URL whose transport settings (proxy, TLS material) are
    the top-level ones; each profile that needs another transport gets a client of its own,
    created on first use and reused. Headers, credentials, cookies and timeouts are per
    request, so they never need a client of their own.
    """

    def __init__(
        self,
        settings: FetchSettings,
        guard: AddressGuard,
        per_host_connections: int = 8,
        profiles: Profiles | None = None,
        store_credentials: bool = False,
        cookie_store: CookieStore | None = None,
    ) -> None:
        self._settings = settings
        self._guard = guard
        self._per_host = per_host_connections
        self._profiles = profiles or Profiles()
        self._store_credentials = store_credentials
        self._cookie_store = cookie_store
        self._jars: dict[str, httpx2.Cookies] = {}
        self._jar_lock = anyio.Lock()
        self._auths = {p.index: _auth_for(p.auth) for p in self._profiles.all}
        self._opened: ContextVar[list[str] | None] = ContextVar("opened", default=None)
        self._default = Transport(proxy=_proxy_from(settings), ca_bundle=settings.ca_bundle)
        self._clients: dict[Transport, httpx2.AsyncClient] = {}
        self._timeout = httpx2.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        )
        self._client = self._client_for_transport(self._default)
        for auth in self._auths.values():
            if isinstance(auth, _ClientCredentials):
                token_url = auth._spec.token_url  # its own host's transport, no credentials
                token_profile = self._profiles.match(token_url)
                auth.client = self._client_for_transport(self._transport_of(token_profile))

    def _transport_of(self, profile: Profile | None) -> Transport:
        if profile is None:
            return self._default
        own = profile.transport
        return dataclasses.replace(
            own,
            proxy=own.proxy or self._default.proxy,
            ca_bundle=own.ca_bundle or self._default.ca_bundle,
        )

    def _client_for_transport(self, spec: Transport) -> httpx2.AsyncClient:
        client = self._clients.get(spec)
        if client is not None:
            return client
        settings = self._settings
        backend = _GuardedBackend(None if spec.proxy else self._guard, self._opened)
        if spec.verify:
            ssl_context = ssl.create_default_context(cafile=spec.ca_bundle or None)
        else:
            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        if spec.client_cert:
            ssl_context.load_cert_chain(
                spec.client_cert, spec.client_key or None, password=spec.key_password or None
            )
        pool_settings: dict[str, Any] = {
            "max_connections": self._per_host,
            "max_keepalive_connections": self._per_host,
            "keepalive_expiry": KEEPALIVE_SECONDS,
            "http1": True,
            "http2": settings.http2,
            "network_backend": backend,
        }
        proxy = spec.proxy
        transport = _PerOriginTransport(
            lambda: _Transport(pool_settings, proxy, ssl_context), max_idle=settings.concurrency
        )
        client = httpx2.AsyncClient(
            transport=transport,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            # A bulk fetcher keeps no cookies: a shared jar would grow with every site
            # that sets one (memory must not depend on the crawl's size) and leak them
            # between unrelated URLs of a host.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self._clients[spec] = client
        return client

    @property
    def clients(self) -> int:
        """HTTP clients made so far (one per distinct transport)."""
        return len(self._clients)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def _jar(self, profile: Profile) -> httpx2.Cookies:
        key = profile_key(profile)
        jar = self._jars.get(key)
        if jar is None:
            async with self._jar_lock:
                jar = self._jars.get(key)
                if jar is None:
                    saved = (
                        await self._cookie_store.load_cookies(key) if self._cookie_store else None
                    )
                    jar = self._jars[key] = _jar_from(saved)
        return jar

    def _request(
        self, url: str, profile: Profile | None, credentials: bool
    ) -> tuple[httpx2.AsyncClient, httpx2.Request, httpx2.Auth | None, float]:
        client = self._client_for_transport(self._transport_of(profile))
        deadline = self._settings.deadline
        if profile is None:
            return client, client.build_request("GET", url, timeout=self._timeout), None, deadline
        deadline = profile.timeout("deadline") or deadline
        timeout = httpx2.Timeout(
            connect=profile.timeout("connect_timeout") or self._timeout.connect,
            read=profile.timeout("read_timeout") or self._timeout.read,
            write=profile.timeout("write_timeout") or self._timeout.write,
            pool=profile.timeout("pool_timeout") or self._timeout.pool,
        )
        headers: dict[str, str] = {}
        auth = None
        if credentials:
            headers.update(profile.headers)
            if profile.user_agent:
                headers["User-Agent"] = profile.user_agent
            auth = self._auths.get(profile.index)
        return (
            client,
            client.build_request("GET", url, headers=headers, timeout=timeout),
            auth,
            deadline,
        )

    async def fetch(
        self,
        url: str,
        keep_decoded: bool = False,
        cap: int | None = None,
        credentials: bool = True,
    ) -> tuple[Response, str]:
        """GET `url`; returns the response (body spooled, raw) and its payload digest.

        The first profile matching `url` sets the transport, and unless `credentials` is
        false (robots.txt) also its headers, auth and cookies.

        Raises a FetchError; its `fresh_connection` attribute says whether the attempt
        opened a new connection (a failure on a reused one deserves a quick retry).
        """
        opened: list[str] = []
        token = self._opened.set(opened)
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        deadline = self._settings.deadline
        try:
            profile = self._profiles.match(url)
            client, request, auth, deadline = self._request(url, profile, credentials)
            jar = await self._jar(profile) if profile and profile.cookies and credentials else None
            with anyio.fail_after(deadline):
                return await self._stream(
                    client, request, auth, jar, profile, body, keep_decoded, cap
                )
        except TimeoutError:
            body.close()
            raise errors.DeadlineExceeded(
                f"not complete within the deadline of {deadline}s"
            ) from None
        except httpx2.InvalidURL as exc:  # not an HTTPError: raised while building the request
            body.close()
            raise errors.InvalidURL(str(exc)) from exc
        except httpx2.HTTPError as exc:
            body.close()
            error = _translate(exc)
            error.fresh_connection = bool(opened)  # type: ignore[attr-defined]
            raise error from exc
        except BaseException:
            body.close()
            raise
        finally:
            self._opened.reset(token)

    @asynccontextmanager
    async def _send(
        self,
        client: httpx2.AsyncClient,
        request: httpx2.Request,
        auth: httpx2.Auth | None,
        jar: httpx2.Cookies | None,
        profile: Profile | None,
    ) -> AsyncIterator[httpx2.Response]:
        if jar is not None:
            jar.set_cookie_header(request)
        resp = await client.send(request, auth=auth or httpx2.USE_CLIENT_DEFAULT, stream=True)
        try:
            if jar is not None and profile is not None and "set-cookie" in resp.headers:
                before = _jar_json(jar)
                jar.extract_cookies(resp)
                after = _jar_json(jar)
                if after != before and self._cookie_store is not None:
                    await self._cookie_store.save_cookies(profile_key(profile), after)
            yield resp
        finally:
            await resp.aclose()

    def _request_headers(self, request: httpx2.Request) -> list[tuple[str, str]]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if self._store_credentials:
            return headers
        return [(k, REDACTED if k.lower() in CREDENTIAL_HEADERS else v) for k, v in headers]

    async def _stream(
        self,
        client: httpx2.AsyncClient,
        request: httpx2.Request,
        auth: httpx2.Auth | None,
        jar: httpx2.Cookies | None,
        profile: Profile | None,
        body: Any,
        keep_decoded: bool,
        cap: int | None,
    ) -> tuple[Response, str]:
        cap = cap or self._settings.max_body_bytes
        async with self._send(client, request, auth, jar, profile) as resp:
            if _UNSAFE_HEADER.search(b"".join(k + b":" + v for k, v in resp.headers.raw)):
                # HTTP/2 headers are not validated by httpcore2; CR/LF/NUL would tear the
                # WARC record apart (lines injected into its header block).
                raise errors.ProtocolError("response header with CR, LF or NUL")
            stream = resp.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            decoder = BodyDecoder(resp.headers.get("content-encoding"), cap, keep_decoded)
            sha1 = hashlib.sha1()
            wire = 0
            truncated = False
            encoding_error = None
            try:
                async for chunk in resp.aiter_raw():
                    if wire + len(chunk) > cap:
                        chunk = chunk[: cap - wire]
                        truncated = True
                    body.write(chunk)
                    sha1.update(chunk)
                    wire += len(chunk)
                    if not decoder.feed(chunk):
                        truncated = True
                    if truncated:
                        break
                if not truncated:
                    decoder.finish()
            except errors.BadContentEncoding as exc:
                encoding_error = str(exc)
            body.seek(0)
            decoded: bytes | None = None
            if keep_decoded and encoding_error is None and decoder.verifiable:
                if decoder.kept is not None and decoder.compressed:
                    decoded = bytes(decoder.kept)
                else:
                    decoded = body.read()
                    body.seek(0)
            request = resp.request
            response = Response(
                status=resp.status_code,
                reason_phrase=resp.reason_phrase,
                http_version=resp.http_version,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers.raw],
                request_headers=self._request_headers(request),
                method=request.method,
                target=request.url.raw_path.decode("ascii", "replace"),
                body=body,
                wire_bytes=wire,
                decoded_bytes=decoder.decoded,
                truncated=truncated,
                peer=str(peer[0]) if peer else None,
                encoding_error=encoding_error,
                decoded=decoded,
            )
            return response, payload_digest(sha1)
