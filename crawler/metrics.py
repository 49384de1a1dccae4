"""Metrics: attempt outcomes, bytes, latency and queue depth in the Prometheus text format.

Every label takes a bounded set of values (outcomes, reasons, status codes, states, the top
hosts), never a URL: a reason that is not a short identifier is counted as `other`.
"""

from __future__ import annotations

import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from crawler.frontier.values import Counts
from crawler.models import Outcome, State

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_REASON = re.compile(r"^[a-z0-9_]{1,40}$")
OTHER = "other"


def outcome_label(outcome: Outcome) -> str:
    """`done`, `failed`, `skipped`, or `retry` for an attempt deferred to the frontier."""
    return outcome.state.value if outcome.final else "retry"


def reason_label(reason: str | None) -> str:
    if reason is None:
        return "unknown"
    return reason if _REASON.match(reason) else OTHER


def status_code(outcome: Outcome) -> int | None:
    """The HTTP status this attempt received, if it received a response. A deferred 429 or
    503 has no response object left (it was closed) but keeps its status and `http_<code>`;
    other outcomes may carry the status of an earlier attempt, which is not counted again."""
    if outcome.response is not None:
        return outcome.response.status
    if outcome.status is not None and outcome.reason == f"http_{outcome.status}":
        return outcome.status
    return None


class Metrics:
    """The crawler's metrics, on a registry of their own (several can live in one process)."""

    def __init__(self, max_hosts: int = 20) -> None:
        self.registry = CollectorRegistry()
        self._max_hosts = max_hosts
        r = self.registry
        self._attempts = Counter(
            "crawler_attempts", "Finished fetch attempts by outcome.", ["outcome"], registry=r
        )
        self._failures = Counter(
            "crawler_failures",
            "Attempts that failed, were skipped or will be retried, by reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self._bytes = Counter(
            "crawler_received_bytes", "Response bytes received (as on the wire).", registry=r
        )
        self._responses = Counter(
            "crawler_responses", "HTTP responses by status code.", ["code"], registry=r
        )
        self._latency = Histogram(
            "crawler_fetch_duration_seconds",
            "Time from the start of an attempt to its outcome.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._inflight = Gauge("crawler_inflight", "Attempts in progress.", registry=r)
        self._queue = Gauge(
            "crawler_frontier_urls", "URLs in the frontier by state.", ["state"], registry=r
        )
        self._hosts = Gauge(
            "crawler_host_urls", "URLs in the frontier of the busiest hosts.", ["host"], registry=r
        )
        self._visits = Gauge(
            "crawler_visits",
            "Responses written since the crawl began (kind=visits), and the revisit records"
            " among them (kind=not_modified: a 304; kind=identical: a payload stored before).",
            ["kind"],
            registry=r,
        )
        for outcome in ("done", "failed", "skipped", "retry"):
            self._attempts.labels(outcome)  # present (at 0) from the start

    def record(self, outcome: Outcome) -> None:
        """Count one finished attempt (terminal or deferred). A URL only held back (its
        host's robots.txt fetched first or still unavailable) was not attempted: no count."""
        if not outcome.final and outcome.attempts == outcome.entry.attempts:
            return
        label = outcome_label(outcome)
        self._attempts.labels(label).inc()
        if label != State.DONE.value:
            self._failures.labels(label, reason_label(outcome.reason)).inc()
        if outcome.response is not None:
            self._bytes.inc(outcome.response.wire_bytes)
        code = status_code(outcome)
        if code is not None:
            self._responses.labels(str(code) if 100 <= code <= 599 else OTHER).inc()
        if outcome.response is not None or outcome.elapsed_ms > 0:  # else nothing was fetched
            self._latency.observe(outcome.elapsed_ms / 1000)

    def set_inflight(self, n: int) -> None:
        self._inflight.set(n)

    def set_frontier(self, counts: Counts) -> None:
        """Queue depth by state, and URLs of the top `max_hosts` hosts (others disappear)."""
        for state, n in counts.states.items():
            self._queue.labels(state).set(n)
        for kind, n in counts.visits.items():
            self._visits.labels(kind).set(n)
        self._hosts.clear()
        for host in sorted(counts.hosts, key=lambda h: -h.total)[: self._max_hosts]:
            self._hosts.labels(host.host).set(host.total)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
