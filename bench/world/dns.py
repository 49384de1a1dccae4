"""The world's DNS server: UDP on 127.0.0.1, a process of its own, answers from the shape.

A process, not a thread beside the HTTP server: under a crawl's load the HTTP server keeps
the GIL busy and a thread got it back about every switch interval, a few hundred answers a
second, so lookups of healthy names timed out and the world, not the crawler, was measured.

``h{n}.world.test`` answers by its host's class: an A record in 127.0.0.0/8 (several
names share one), NXDOMAIN, SERVFAIL, nothing at all (dns_silent), the A record after
Shape.dns_slow_seconds (dns_slow), or a CNAME chain c2.h{n} -> c1.h{n} -> the A record
(cname; the chain's names are answered too). A and ANY get the address; other types get
NODATA. Every reply carries a TTL-0 record in its additional section, as the tests'
nameserver does, so c-ares' own message cache stays out of the measurement.
"""

from __future__ import annotations

import ctypes
import heapq
import os
import signal
import socket
import threading
import time

from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A, DNSRecord

from bench.world.shape import Shape, address, host_class, host_number

_TICK = 0.05
_TTL = 300


class WorldDNS:
    """``start()`` then ``stop()``; ``address`` is "127.0.0.1:PORT" for network.dns_servers."""

    def __init__(self, shape: Shape, port: int = 0) -> None:
        self.shape = shape
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._later: list[tuple[float, int, bytes, tuple[str, int]]] = []
        self._seq = 0
        self._stopping = threading.Event()
        self._pid = 0
        self._classes: dict[int, str] = {}
        self.queries = 0  # in the server process

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> WorldDNS:
        """Fork the server; it dies with its parent (PR_SET_PDEATHSIG), so a killed world
        leaves no orphan."""
        self._pid = os.fork()
        if self._pid == 0:  # pragma: no cover - the child
            try:
                signal.set_wakeup_fd(-1)  # the parent's event loop must not see our signals
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_DFL)
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
                self._serve()
            finally:
                os._exit(0)
        return self

    def stop(self) -> None:
        if self._pid:
            os.kill(self._pid, signal.SIGTERM)
            os.waitpid(self._pid, 0)
            self._pid = 0
        self._sock.close()

    def _class(self, n: int) -> str:
        kind = self._classes.get(n)
        if kind is None:
            kind = self._classes[n] = host_class(self.shape, n)
        return kind

    def reply(self, query: DNSRecord) -> tuple[bytes | None, float]:
        """The reply's bytes (None: stay silent) and how long to hold it."""
        qname = str(query.q.qname).lower().rstrip(".")
        reply = query.reply()
        labels = qname.split(".", 1)
        hop = labels[0] if labels[0] in ("c1", "c2") else None
        n = host_number(labels[1] if hop else qname)
        kind = self._class(n) if n is not None and n < self.shape.hosts else "nxdomain"
        delay = 0.0
        if hop and kind != "cname":
            kind = "nxdomain"
        if kind == "nxdomain":
            reply.header.rcode = RCODE.NXDOMAIN
        elif kind == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
        elif kind == "dns_silent":
            return None, 0.0
        else:
            if kind == "dns_slow":
                delay = self.shape.dns_slow_seconds
            name = qname
            if kind == "cname":  # h{n} -> c1.h{n} -> c2.h{n} -> A
                base = labels[1] if hop else qname
                steps = {None: 2, "c1": 1, "c2": 0}[hop]
                for target in ("c1", "c2")[2 - steps :]:
                    nxt = f"{target}.{base}"
                    reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(nxt), ttl=_TTL))
                    name = nxt
            if query.q.qtype in (QTYPE.A, QTYPE.ANY) and n is not None:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(address(self.shape, n)), ttl=_TTL))
        reply.add_ar(RR("uncached.invalid", QTYPE.TXT, rdata=TXT("keep c-ares out"), ttl=0))
        return reply.pack(), delay

    def _serve(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            while self._later and self._later[0][0] <= now:
                _, _, data, peer = heapq.heappop(self._later)
                self._sock.sendto(data, peer)
            wait = min(_TICK, self._later[0][0] - now) if self._later else _TICK
            self._sock.settimeout(max(wait, 0.001))
            try:
                packet, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            try:
                data, delay = self.reply(DNSRecord.parse(packet))
            except Exception:
                continue  # not DNS: ignore it, as a server would
            if data is None:
                continue
            if delay > 0:
                self._seq += 1
                heapq.heappush(self._later, (time.monotonic() + delay, self._seq, data, peer))
            else:
                self._sock.sendto(data, peer)
