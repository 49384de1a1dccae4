"""The HTTP/1.1 transport of plain-HTTP origins (crawler/fetcher/http11.py), through the
Fetcher with default settings, against servers on loopback that answer byte by byte as a
script says: what old, broken and hostile servers send."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx2
import pytest

from crawler import errors
from crawler.fetcher import Fetcher
from crawler.fetcher.http11 import request_head
from crawler.guard import AddressGuard
from crawler.profiles import load_profiles
from crawler.settings import FetchSettings
from tests.servers.core import LoopbackServer

LOOPBACK = AddressGuard(["127.0.0.0/8"])
Script = Callable[["Peer"], None]


class Peer:
    """One accepted connection, as a script sees it."""

    def __init__(self, sock: socket.socket, number: int, requests: list[bytes]) -> None:
        self.sock = sock
        self.number = number  # 0 for the server's first connection
        self._requests = requests  # every request head the server read, in order
        self._buffer = b""

    def request(self) -> bytes | None:
        """The next request head; None when the client closed."""
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self._requests.append(head + b"\r\n\r\n")
        return head + b"\r\n\r\n"

    def hold(self) -> None:
        """Keep the connection open until the client closes it (or the server stops)."""
        while self.sock.recv(65536):
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class Scripted(LoopbackServer):
    """Runs `script` on each connection; keeps the request heads and the peak of open
    connections."""

    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self._script = script
        self.requests: list[bytes] = []
        self.open = 0
        self.peak_open = 0
        self._count_lock = threading.Lock()

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    def serve(self, sock: socket.socket, serial: int) -> None:
        with self._count_lock:
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)
        try:
            self._script(Peer(sock, serial - 1, self.requests))
        finally:
            with self._count_lock:
                self.open -= 1


@contextmanager
def serving(script: Script, host: str = "127.0.0.1") -> Iterator[Scripted]:
    with Scripted(script, host) as server:
        yield server


def keep_answering(answer: bytes) -> Script:
    """Answer every request on a connection with `answer`, keeping it open."""

    def script(peer: Peer) -> None:
        while peer.request() is not None:
            peer.send(answer)

    return script


@asynccontextmanager
async def fetching(
    settings: FetchSettings, guard: AddressGuard = LOOPBACK, **options: Any
) -> AsyncIterator[Fetcher]:
    """A Fetcher, closed at the end of the block."""
    fetcher = Fetcher(settings, guard, **options)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


async def fetch(server: Scripted, path: str = "/") -> tuple[int, bytes, dict]:
    async with fetching(FetchSettings()) as fetcher:
        return await _get(fetcher, server.url(path))


async def _get(fetcher: Fetcher, url: str) -> tuple[int, bytes, dict]:
    response, digest = await fetcher.fetch(url)
    try:
        body = response.body.read()
        facts = {
            "reason": response.reason_phrase,
            "version": response.http_version,
            "headers": response.headers,
            "digest": digest,
            "request": response.request_headers,
            "peer": response.peer,
        }
        return response.status, body, facts
    finally:
        response.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


@pytest.mark.anyio
async def test_keep_alive_one_connection_and_the_request_sent_is_the_one_recorded() -> None:
    with serving(keep_answering(OK)) as server:
        async with fetching(FetchSettings()) as fetcher:
            results = [await _get(fetcher, server.url(f"/p{i}?q=1")) for i in range(5)]
    assert server.connections == 1
    for i, (status, body, facts) in enumerate(results):
        assert (status, body, facts["reason"], facts["version"]) == (
            200,
            b"hello",
            "OK",
            "HTTP/1.1",
        )
        assert facts["peer"] == "127.0.0.1"
        sent = server.requests[i].decode("latin-1").split("\r\n")
        assert sent[0] == f"GET /p{i}?q=1 HTTP/1.1"
        assert [tuple(line.split(": ", 1)) for line in sent[1:-2]] == facts["request"]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.anyio
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_an_ipv6_peer_is_reached_and_recorded() -> None:
    with serving(keep_answering(OK), "::1") as server:
        async with fetching(FetchSettings(), AddressGuard(["::1/128"])) as fetcher:
            status, body, facts = await _get(fetcher, server.url("/v6"))
    assert (status, body, facts["peer"]) == (200, b"hello", "::1")
    assert server.requests[0].startswith(b"GET /v6 HTTP/1.1\r\nHost: [::1]:")


@pytest.mark.anyio
async def test_old_servers_bare_lf_and_a_body_to_the_close() -> None:
    def script(peer: Peer) -> None:
        peer.request()
        peer.send(b"HTTP/1.0 200 Fine\nServer: old\n\nthe body runs to the close")

    with serving(script) as server:
        async with fetching(FetchSettings()) as fetcher:
            first = await _get(fetcher, server.url())
            second = await _get(fetcher, server.url())
    assert first[:2] == second[:2] == (200, b"the body runs to the close")
    assert (first[2]["reason"], first[2]["version"]) == ("Fine", "HTTP/1.0")
    assert first[2]["headers"] == [("Server", "old")]
    assert server.connections == 2  # closed by the server: never reused


@pytest.mark.anyio
async def test_what_h11_accepted_is_still_accepted() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nX-Ctl: a\x01b\r\n"
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    with serving(keep_answering(answer)) as server:
        status, body, facts = await fetch(server)
    assert (status, body) == (200, b"ok")
    assert ("X-Folded", "one two") in facts["headers"]
    assert ("X-Ctl", "a\x01b") in facts["headers"]


@pytest.mark.anyio
async def test_informational_responses_are_skipped_and_chunked_bodies_joined() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with serving(keep_answering(answer)) as server:
        status, body, facts = await fetch(server)
    assert (status, body) == (200, b"hello!")
    assert facts["headers"] == [("Transfer-Encoding", "chunked")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HELLO\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"",
    ],
    ids=["cut-short", "chunked-cut-short", "not-http", "two-lengths", "bad-name", "nul", "silent"],
)
async def test_broken_responses_are_protocol_errors(answer: bytes) -> None:
    def script(peer: Peer) -> None:
        peer.request()
        peer.send(answer)

    with serving(script) as server, pytest.raises(errors.ProtocolError):
        await fetch(server)


@pytest.mark.anyio
async def test_an_endless_head_is_refused_without_waiting_for_a_timeout() -> None:
    def script(peer: Peer) -> None:
        peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            peer.send(b"X-Filler-%d: %s\r\n" % (i, b"x" * 100))

    started = time.monotonic()
    with serving(script) as server, pytest.raises(errors.ProtocolError, match="head over"):
        await fetch(server)
    assert time.monotonic() - started < FetchSettings().read_timeout


@pytest.mark.anyio
async def test_a_closed_or_chatty_idle_connection_is_not_reused() -> None:
    def script(peer: Peer) -> None:
        peer.request()
        peer.send(OK)
        if peer.number == 0:
            return  # the server closes the kept-alive connection while it is idle
        if peer.number == 1:
            peer.send(b"HTTP/1.1 200 OK\r\n\r\n")  # and this one talks while idle
            peer.hold()

    with serving(script) as server:
        async with fetching(FetchSettings()) as fetcher:
            for _ in range(3):
                assert (await _get(fetcher, server.url()))[:2] == (200, b"hello")
                await anyio.sleep(0.2)
    assert server.connections == 3


@pytest.mark.anyio
async def test_a_second_response_to_one_request_leaves_the_connection_unused() -> None:
    with serving(keep_answering(OK + OK)) as server:
        async with fetching(FetchSettings()) as fetcher:
            for _ in range(2):
                assert (await _get(fetcher, server.url()))[:2] == (200, b"hello")
    assert server.connections == 2


@pytest.mark.anyio
async def test_a_failure_on_a_reused_connection_says_so() -> None:
    def script(peer: Peer) -> None:
        peer.request()
        peer.send(OK)
        peer.request()  # read the second request, then hang up without an answer

    with serving(script) as server:
        async with fetching(FetchSettings()) as fetcher:
            await _get(fetcher, server.url())
            with pytest.raises(errors.FetchError) as failed:
                await _get(fetcher, server.url())
    assert failed.value.fresh_connection is False
    assert "disconnected without sending a response" in str(failed.value)


@pytest.mark.anyio
async def test_a_stalled_body_times_out_and_the_slot_comes_back() -> None:
    def script(peer: Peer) -> None:
        while peer.request() is not None:
            if peer.number == 0:
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                peer.hold()
                return
            peer.send(OK)

    with serving(script) as server:
        async with fetching(
            FetchSettings(read_timeout=0.5), LOOPBACK, per_host_connections=1
        ) as fetcher:
            with pytest.raises(errors.FetchTimeout):
                await _get(fetcher, server.url())
            assert (await _get(fetcher, server.url()))[:2] == (200, b"hello")


@pytest.mark.anyio
async def test_a_deadline_mid_body_frees_the_only_connection() -> None:
    def script(peer: Peer) -> None:
        while peer.request() is not None:
            if peer.number == 0:
                peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(100):
                    peer.send(b"x")
                    time.sleep(0.05)
                return
            peer.send(OK)

    with serving(script) as server:
        settings = FetchSettings(deadline=1.0)
        async with fetching(settings, per_host_connections=1) as fetcher:
            with pytest.raises(errors.DeadlineExceeded):
                await _get(fetcher, server.url())
            assert (await _get(fetcher, server.url()))[:2] == (200, b"hello")
    assert server.connections == 2


@pytest.mark.anyio
async def test_the_pool_holds_per_host_connections_and_queues_the_rest() -> None:
    def script(peer: Peer) -> None:
        while peer.request() is not None:
            time.sleep(0.1)
            peer.send(OK)

    results: list[int] = []
    with serving(script) as server:
        async with fetching(FetchSettings(), per_host_connections=2) as fetcher:

            async def one(i: int) -> None:
                results.append((await _get(fetcher, server.url(f"/{i}")))[0])

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(one, i)
    assert results == [200] * 8
    assert (server.connections, server.peak_open) == (2, 2)


@pytest.mark.anyio
async def test_a_large_body_arrives_whole_while_reading_is_paused_and_resumed() -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB, many times the read-ahead limit
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(payload), payload)
    with serving(keep_answering(answer)) as server:
        status, body, facts = await fetch(server)
    assert (status, len(body)) == (200, len(payload))
    assert body == payload
    assert facts["digest"] == "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode()


def test_a_header_that_would_split_the_request_is_refused() -> None:
    request = httpx2.Request("GET", "http://a.test/", headers={"X-A": "1"})
    assert request_head(request).startswith(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n")
    bad = httpx2.Request("GET", "http://a.test/", headers=[(b"X-A", b"1\r\nX-Injected: 2")])
    with pytest.raises(httpx2.LocalProtocolError):
        request_head(bad)


@pytest.mark.anyio
async def test_a_url_of_no_profile_is_sent_as_the_client_would_send_it() -> None:
    """The fetcher builds requests of profile-less URLs itself and hands them to the
    transport; a URL of a profile (here one that changes nothing) goes through httpx2's
    client. Both heads must be the same, header for header, recrawl headers included."""
    with serving(keep_answering(OK)) as server:
        profiles = load_profiles([{"hosts": ["localhost"], "headers": {}}])
        conditional = [
            ("If-None-Match", '"v1"'),
            ("If-Modified-Since", "Tue, 01 Dec 2026 00:00:00 GMT"),
        ]
        async with fetching(FetchSettings(), profiles=profiles) as fetcher:
            for host in ("127.0.0.1", "localhost"):
                for extra in ((), conditional):
                    response, _ = await fetcher.fetch(
                        f"http://{host}:{server.port}/a?b", headers=extra
                    )
                    response.close()
    heads = [head.replace(b"localhost", b"127.0.0.1") for head in server.requests]
    assert (heads[0], heads[1]) == (heads[2], heads[3])
    assert b'\r\nIf-None-Match: "v1"\r\nIf-Modified-Since: Tue' in heads[1]
