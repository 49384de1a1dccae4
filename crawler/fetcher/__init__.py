"""Fetcher: pooled httpx2 clients; streams a response with caps and maps errors to ours.

This package is the only importer of httpx2/httpcore2 (transport.py: the transport factory
and per-origin pools; pool.py: one httpcore2 pool as an httpx2 transport; http11.py and
http11_pool.py: the HTTP/1.1 transport of plain-HTTP origins; network.py: guarded
connecting; auth.py: profile credentials and cookies). httpx2 is the maintained continuation
of httpx (same API): its connection pool stays fast at hundreds of concurrent requests where
httpx 0.28's slows down sharply (see README).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2

from crawler import errors
from crawler.dns import Resolver
from crawler.fetcher.auth import (
    CookieStore,
    auth_for,
    jar_from,
    jar_json,
    profile_key,
)
from crawler.fetcher.body import payload_digest, read_body
from crawler.fetcher.clients import Clients
from crawler.fetcher.network import OPENED, SENDING
from crawler.fetcher.transport import (
    GuardedPools,
    TransportFactory,
    translate,
)
from crawler.guard import AddressGuard
from crawler.models import SPOOL_BYTES, Response
from crawler.settings import FetchSettings
from crawler.specs import Profiles
from crawler.urls import without_userinfo

_UNSAFE_HEADER = re.compile(rb"[\r\n\x00]")
REDACTED = "[redacted]"
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})


@dataclass(slots=True)
class _Call:
    """One prepared GET: the client (transport) it goes through and what it carries."""

    client: httpx2.AsyncClient
    request: httpx2.Request
    deadline: float
    auth: httpx2.Auth | None = None
    jar: httpx2.Cookies | None = None
    jar_key: str = ""  # the profile's name for its saved cookies
    transport: httpx2.AsyncBaseTransport | None = None  # set: sent past the client's layers


class Fetcher:
    """Fetches one URL at a time per call; share one instance between all workers.

    `transport` makes each client's transport from its spec (like httpx2's
    `AsyncClient(transport=...)`); by default `GuardedPools` over `guard` and `resolver`.
    """

    def __init__(
        self,
        settings: FetchSettings,
        guard: AddressGuard,
        *,
        per_host_connections: int = 8,
        profiles: Profiles | None = None,
        store_credentials: bool = False,
        cookie_store: CookieStore | None = None,
        resolver: Resolver | None = None,
        transport: TransportFactory | None = None,
    ) -> None:
        self._settings = settings
        self._own_resolver: Resolver | None = None  # made here, so closed by aclose()
        if transport is None:
            if resolver is None:
                resolver = self._own_resolver = Resolver()
            transport = GuardedPools(
                settings, guard, resolver=resolver, per_host=per_host_connections
            )
        self._profiles = profiles or Profiles()
        self._store_credentials = store_credentials
        self._cookie_store = cookie_store
        self._jars: dict[str, httpx2.Cookies] = {}
        self._jar_lock = anyio.Lock()
        self._timeout = httpx2.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        )
        self._clients = Clients(settings, transport, self._profiles, self._timeout)
        self._client = self._clients.default
        # A URL no profile matches: the request the default client would build, built
        # here from its headers (Host apart) and sent straight to its transport. The
        # client's layers (URL and header merging, auth and redirect hooks, its cookie
        # jar, which keeps nothing) cost about a tenth of a small fetch.
        template = self._client.build_request("GET", "http://template.invalid/")
        self._plain_headers = [(k, v) for k, v in template.headers.raw if k.lower() != b"host"]
        self._plain_timeout = self._timeout.as_dict()
        self._plain_transport = self._clients.default_transport
        token_client = self._clients.for_token_url
        self._auths = {p.index: auth_for(p.auth, token_client) for p in self._profiles.all}

    async def aclose(self) -> None:
        await self._clients.aclose()
        if self._own_resolver is not None:
            await self._own_resolver.aclose()

    async def _jar(self, key: str) -> httpx2.Cookies:
        jar = self._jars.get(key)
        if jar is None:
            async with self._jar_lock:
                jar = self._jars.get(key)
                if jar is None:
                    saved = (
                        await self._cookie_store.load_cookies(key) if self._cookie_store else None
                    )
                    jar = self._jars[key] = jar_from(saved)
        return jar

    async def _prepare(
        self, url: str, credentials: bool, extra: Sequence[tuple[str, str]] = ()
    ) -> _Call:
        """The client, request, auth and cookie jar for `url` (its profile's, if any), with
        `extra` headers (a conditional request's)."""
        # A URL queued by an older version may hold userinfo: it is never sent (httpx2
        # would turn it into an Authorization: Basic header).
        url = without_userinfo(url)
        profile = self._profiles.match(url)
        if profile is None:
            plain: list[tuple[Any, Any]] = self._plain_headers
            request = httpx2.Request(
                "GET",
                url,
                headers=[*plain, *extra] if extra else plain,
                extensions={"timeout": self._plain_timeout},
            )
            call = _Call(self._client, request, self._settings.deadline)
            call.transport = self._plain_transport
            return call
        client = self._clients.for_profile(profile)
        timeout = httpx2.Timeout(
            connect=profile.timeout("connect_timeout") or self._timeout.connect,
            read=profile.timeout("read_timeout") or self._timeout.read,
            write=profile.timeout("write_timeout") or self._timeout.write,
            pool=profile.timeout("pool_timeout") or self._timeout.pool,
        )
        deadline = profile.timeout("deadline") or self._settings.deadline
        if not credentials:
            request = client.build_request("GET", url, headers=list(extra) or None, timeout=timeout)
            return _Call(client, request, deadline)
        headers = dict(profile.headers)
        if profile.user_agent:
            headers["User-Agent"] = profile.user_agent
        headers.update(extra)
        call = _Call(
            client,
            client.build_request("GET", url, headers=headers, timeout=timeout),
            deadline,
            auth=self._auths.get(profile.index),
        )
        if profile.cookies:
            call.jar_key = profile_key(profile)
            call.jar = await self._jar(call.jar_key)
        return call

    async def fetch(
        self,
        url: str,
        keep: int = 0,
        cap: int | None = None,
        credentials: bool = True,
        on_send: Callable[[], None] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[Response, str]:
        """GET `url`; returns the response (body spooled, raw) and its payload digest.

        The first `keep` bytes of the decoded body are kept in `Response.decoded` (for link
        extraction); the whole body, up to `cap`, goes to a file past SPOOL_BYTES.

        The first profile matching `url` sets the transport, and unless `credentials` is
        false (robots.txt) also its headers, auth and cookies. `on_send` is called when the
        request is first written to a connection (after DNS, connect and TLS). `headers`
        are added to the request (If-None-Match and If-Modified-Since of a recrawl).

        Raises a FetchError; its `fresh_connection` says whether the attempt opened a new
        connection (a failure on a reused one deserves a quick retry).
        """
        opened: list[str] = []
        token = OPENED.set(opened)
        sending = SENDING.set(on_send)
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        deadline = self._settings.deadline
        try:
            call = await self._prepare(url, credentials, headers)
            deadline = call.deadline
            with anyio.fail_after(deadline):
                return await self._stream(call, body, keep, cap)
        except BaseException as exc:
            body.close()
            ours = _ours(exc, deadline, fresh_connection=bool(opened))
            if ours is None:
                raise
            raise ours from (None if isinstance(exc, TimeoutError) else exc)
        finally:
            OPENED.reset(token)
            SENDING.reset(sending)

    @asynccontextmanager
    async def _send(self, call: _Call) -> AsyncIterator[httpx2.Response]:
        jar = call.jar
        if jar is not None:
            jar.set_cookie_header(call.request)
        if call.transport is not None:
            resp = await call.transport.handle_async_request(call.request)
            resp.request = call.request
        else:
            auth = call.auth or httpx2.USE_CLIENT_DEFAULT
            resp = await call.client.send(call.request, auth=auth, stream=True)
        try:
            if jar is not None and call.jar_key and "set-cookie" in resp.headers:
                before = jar_json(jar)
                jar.extract_cookies(resp)
                after = jar_json(jar)
                if after != before and self._cookie_store is not None:
                    await self._cookie_store.save_cookies(call.jar_key, after)
            yield resp
        finally:
            await resp.aclose()

    def _request_headers(self, request: httpx2.Request) -> list[tuple[str, str]]:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if self._store_credentials:
            return headers
        return [(k, REDACTED if k.lower() in CREDENTIAL_HEADERS else v) for k, v in headers]

    async def _stream(
        self, call: _Call, body: Any, keep: int, cap: int | None
    ) -> tuple[Response, str]:
        async with self._send(call) as resp:
            if _UNSAFE_HEADER.search(b"".join(k + b":" + v for k, v in resp.headers.raw)):
                # HTTP/2 headers are not validated by httpcore2; CR/LF/NUL would tear the
                # WARC record apart (lines injected into its header block).
                raise errors.ProtocolError("response header with CR, LF or NUL")
            stream = resp.extensions.get("network_stream")
            peer = stream.get_extra_info("server_addr") if stream is not None else None
            read = await read_body(resp, body, cap or self._settings.max_body_bytes, keep)
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
                wire_bytes=read.wire,
                decoded_bytes=read.decoded_bytes,
                truncated=read.truncated,
                peer=str(peer[0]) if peer else None,
                encoding_error=read.encoding_error,
                decoded=read.decoded,
            )
            return response, payload_digest(read.sha1)


def _ours(exc: BaseException, deadline: float, *, fresh_connection: bool) -> Exception | None:
    """The crawler's error for what a fetch raised (None: let it through as it is)."""
    if isinstance(exc, TimeoutError):  # the whole fetch's deadline (fail_after)
        return errors.DeadlineExceeded(f"not complete within the deadline of {deadline}s")
    if isinstance(exc, httpx2.InvalidURL):  # not an HTTPError: raised building the request
        return errors.InvalidURL(str(exc))
    if isinstance(exc, httpx2.HTTPError):
        error = translate(exc)
        error.fresh_connection = fresh_connection
        return error
    return None
