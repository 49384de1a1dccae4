"""Servers: starts the loopback servers a test asks for, and stops them all at teardown."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from tests.servers.core import IDLE_TIMEOUT, LoopbackServer
from tests.servers.proxies import ForwardProxy, Socks5Proxy
from tests.servers.site import Site
from tests.servers.tls import TLSFiles
from tests.servers.tokens import TokenServer

_Server = TypeVar("_Server", bound=LoopbackServer)


class Servers:
    """Starts servers on demand; ``close()`` stops them and re-raises the first handler bug.

    The ``servers`` fixture is one of these, and ``make_site`` is its ``site`` method.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder  # where the TLS files go, made when first asked for
        self._started: list[LoopbackServer] = []
        self._tls: TLSFiles | None = None

    def _start(self, server: _Server) -> _Server:
        self._started.append(server.start())
        return server

    def site(
        self,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        *,
        idle_timeout: float | None = None,
    ) -> Site:
        return self._start(Site(host, ssl_context, idle_timeout=idle_timeout))

    def proxy(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> ForwardProxy:
        return self._start(ForwardProxy(host, names, credentials))

    def socks(
        self,
        host: str = "127.0.0.3",
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> Socks5Proxy:
        return self._start(Socks5Proxy(host, names, credentials))

    def tokens(
        self, client_id: str, client_secret: str, host: str = "127.0.0.4", **options: Any
    ) -> TokenServer:
        """A token endpoint on a site of its own (a client silent for 10 s is dropped)."""
        site = self.site(host, idle_timeout=IDLE_TIMEOUT)
        return TokenServer(site, client_id, client_secret, **options)

    def tls(self) -> TLSFiles:
        if self._tls is None:
            self._tls = TLSFiles(self._folder / "tls")
        return self._tls

    def close(self) -> None:
        for server in self._started:
            server.stop()
        errors = [error for server in self._started for error in server.errors]
        if errors:
            raise errors[0]
