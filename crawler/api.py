"""The HTTP API of `crawler serve`: a small ASGI app, served by hypercorn in the crawl's loop.

    GET  /          the operator's console (one HTML page, shipped in the package)
    GET  /events    Server-Sent Events: the crawl's progress once a second
    GET  /healthz   liveness: the process answers
    GET  /readyz    database open, writer healthy, disk space above service.min_free_bytes
    GET  /status    `crawler status --json` plus rates, pause state and busiest hosts' pace
    GET  /metrics   Prometheus text format
    POST /seeds     newline-separated URLs, or a JSON list of them; `?recrawl=true`
                    makes those fetched before due again now
    GET  /hosts     the host table: ?sort=queued|inflight|errors|done|total&q=&limit=&offset=
    GET  /hosts/H   one host: its counts, pace, controls, robots.txt and last fetch events
    PATCH /hosts/H  {"paused", "blocked_until", "delay", "per_host_concurrency"} (null: undo)
    GET  /excludes  the live exclude patterns; POST / DELETE {"pattern": regex} add / remove
    GET  /openapi.json  the OpenAPI 3.1 description of all this
    POST /pause     stop handing out URLs (in-flight ones finish)
    POST /resume

POST and PATCH need `Authorization: Bearer <service.token>` when a token is set; without a
token they are refused unless the listener is on a loopback address.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs

import anyio
import structlog
from hypercorn.asyncio import serve
from hypercorn.config import Config

from crawler import __version__, openapi
from crawler.addresses import split_listen
from crawler.console import BadChange, console_page
from crawler.settings import ServiceSettings

AsgiScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_URLS_PER_POST = 1_000_000
EVENT_SECONDS = 1.0  # GET /events: one progress object this often
_READS = ("GET", "HEAD")
_CHANGES = ("POST",)
# The methods each endpoint answers (a 405 names them in its Allow header).
METHODS: dict[str, tuple[str, ...]] = {
    "/healthz": _READS,
    "/readyz": _READS,
    "/status": _READS,
    "/metrics": _READS,
    "/openapi.json": _READS,
    "/seeds": _CHANGES,
    "/pause": _CHANGES,
    "/resume": _CHANGES,
    "/hosts": _READS,
    "/excludes": ("GET", "HEAD", "POST", "DELETE"),
    "/events": ("GET",),
    "/": _READS,
}
HOST_METHODS = ("GET", "HEAD", "PATCH")  # /hosts/{host}

log = structlog.get_logger("crawler.api")


class Backend(Protocol):
    """What the API needs from the running crawl."""

    async def status(self) -> dict[str, Any]: ...

    async def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    async def metrics(self) -> tuple[bytes, str]: ...

    async def add_urls(self, lines: list[str], recrawl: bool = False) -> dict[str, Any]: ...

    async def hosts(self, sort: str, q: str, limit: int, offset: int) -> dict[str, Any]: ...

    async def host(self, host: str) -> dict[str, Any] | None: ...

    async def change_host(self, host: str, change: Any) -> dict[str, Any]: ...

    async def excludes(self) -> dict[str, Any]: ...

    def progress(self) -> dict[str, Any]: ...

    async def add_exclude(self, pattern: str) -> dict[str, Any]: ...

    async def remove_exclude(self, pattern: str) -> dict[str, Any]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class BadRequest(Exception):
    """An answer other than 200, with its message (`allow`: the methods of a 405)."""

    def __init__(self, status: int, message: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.allow = allow


class Api:
    """The ASGI application."""

    def __init__(self, backend: Backend, settings: ServiceSettings) -> None:
        self._backend = backend
        self._settings = settings
        host, _ = split_listen(settings.listen)
        self._loopback_only = ipaddress.ip_address(host).is_loopback
        self.stopping = anyio.Event()  # set when the service stops: event streams end

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/events":
            await self._events(scope, receive, send)
            return
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, body, content_type = await self._route(method, path, scope, receive)
        except BadRequest as exc:
            status, body, content_type = exc.status, _json({"error": str(exc)}), JSON
            if exc.allow:
                extra.append((b"allow", ", ".join(exc.allow).encode()))
        except Exception:  # a bug answers 500; the crawl goes on
            log.exception("api_error", method=method, path=path)
            status, body, content_type = 500, _json({"error": "internal error"}), JSON
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        headers += extra
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        # Every request, refused ones too; the path without its query, never a header.
        log.info(
            "api_request",
            method=method,
            path=path,
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 1),
            client=(scope.get("client") or ("",))[0],
        )

    async def _events(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Server-Sent Events: the crawl's progress once a second (the console's plots),
        until the client goes away or the service stops."""
        log.info("api_request", method="GET", path="/events", status=200, ms=0.0,
                 client=(scope.get("client") or ("",))[0])  # fmt: skip
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with anyio.create_task_group() as tg:

            async def until_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_gone)
            while not self.stopping.is_set():
                data = json.dumps(self._backend.progress())
                await send(
                    {"type": "http.response.body", "body": f"data: {data}\n\n".encode(),
                     "more_body": True}
                )  # fmt: skip
                with anyio.move_on_after(EVENT_SECONDS):
                    await self.stopping.wait()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tg.cancel_scope.cancel()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(
        self, method: str, path: str, scope: AsgiScope, receive: Receive
    ) -> tuple[int, bytes, str]:
        backend = self._backend
        if method in ("GET", "HEAD"):
            if path == "/healthz":
                return 200, _json({"ok": True}), JSON
            if path == "/":
                return 200, console_page(), "text/html; charset=utf-8"
            if path == "/readyz":
                ready, checks = await backend.readiness()
                return (200 if ready else 503), _json({"ready": ready, **checks}), JSON
            if path == "/status":
                return 200, _json(await backend.status()), JSON
            if path == "/metrics":
                body, content_type = await backend.metrics()
                return 200, body, content_type
            if path == "/openapi.json":
                return 200, _json(openapi.document(__version__)), JSON
            if path == "/hosts":
                return 200, _json(await backend.hosts(*_host_query(scope))), JSON
            if path == "/excludes":
                return 200, _json(await backend.excludes()), JSON
            if path.startswith("/hosts/") and len(path) > len("/hosts/"):
                view = await backend.host(path[len("/hosts/") :])
                if view is None:
                    raise BadRequest(404, f"no such host: {path[len('/hosts/') :]}")
                return 200, _json(view), JSON
        elif method in ("POST", "DELETE") and path == "/excludes":
            self._authorise(scope)
            pattern = _pattern(await self._body(scope, receive))
            if method == "POST":
                return 200, _json(await backend.add_exclude(pattern)), JSON
            return 200, _json(await backend.remove_exclude(pattern)), JSON
        elif method == "PATCH" and path.startswith("/hosts/") and len(path) > len("/hosts/"):
            self._authorise(scope)
            body = await self._body(scope, receive)
            try:
                change = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadRequest(400, f"body is not valid JSON: {exc}") from None
            try:
                return 200, _json(await backend.change_host(path[len("/hosts/") :], change)), JSON
            except BadChange as exc:
                raise BadRequest(400, str(exc)) from None
        elif method == "POST" and path in ("/seeds", "/pause", "/resume"):
            self._authorise(scope)
            if path == "/pause":
                backend.pause()
                return 200, _json({"paused": True}), JSON
            if path == "/resume":
                backend.resume()
                return 200, _json({"paused": False}), JSON
            recrawl = _flag(scope, "recrawl")
            lines = _urls(await self._body(scope, receive), _header(scope, b"content-type"))
            return 200, _json(await backend.add_urls(lines, recrawl)), JSON
        allowed = METHODS.get(path)
        if allowed is None and path.startswith("/hosts/") and len(path) > len("/hosts/"):
            allowed = HOST_METHODS
        if allowed is not None:
            raise BadRequest(405, f"{method} not allowed on {path}", allowed)
        raise BadRequest(404, f"no such endpoint: {path}")

    def _authorise(self, scope: AsgiScope) -> None:
        token = self._settings.token
        if not token:
            if self._loopback_only:
                return
            raise BadRequest(403, "set service.token to allow changes on a non-loopback listener")
        given = _header(scope, b"authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise BadRequest(401, "missing or wrong bearer token")

    async def _body(self, scope: AsgiScope, receive: Receive) -> bytes:
        limit = self._settings.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, f"request body over {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(400, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


JSON = "application/json"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


def _header(scope: AsgiScope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _pattern(body: bytes) -> str:
    """The pattern of a POST or DELETE /excludes body: {"pattern": "<Python regex>"}."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None
    pattern = value.get("pattern") if isinstance(value, dict) else None
    if not isinstance(pattern, str) or not pattern or set(value) != {"pattern"}:
        raise BadRequest(400, 'body must be {"pattern": "<regex>"}')
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BadRequest(400, f"pattern {pattern!r} is not a valid regex: {exc}") from None
    return pattern


def _host_query(scope: AsgiScope) -> tuple[str, str, int, int]:
    """sort, q, limit and offset of a GET /hosts."""
    text = bytes(scope.get("query_string", b"")).decode("latin-1")
    query = parse_qs(text, keep_blank_values=True)
    sort = query.get("sort", ["queued"])[-1]
    if sort not in openapi.HOST_SORTS:
        raise BadRequest(400, f"sort={sort}: must be one of {', '.join(openapi.HOST_SORTS)}")
    return (
        sort,
        query.get("q", [""])[-1],
        _integer(query, "limit", 50, 1, 1000),
        _integer(query, "offset", 0, 0, 10**9),
    )


def _integer(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    if name not in query:
        return default
    text = query[name][-1]
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadRequest(400, f"{name}={text}: must be an integer from {low} to {high}")
    return int(text)


def _flag(scope: AsgiScope, name: str) -> bool:
    """A true/false query parameter (absent: false); any other value is a 400."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get(name)
    if not values:
        return False
    value = values[-1]
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(400, f"{name}={values[-1]}: must be true or false")
    return value in ("true", "1")


def _urls(body: bytes, content_type: str | None) -> list[str]:
    """The URLs of a POST /seeds body: a JSON list of strings, or one URL per line."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8") from None
    media = (content_type or "").split(";")[0].strip().lower()
    # Without a JSON or text type (curl --data-binary says form-urlencoded), a body that
    # opens with "[" is taken for a JSON list.
    if media == JSON or (media != "text/plain" and text.lstrip().startswith("[")):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(value, list):
            raise BadRequest(400, "JSON body must be a list of URLs")
        lines = [item if isinstance(item, str) else json.dumps(item) for item in value]
    else:
        lines = text.splitlines()
    if len(lines) > MAX_URLS_PER_POST:
        raise BadRequest(413, f"more than {MAX_URLS_PER_POST} URLs in one request")
    return lines


async def serve_api(
    api: Api, listen: str, started: Callable[[list[str]], None], shutdown: anyio.Event
) -> None:
    """Serve `api` on `listen` until `shutdown` is set; `started` gets the bound addresses."""
    host, port = split_listen(listen)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    config.h11_max_incomplete_size = 64 * 1024

    async def shutdown_trigger() -> None:
        await shutdown.wait()

    # hypercorn reports the sockets it bound only in its log; we open them ourselves so the
    # bound port (0 = any) is known: a test or a supervisor reads it from the log line.
    sockets = config.create_sockets().insecure_sockets
    for sock in sockets:
        sock.listen(config.backlog)  # accepting (queued) before we say we are listening
    bound = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sockets]
    config.bind = [f"fd://{s.detach()}" for s in sockets]  # hypercorn owns (and closes) them
    started(bound)
    await serve(api, config, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]
