"""DNS resolver: asynchronous lookups through c-ares (aiodns), cached by TTL, one query per name.

The only importer of aiodns (and of pycares beneath it). The composition root makes one
`Resolver` per crawl; the fetcher's transport and the `ip` politeness key share it.

- A name goes to c-ares's getaddrinfo: /etc/hosts first (as nsswitch.conf says), then the
  servers of `network.dns_servers` or /etc/resolv.conf, with its search list; A and AAAA
  together, CNAME chains followed, addresses sorted best first (RFC 6724).
- `localhost` and `*.localhost` are loopback and `*.invalid` does not exist (RFC 6761),
  without a query: no DNS server can point `localhost` elsewhere.
- Addresses are kept for the smallest TTL of the answer (CNAMEs included), at most
  MAX_TTL seconds; a TTL of 0, as /etc/hosts entries have, is not kept.
- NXDOMAIN (or a malformed name) is kept NEGATIVE_TTL seconds. Every other failure
  (SERVFAIL, REFUSED, no address records, no answer within `network.dns_timeout`) is kept
  FAILURE_TTL seconds: long enough that the queued URLs of a dead name fail at once instead
  of each waiting out the timeout, short enough for an outage to pass.
- Answers and failures share one LRU of CACHE_SIZE names: memory does not grow with the crawl.
- Concurrent lookups of one name are one query, and all of them end at its deadline (its
  start + `network.dns_timeout`) with "timed out after Ns" if it has no answer by then.

c-ares has no queue: it sends each query at once and keeps a timer per query, so a name
whose servers never answer costs a timer and a few packets and does not hold up other
lookups; there is no limit here either, for the same reason (callers are bounded: the
workers, one claim batch). It resends an unanswered query after a wait adapted to the
server's measured latency (never under 250 ms; FIRST_WAIT before it has measured any),
doubling the wait each time and giving up after `tries`, chosen so that the resends from
250 ms span the timeout; a query given up here may live on in c-ares until its last try.
c-ares takes only the answer to a query's latest send, so a name the server answers slowly
while it answers others fast (an uncached name at a recursive resolver) would have each
answer arrive just after the next send; a lookup with no answer after SECOND_AFTER is asked
once more on a second channel that sends once and waits out the rest of the timeout.
c-ares also keeps its own cache of DNS answers (by their TTL, at most an hour, real time;
pycares has no switch for it); this one sits above it.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiodns
import anyio
from aiodns import error as ares
from pycares import AddrInfoResult

from crawler import errors
from crawler.addresses import split_dns_server
from crawler.settings import NetworkSettings

CACHE_SIZE = 10_000  # names kept, answers and failures together (a few hundred bytes each)
MAX_TTL = 3600.0  # an address is asked again at least this often, whatever its TTL
NEGATIVE_TTL = 300.0  # NXDOMAIN
FAILURE_TTL = 30.0  # SERVFAIL, REFUSED, no address records, no answer in time
SECOND_AFTER = 1.0  # seconds without an answer before a second, patient query goes out
MAX_PATIENT = 256  # patient queries in flight at most
FIRST_WAIT = 0.5  # seconds c-ares waits before resending, until it has measured the server
FASTEST_WAIT = 0.25  # c-ares's floor for that wait once it has (ares_metrics.c)
LOCALHOST = ("127.0.0.1", "::1")

_NEGATIVE = {ares.ARES_ENOTFOUND: "NXDOMAIN", ares.ARES_EBADNAME: "not a valid host name"}
_FAILURES = {
    ares.ARES_ESERVFAIL: "SERVFAIL",
    ares.ARES_EREFUSED: "REFUSED",
    ares.ARES_ENODATA: "no address records",
    ares.ARES_ETIMEOUT: "no answer from the DNS servers",
    ares.ARES_ECONNREFUSED: "no answer from the DNS servers (connection refused)",
}
_CLOSED = frozenset({ares.ARES_ECANCELLED, ares.ARES_EDESTRUCTION})


@dataclass(frozen=True, slots=True)
class Answer:
    """What a lookup found: addresses (best first), or the reason there are none."""

    addresses: tuple[str, ...]
    problem: str  # "" when there are addresses
    ttl: float  # seconds it may be kept (0: not at all)


class _Query(Protocol):
    """The part of aiodns's (asyncio) future that is used here."""

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def cancel(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    def result(self) -> AddrInfoResult: ...


@dataclass(slots=True, eq=False)
class _Lookup:
    """One query in flight and everyone waiting for it."""

    deadline: float  # anyio.current_time() at which it times out
    done: anyio.Event = field(default_factory=anyio.Event)
    answer: Answer | None = None
    query: _Query | None = None
    second: _Query | None = None  # the patient query, when the first is slow (SECOND_AFTER)


def tries_for(timeout: float) -> int:
    """How many times c-ares sends a query so that its doubling waits span `timeout`."""
    return max(2, math.ceil(math.log2(timeout / FASTEST_WAIT + 1)))


def cares_server(text: str) -> str:
    """A `network.dns_servers` entry as c-ares spells it ("IP:PORT", "[IPv6]:PORT")."""
    host, port = split_dns_server(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def special(name: str) -> Answer | None:
    """The answer for an IP literal or a special-use name (RFC 6761), or None."""
    try:
        return Answer((str(ipaddress.ip_address(name)),), "", 0.0)
    except ValueError:
        pass
    bare = name.rstrip(".")
    if bare == "localhost" or bare.endswith(".localhost"):
        return Answer(LOCALHOST, "", 0.0)
    if bare == "invalid" or bare.endswith(".invalid"):
        return Answer((), "NXDOMAIN", 0.0)
    return None


def answer_of(result: AddrInfoResult) -> Answer:
    addresses = tuple(dict.fromkeys(node.addr[0].decode("ascii") for node in result.nodes))
    if not addresses:
        return Answer((), "no address records", FAILURE_TTL)
    ttls = [node.ttl for node in result.nodes] + [cname.ttl for cname in result.cnames]
    return Answer(addresses, "", float(min(min(ttls), MAX_TTL)))


def failure_of(exc: BaseException) -> Answer:
    code = exc.args[0] if isinstance(exc, ares.DNSError) and exc.args else None
    if code in _NEGATIVE:
        return Answer((), _NEGATIVE[code], NEGATIVE_TTL)
    if code in _CLOSED:
        return Answer((), "the resolver was closed", 0.0)
    text = _FAILURES.get(code) or (exc.args[1] if len(exc.args) > 1 else repr(exc))
    return Answer((), str(text), FAILURE_TTL)


class Resolver:
    """Resolves host names to addresses; share one per crawl (it holds one c-ares channel).

    `clock` (monotonic seconds) dates the cache entries; tests pass a fake one.
    """

    def __init__(
        self,
        settings: NetworkSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        settings = settings or NetworkSettings()
        self._timeout = settings.dns_timeout
        self._servers = [cares_server(s) for s in settings.dns_servers]
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, Answer]] = OrderedDict()  # LRU order
        self._pending: dict[str, _Lookup] = {}
        self._channel: aiodns.DNSResolver | None = None  # made in the event loop, on first use
        self._patient: aiodns.DNSResolver | None = None  # for SECOND_AFTER, made on first use
        self._patient_queries = 0  # in flight on it, at most MAX_PATIENT

    async def resolve(self, host: str) -> tuple[str, ...]:
        """The addresses of `host` (a name or an IP literal), best first.

        Raises DnsError: "cannot resolve NAME: NXDOMAIN", "...: timed out after 5s", ...
        """
        name = host.lower()
        answer = special(name) or self._cached(name) or await self._lookup(name)
        if answer.problem:
            raise errors.DnsError(f"cannot resolve {host}: {answer.problem}")
        return answer.addresses

    async def aclose(self) -> None:
        """Close the c-ares channel; lookups still in flight fail."""
        for name, lookup in list(self._pending.items()):
            self._settle(name, lookup, Answer((), "the resolver was closed", 0.0))
        channels = [self._channel, self._patient]
        self._channel = self._patient = None
        for channel in channels:
            if channel is not None:
                await channel.close()

    def _cached(self, name: str) -> Answer | None:
        entry = self._cache.get(name)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._cache[name]
            return None
        self._cache.move_to_end(name)
        return entry[1]

    def _keep(self, name: str, answer: Answer) -> None:
        if answer.ttl <= 0:
            return
        self._cache[name] = (self._clock() + answer.ttl, answer)
        self._cache.move_to_end(name)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _lookup(self, name: str) -> Answer:
        lookup = self._pending.get(name) or self._start(name)
        with anyio.move_on_after(SECOND_AFTER):
            await lookup.done.wait()
        if lookup.answer is None and lookup.second is None:
            self._ask_patiently(name, lookup)
        with anyio.move_on_after(lookup.deadline - anyio.current_time()):
            await lookup.done.wait()
        if lookup.answer is None:
            self._settle(
                name, lookup, Answer((), f"timed out after {self._timeout:g}s", FAILURE_TTL)
            )
        assert lookup.answer is not None
        return lookup.answer

    def _start(self, name: str) -> _Lookup:
        lookup = self._pending[name] = _Lookup(anyio.current_time() + self._timeout)
        if self._channel is None:
            self._channel = aiodns.DNSResolver(
                self._servers or None, timeout=FIRST_WAIT, tries=tries_for(self._timeout)
            )
        try:
            query = self._channel.getaddrinfo(name, type=socket.SOCK_STREAM)
        except (UnicodeError, ValueError):  # pycares cannot encode it (IDNA)
            self._settle(name, lookup, Answer((), "not a valid host name", NEGATIVE_TTL))
            return lookup
        lookup.query = query
        query.add_done_callback(lambda done: self._answered(name, lookup, done))
        return lookup

    def _ask_patiently(self, name: str, lookup: _Lookup) -> None:
        """The first query has had no answer for SECOND_AFTER: ask again on a channel that
        sends once and waits out the rest of the timeout. c-ares takes only the answer to a
        query's latest send, and resends after a wait fitted to the server's usual latency:
        a resolver that answers most names at once and some (uncached, recursed) after 2 s
        would have every slow answer arrive just after the next send, lost."""
        remaining = lookup.deadline - anyio.current_time()
        if remaining <= 0 or self._patient_queries >= MAX_PATIENT:
            return  # past MAX_PATIENT: many names are dead, not slow; their packets add nothing
        if self._patient is None:
            wait = max(self._timeout - SECOND_AFTER, FASTEST_WAIT)
            self._patient = aiodns.DNSResolver(self._servers or None, timeout=wait, tries=1)
        try:
            second = self._patient.getaddrinfo(name, type=socket.SOCK_STREAM)
        except (UnicodeError, ValueError):
            return  # the first query said so already
        lookup.second = second
        self._patient_queries += 1
        second.add_done_callback(lambda done: self._patient_done(name, lookup, done))

    def _patient_done(self, name: str, lookup: _Lookup, query: _Query) -> None:
        self._patient_queries -= 1
        self._answered(name, lookup, query)

    def _answered(self, name: str, lookup: _Lookup, query: _Query) -> None:
        """c-ares is done with `query` (called in the event loop)."""
        if query.cancelled():
            return  # settled already (timed out, or closed)
        exc = query.exception()  # retrieved even if unused, or asyncio logs it
        if lookup.answer is not None:
            return
        self._settle(name, lookup, answer_of(query.result()) if exc is None else failure_of(exc))

    def _settle(self, name: str, lookup: _Lookup, answer: Answer) -> None:
        lookup.answer = answer
        lookup.done.set()
        if self._pending.get(name) is lookup:
            del self._pending[name]
        for query in (lookup.query, lookup.second):
            if query is not None and not query.done():
                query.cancel()  # c-ares's late answer is then dropped
        self._keep(name, answer)
