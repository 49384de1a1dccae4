"""The world's shape: host names, their classes, the seed list, and what each URL should end as.

Everything is a pure function of the host number and a `Shape` (proportions, sizes, seed),
so the DNS server, the HTTP server, the seed writer and the oracle agree without sharing
state. Host n is named ``h{n}.world.test``; its class comes from a hash of n (the first
len(CLASSES) hosts take one class each, so even a tiny world has every class).
"""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from pathlib import Path

DOMAIN = "world.test"
HOST_RE = re.compile(r"^h(\d+)\.world\.test\.?$")
LISTEN_NET = "127.0.1."  # addresses the HTTP server listens on: 127.0.1.1 ...
DEAD_NET = "127.0.2."  # addresses nothing listens on (class "refused")

# class -> default share of hosts. DNS classes fail (or slow down) before any connection;
# "cname" and "dns_slow" then behave as healthy hosts.
CLASSES: dict[str, float] = {
    "healthy": 0.60,
    "slow": 0.05,  # first byte after Shape.slow_seconds
    "tls": 0.08,  # https, certificate from the world's private CA
    "cname": 0.03,  # a CNAME chain to a healthy name
    "dns_slow": 0.01,  # DNS answers after Shape.dns_slow_seconds
    "nxdomain": 0.04,
    "servfail": 0.01,
    "dns_silent": 0.01,  # DNS never answers
    "refused": 0.03,  # resolves to an address where nothing listens
    "stall": 0.01,  # robots.txt answers, pages are accepted and never answered
    "robots_5xx": 0.02,  # robots.txt answers 500, pages would be fine
    "robots_stall": 0.01,  # robots.txt is accepted and never answered
    "throttle": 0.02,  # each page's 1st request 429 Retry-After: 1, the next 200
    "throttle_hard": 0.01,  # every page request 429 Retry-After: 1
    "flaky": 0.03,  # each page's 1st request 503, the next 200
    "redirect": 0.02,  # 301 to a page of a healthy host
    "big": 0.02,  # pages of Shape.big_bytes
}
# Classes whose hosts get at most Shape.hostile_cap seeds (throttle_hard: 1): adaptive
# back-off doubles a host's delay on each 429/503, so their time grows with their size.
HOSTILE = frozenset({"throttle", "flaky", "throttle_hard", "stall", "robots_stall", "big"})


@dataclass(frozen=True, kw_only=True)
class Shape:
    """Parameters of a world; `shares` are normalised, missing classes count 0."""

    hosts: int = 50_000
    urls: int = 200_000
    max_per_host: int = 30  # the largest host's number of seeds
    zipf: float = 1.0  # exponent of the URLs-per-host distribution
    hostile_cap: int = 3
    seed: int = 42
    addresses: int = 8  # listening addresses (127.0.1.1 ...); several names share one
    slow_seconds: float = 0.1
    dns_slow_seconds: float = 2.0
    big_bytes: int = 2 * 1024 * 1024
    shares: dict[str, float] = field(default_factory=lambda: dict(CLASSES))

    def __hash__(self) -> int:
        return hash((self.hosts, self.urls, self.seed, tuple(sorted(self.shares.items()))))


def _unit(n: int, salt: int) -> float:
    """A well-mixed number in [0, 1) from n (splitmix64)."""
    x = (n * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((x ^ (x >> 31)) >> 11) / float(1 << 53)


@lru_cache(maxsize=8)
def _table(shape: Shape) -> tuple[list[str], list[float]]:
    names = [c for c in CLASSES if shape.shares.get(c, 0) > 0]
    total = sum(shape.shares[c] for c in names)
    return names, list(accumulate(shape.shares[c] / total for c in names))


def host_class(shape: Shape, n: int) -> str:
    names, cumulative = _table(shape)
    if n < len(names):
        return names[n]
    return names[min(bisect_right(cumulative, _unit(n, shape.seed)), len(names) - 1)]


def host_name(n: int) -> str:
    return f"h{n}.{DOMAIN}"


def host_number(name: str) -> int | None:
    match = HOST_RE.match(name.lower())
    return int(match.group(1)) if match else None


def address(shape: Shape, n: int) -> str:
    """The A record of host n (classes that never resolve still have one: unused)."""
    net = DEAD_NET if host_class(shape, n) == "refused" else LISTEN_NET
    return f"{net}{1 + n % shape.addresses}"


def healthy_near(shape: Shape, n: int) -> int:
    """The first healthy host after n (redirect and link targets)."""
    m = (n + 1) % shape.hosts
    while host_class(shape, m) != "healthy":
        m = (m + 1) % shape.hosts
    return m


@dataclass(frozen=True, kw_only=True)
class Ports:
    http: int
    https: int


def base_url(shape: Shape, ports: Ports, n: int) -> str:
    if host_class(shape, n) == "tls":
        return f"https://{host_name(n)}:{ports.https}"
    return f"http://{host_name(n)}:{ports.http}"


# --------------------------------------------------------------------------- seeds


def _cap(shape: Shape, n: int) -> int:
    kind = host_class(shape, n)
    if kind == "throttle_hard":
        return 1
    return min(shape.max_per_host, shape.hostile_cap) if kind in HOSTILE else shape.max_per_host


def pages_per_host(shape: Shape) -> list[int]:
    """Seeds per host (index = host number): Zipf-like c / rank**zipf, clipped to [1, cap],
    with c chosen so they sum to `urls` (or as near as the caps allow). Ranks are a
    seeded shuffle of the hosts, so size does not follow host number or class."""
    ranks = list(range(shape.hosts))
    random.Random(shape.seed).shuffle(ranks)
    caps = [_cap(shape, n) for n in range(shape.hosts)]
    weights = [1.0 / (ranks[n] + 1) ** shape.zipf for n in range(shape.hosts)]

    def counts(c: float) -> list[int]:
        return [max(1, min(caps[n], round(c * weights[n]))) for n in range(shape.hosts)]

    low, high = 0.0, float(shape.urls) * shape.hosts
    for _ in range(60):
        mid = (low + high) / 2
        if sum(counts(mid)) < shape.urls:
            low = mid
        else:
            high = mid
    out = counts(high)
    extra = sum(out) - shape.urls  # rounding: take the excess from the smallest hosts
    for n in sorted(range(shape.hosts), key=lambda n: -ranks[n]):
        if extra <= 0:
            break
        if out[n] > 1:
            out[n] -= 1
            extra -= 1
    return out


def seed_urls(shape: Shape, ports: Ports) -> list[str]:
    """Every seed, shuffled (seeded): /p0 .. /p{k-1} of each host."""
    urls = []
    for n, count in enumerate(pages_per_host(shape)):
        base = base_url(shape, ports, n)
        urls += [f"{base}/p{k}" for k in range(count)]
    random.Random(shape.seed + 1).shuffle(urls)
    return urls


def write_uniform_seeds(shape: Shape, ports: Ports, per_host: int, path: Path) -> int:
    """W2's frontier: `per_host` seeds (/p0 ...) for every host, streamed to `path` in a
    scattered order (a stride coprime with the count, not a shuffle held in RAM)."""
    total = shape.hosts * per_host
    stride = 7_919_993  # a prime: coprime with any total it does not divide
    while math.gcd(stride, total) != 1:
        stride += 2
    with path.open("w", encoding="utf-8") as handle:
        chunk: list[str] = []
        for i in range(total):
            j = i * stride % total
            n, k = divmod(j, per_host)
            chunk.append(f"{base_url(shape, ports, n)}/p{k}\n")
            if len(chunk) == 100_000:
                handle.writelines(chunk)
                chunk.clear()
        handle.writelines(chunk)
    return total


# --------------------------------------------------------------------------- oracle

DONE = frozenset({("done", None)})
# A host that never answers: its URLs fail with their own last reason, or with the host's
# once it is down ("host_down": true) - the same reason either way.
EXPECTED: dict[str, frozenset[tuple[str, str | None]]] = {
    "healthy": DONE,
    "slow": DONE,
    "tls": DONE,
    "cname": DONE,
    "dns_slow": DONE,
    "nxdomain": frozenset({("failed", "dns")}),
    "servfail": frozenset({("failed", "dns")}),
    "dns_silent": frozenset({("failed", "dns")}),
    "refused": frozenset({("failed", "connect")}),
    "stall": frozenset({("failed", "timeout"), ("failed", "deadline")}),
    "robots_5xx": frozenset({("failed", "robots_unavailable")}),
    "robots_stall": frozenset({("failed", "timeout"), ("failed", "deadline")}),
    "throttle": DONE,
    "throttle_hard": frozenset({("failed", "http_429")}),
    "flaky": DONE,
    "redirect": DONE,  # the 301 is the seed's result; its target gets a line of its own
    "big": DONE,
}


def url_host(url: str) -> int | None:
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    return host_number(netloc.rsplit(":", 1)[0])


def expected(shape: Shape, url: str) -> frozenset[tuple[str, str | None]]:
    """The (state, reason) pairs the crawler may record for a seed URL of this world."""
    n = url_host(url)
    if n is None:
        raise ValueError(f"not a world URL: {url}")
    return EXPECTED[host_class(shape, n)]
