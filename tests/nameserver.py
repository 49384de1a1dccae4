"""A programmable DNS server on loopback (UDP, dnslib) that the resolver's tests ask.

A test gives names their records (``server.a("a.test", "127.0.0.5", ttl=30)``), or makes
them fail (``servfail``), never answer (``silent``) or answer late (``delay``), points a
resolver at ``server.address`` and asserts on the queries the server saw. A name given
nothing is NXDOMAIN. ``*.suffix`` names every name under suffix.

Every reply carries one more record, with TTL 0, in its additional section: c-ares keeps a
cache of DNS messages of its own (by their smallest TTL; pycares offers no switch for it),
and a TTL of 0 keeps it out, so what the tests see is the resolver's own cache alone.

One thread, stdlib sockets plus dnslib; ``stop()`` ends it.
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, TXT, A, DNSRecord

_TICK = 0.05  # longest wait between two looks at the stop flag


@dataclass
class _Name:
    records: list[RR] = field(default_factory=list)
    rcode: int = RCODE.NOERROR
    silent: bool = False
    delay: float = 0.0


def _question(packet: bytes) -> tuple[str, str] | None:
    """The name and type of a query's first question, read straight from the packet."""
    labels: list[bytes] = []
    at = 12  # past the header
    while at < len(packet) and packet[at]:
        size = packet[at]
        labels.append(packet[at + 1 : at + 1 + size])
        at += 1 + size
    if at + 3 > len(packet):
        return None
    qtype = int.from_bytes(packet[at + 1 : at + 3], "big")
    name = b".".join(labels).decode("ascii", "replace").lower()
    return name, QTYPE.get(qtype, str(qtype))


class NameServer:
    """A DNS server on 127.0.0.1, port chosen by the system; ``start()`` it, then ``stop()``."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._names: dict[str, _Name] = {}
        self._later: list[tuple[float, int, bytes, tuple[str, int]]] = []  # (due, seq, ...)
        self._seq = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="nameserver", daemon=True)
        self.queries: list[tuple[str, str]] = []  # (name, "A" | "AAAA" | ...), in order seen

    @property
    def address(self) -> str:
        """For `network.dns_servers`."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> NameServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._sock.close()

    # -- the zone -------------------------------------------------------------------------
    def _name(self, name: str) -> _Name:
        return self._names.setdefault(name.lower().rstrip("."), _Name())

    def a(self, name: str, address: str, ttl: int = 300) -> None:
        self._name(name).records.append(RR(name, QTYPE.A, rdata=A(address), ttl=ttl))

    def aaaa(self, name: str, address: str, ttl: int = 300) -> None:
        self._name(name).records.append(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=ttl))

    def cname(self, name: str, target: str, ttl: int = 300) -> None:
        self._name(name).records.append(RR(name, QTYPE.CNAME, rdata=CNAME(target), ttl=ttl))

    def empty(self, name: str) -> None:
        """The name exists but has no records (NODATA)."""
        self._name(name)

    def servfail(self, name: str) -> None:
        self._name(name).rcode = RCODE.SERVFAIL

    def silent(self, name: str) -> None:
        """Queries for the name are dropped: its lookups can only time out."""
        self._name(name).silent = True

    def delay(self, name: str, seconds: float) -> None:
        """Answers for the name leave `seconds` after their query came."""
        self._name(name).delay = seconds

    def clear(self, name: str) -> None:
        """Forget what the name had: it is NXDOMAIN again."""
        self._names.pop(name.lower().rstrip("."), None)

    def count(self, name: str, qtype: str = "A") -> int:
        return Counter(self.queries)[(name.lower().rstrip("."), qtype)]

    def count_matching(self, suffix: str) -> int:
        """Queries seen (of any type) for names ending with `suffix`."""
        return sum(1 for name, _ in self.queries if name.endswith(suffix))

    def _find(self, name: str) -> _Name | None:
        if name in self._names:
            return self._names[name]
        labels = name.split(".")
        for i in range(1, len(labels)):
            wild = self._names.get("*." + ".".join(labels[i:]))
            if wild is not None:
                return wild
        return None

    # -- serving --------------------------------------------------------------------------
    def _reply(self, query: DNSRecord) -> tuple[bytes, float]:
        """The reply's bytes and how long to hold it."""
        name = str(query.q.qname).lower().rstrip(".")
        qtype = query.q.qtype
        reply = query.reply()
        entry = self._find(name)
        delay = entry.delay if entry is not None else 0.0
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            reply.header.rcode = entry.rcode
            seen = set()
            while entry is not None and name not in seen:  # follow the CNAME chain
                seen.add(name)
                for rr in entry.records:
                    if rr.rtype in (qtype, QTYPE.CNAME):
                        reply.add_answer(rr)
                cnames = [rr for rr in entry.records if rr.rtype == QTYPE.CNAME]
                name = str(cnames[0].rdata.label).lower().rstrip(".") if cnames else name
                entry = self._find(name) if cnames else None
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
            question = _question(packet)
            if question is None:
                continue  # not DNS: ignore it, as a server would
            self.queries.append(question)
            entry = self._find(question[0])
            if entry is not None and entry.silent:
                continue  # dropped before the costly parse: floods of these must keep up
            try:
                query = DNSRecord.parse(packet)
            except Exception:
                continue
            data, delay = self._reply(query)
            if delay > 0:
                self._seq += 1
                heapq.heappush(self._later, (time.monotonic() + delay, self._seq, data, peer))
            else:
                self._sock.sendto(data, peer)
