"""Loopback servers for the crawler's tests: real sockets, recording what they saw.

    core.LoopbackServer         binds 127.0.0.x port 0, a thread per connection, optional
    │                           TLS, counts connections and failed handshakes, keeps
    │                           handler bugs in `errors`, and one `stop()` that never hangs
    ├── site.Site               HTTP/1.1 routes; every request a `Hit`; peak in flight
    │   └── proxies.ForwardProxy  absolute-form HTTP proxy (and CONNECT), Proxy-Authorization
    └── proxies.Socks5Proxy     RFC 1928 CONNECT, no auth or RFC 1929 username/password
    wire                        how a site reads HTTP/1.1 requests off the socket
    handlers                    Site handlers: ok, redirect, slow ... and hostile ones
    auth                        Site handlers that demand Basic, Bearer, cookie, Digest
    tokens.TokenServer          an OAuth2 client-credentials endpoint on a Site, and its resource
    tls.TLSFiles                a private CA (trustme) and the PEM files a profile names
    registry.Servers            starts the above on demand (the `servers` and `make_site`
                                fixtures) and stops them at teardown
    h2app                       an ASGI app that hypercorn serves over HTTP/2

Tests import from here: ``from tests import servers as site`` then ``site.ok(b"hi")``.
"""

from __future__ import annotations

from tests.servers.auth import DigestRealm, basic, basic_required, bearer_required, cookie_required
from tests.servers.core import IDLE_TIMEOUT, LoopbackServer, closed_port
from tests.servers.handlers import (
    Versioned,
    chunked,
    corrupt_gzip,
    endless,
    gzip_body,
    gzip_bomb,
    lying_length,
    ok,
    redirect,
    reset_mid_body,
    retry_after,
    sequence,
    slow,
    stall_headers,
    status,
    trickle,
    truncated_gzip,
)
from tests.servers.proxies import ForwardProxy, Socks5Proxy, SocksConnect
from tests.servers.registry import Servers
from tests.servers.site import Conn, Handler, Hit, Site, SiteFactory
from tests.servers.tls import TLSFiles
from tests.servers.tokens import Token, TokenServer

__all__ = [
    "IDLE_TIMEOUT",
    "Conn",
    "DigestRealm",
    "ForwardProxy",
    "Handler",
    "Hit",
    "LoopbackServer",
    "Servers",
    "Site",
    "SiteFactory",
    "Socks5Proxy",
    "SocksConnect",
    "TLSFiles",
    "Token",
    "TokenServer",
    "Versioned",
    "basic",
    "basic_required",
    "bearer_required",
    "chunked",
    "closed_port",
    "cookie_required",
    "corrupt_gzip",
    "endless",
    "gzip_body",
    "gzip_bomb",
    "lying_length",
    "ok",
    "redirect",
    "reset_mid_body",
    "retry_after",
    "sequence",
    "slow",
    "stall_headers",
    "status",
    "trickle",
    "truncated_gzip",
]
