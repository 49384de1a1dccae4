"""Network backend of the fetcher's pools: resolves names through the crawl's resolver,
connects only to addresses the guard permits, and tells the fetch in progress about each
connection it opens."""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import anyio
import httpcore2

from crawler import errors
from crawler.dns import Resolver
from crawler.guard import AddressGuard

# The hosts the fetch running in this context connected to (None: no fetch is listening).
# Module-level, as context variables should be: each fetch sets a list of its own.
OPENED: ContextVar[list[str] | None] = ContextVar("crawler_fetcher_opened", default=None)
# Called (once) when the fetch running in this context first writes to a connection: its
# request goes out now, after any DNS lookup, connect and TLS handshake.
SENDING: ContextVar[Callable[[], None] | None] = ContextVar("crawler_fetcher_sending", default=None)


def note_connection(host: str) -> None:
    """Tell the fetch in progress that it opens a new connection (to `host`)."""
    opened = OPENED.get()
    if opened is not None:
        opened.append(host)


def mark_sending() -> None:
    """Tell the fetch in progress (once) that its request goes out now."""
    sending = SENDING.get()
    if sending is not None:
        SENDING.set(None)
        sending()


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves host names (through the crawl's resolver) and connects only to addresses the
    guard permits."""

    def __init__(
        self,
        guard: AddressGuard | None,
        resolver: Resolver | None = None,
    ) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._guard = guard
        self._resolver = resolver or Resolver()

    async def addresses(self, host: str, port: int) -> list[str]:
        if is_ip(host):
            if self._guard is not None and not self._guard.permits(host, port):
                raise errors.BlockedAddress(f"{host} is a blocked address")
            return [host]
        found = list(await self._resolver.resolve(host))
        if self._guard is None:
            return found
        allowed = [a for a in found if self._guard.permits(a, port)]
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
        note_connection(host)
        last: Exception | None = None
        for address in await self.addresses(host, port):
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
            else:
                return Connection(stream)
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:  # pragma: no cover - never configured
        raise errors.BlockedAddress("unix sockets are not used")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class Connection(httpcore2.AsyncNetworkStream):
    """A connected stream whose fixed facts (socket, addresses, TLS object) are looked up once.

    anyio answers each `extra()` lookup by building every socket attribute afresh, with a
    getpeername() system call; httpcore2 asks for the raw socket before every request on a
    kept-alive connection (to see whether the server closed it) and the fetcher asks for
    the peer address of every response. Those answers never change for one stream."""

    __slots__ = ("_facts", "_inner")

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._facts: dict[str, Any] = {}

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        mark_sending()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return Connection(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return readable(self.get_extra_info("socket"))
        try:
            return self._facts[info]
        except KeyError:
            fact = self._facts[info] = self._inner.get_extra_info(info)
            return fact


def readable(sock: socket.socket | None) -> bool:
    """Whether a read would return at once: data waiting, the peer's close, or no socket."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))
