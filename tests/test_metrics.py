"""Tests for crawler/metrics.py: record outcomes, render, parse the exposition back."""

from __future__ import annotations

import io
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from crawler.frontier import Counts, HostCounts
from crawler.metrics import Metrics
from crawler.models import Entry, Outcome, Response, State
from crawler.urls import canonical, host_of, url_key

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _response(status: int = 200, wire_bytes: int = 100) -> Response:
    return Response(
        status=status,
        reason_phrase="",
        http_version="HTTP/1.1",
        headers=[("Content-Type", "text/html")],
        request_headers=[("Host", "a.example")],
        method="GET",
        target="/",
        body=io.BytesIO(b"x" * wire_bytes),
        wire_bytes=wire_bytes,
        decoded_bytes=wire_bytes,
        truncated=False,
    )


def _outcome(
    state: State = State.DONE,
    response: Response | None = None,
    **fields: Any,
) -> Outcome:
    url = "http://a.example/page"
    entry = Entry(key=url_key(canonical(url)), url=url, host=host_of(url))
    if response is not None:
        fields.setdefault("status", response.status)
    return Outcome(entry=entry, state=state, attempts=1, response=response, **fields)


def _samples(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE_LATEST  # "text/plain; version=...", by library version
    assert content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples of `name` by the value of its one `label`."""
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def test_attempts_bytes_codes_and_failures() -> None:
    metrics = Metrics()
    metrics.record(_outcome(response=_response(200, 1000), elapsed_ms=30))
    metrics.record(_outcome(response=_response(200, 234), elapsed_ms=80))
    metrics.record(_outcome(response=_response(404, 50), elapsed_ms=20))  # a result: done
    metrics.record(
        _outcome(State.FAILED, response=_response(500, 10), reason="http_500", elapsed_ms=5)
    )
    metrics.record(_outcome(State.FAILED, reason="timeout", elapsed_ms=30_000))
    # A deferred 503: its response was closed and dropped, its status and reason remain.
    metrics.record(_outcome(State.QUEUED, reason="http_503", status=503, elapsed_ms=12))
    # A deferred connection failure carries the status of an earlier attempt: not counted.
    metrics.record(_outcome(State.QUEUED, reason="connect", status=503, elapsed_ms=3))
    metrics.record(_outcome(State.SKIPPED, reason="robots"))  # nothing fetched: no latency
    samples = _samples(metrics)

    assert _get(samples, "crawler_attempts_total", outcome="done") == 3
    assert _get(samples, "crawler_attempts_total", outcome="failed") == 2
    assert _get(samples, "crawler_attempts_total", outcome="retry") == 2
    assert _get(samples, "crawler_attempts_total", outcome="skipped") == 1

    assert _get(samples, "crawler_failures_total", outcome="failed", reason="http_500") == 1
    assert _get(samples, "crawler_failures_total", outcome="failed", reason="timeout") == 1
    assert _get(samples, "crawler_failures_total", outcome="retry", reason="http_503") == 1
    assert _get(samples, "crawler_failures_total", outcome="retry", reason="connect") == 1
    assert _get(samples, "crawler_failures_total", outcome="skipped", reason="robots") == 1
    failures = [k for k in samples if k[0] == "crawler_failures_total"]
    assert len(failures) == 5  # done attempts have no reason

    assert _get(samples, "crawler_received_bytes_total") == 1000 + 234 + 50 + 10
    assert _by(samples, "crawler_responses_total", "code") == {
        "200": 2,
        "404": 1,
        "500": 1,
        "503": 1,
    }

    assert _get(samples, "crawler_fetch_duration_seconds_count") == 7
    assert _get(samples, "crawler_fetch_duration_seconds_sum") == pytest.approx(30.15)
    assert _get(samples, "crawler_fetch_duration_seconds_bucket", le="0.01") == 2
    assert _get(samples, "crawler_fetch_duration_seconds_bucket", le="0.05") == 5
    assert _get(samples, "crawler_fetch_duration_seconds_bucket", le="10.0") == 6
    assert _get(samples, "crawler_fetch_duration_seconds_bucket", le="30.0") == 7
    assert _get(samples, "crawler_fetch_duration_seconds_bucket", le="60.0") == 7


def test_a_fresh_registry_shows_every_outcome_at_zero() -> None:
    samples = _samples(Metrics())
    for outcome in ("done", "failed", "skipped", "retry"):
        assert _get(samples, "crawler_attempts_total", outcome=outcome) == 0
    assert _get(samples, "crawler_inflight") == 0
    assert _get(samples, "crawler_received_bytes_total") == 0


def test_unexpected_reasons_and_codes_become_other() -> None:
    metrics = Metrics()
    weird = [
        "Timeout",  # upper case
        "http://a.example/page",  # a URL must never become a label value
        "a" * 41,
        "",
        "dns error",
        "reason\nwith newline",
    ]
    for reason in weird:
        metrics.record(_outcome(State.FAILED, reason=reason))
    metrics.record(_outcome(State.FAILED, reason="a" * 40))
    metrics.record(_outcome(State.FAILED, reason=None))
    metrics.record(_outcome(response=_response(999)))
    samples = _samples(metrics)
    assert _by(samples, "crawler_failures_total", "reason") == {
        "other": len(weird),
        "a" * 40: 1,
        "unknown": 1,
    }
    assert _get(samples, "crawler_responses_total", code="other") == 1


def test_inflight_and_queue_depth() -> None:
    metrics = Metrics()
    metrics.set_inflight(7)
    metrics.set_frontier(
        Counts(
            total=10,
            states={"queued": 5, "leased": 2, "done": 2, "failed": 1, "skipped": 0},
            reasons={"timeout": 1},
            hosts=[HostCounts("a.example", 6, {}), HostCounts("b.example", 4, {})],
        )
    )
    samples = _samples(metrics)
    assert _get(samples, "crawler_inflight") == 7
    assert _get(samples, "crawler_frontier_urls", state="queued") == 5
    assert _get(samples, "crawler_frontier_urls", state="leased") == 2
    assert _get(samples, "crawler_frontier_urls", state="skipped") == 0
    assert _get(samples, "crawler_host_urls", host="a.example") == 6
    assert _get(samples, "crawler_host_urls", host="b.example") == 4
    metrics.set_inflight(0)
    assert _get(_samples(metrics), "crawler_inflight") == 0


def _hosts(samples: Samples) -> dict[str, float]:
    return _by(samples, "crawler_host_urls", "host")


def test_host_labels_stay_bounded() -> None:
    metrics = Metrics(max_hosts=5)
    states = {s.value: 0 for s in State}
    for round_ in range(50):
        hosts = [HostCounts(f"h{round_}-{i}.example", 100 - i, {}) for i in range(8)]
        metrics.set_frontier(Counts(total=0, states=states, reasons={}, hosts=hosts))
        assert len(_hosts(_samples(metrics))) == 5
    assert _hosts(_samples(metrics)) == {f"h49-{i}.example": 100 - i for i in range(5)}
    metrics.set_frontier(Counts(total=0, states=states, reasons={}, hosts=[]))
    assert _hosts(_samples(metrics)) == {}


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" if shared
    first.record(_outcome(response=_response()))
    assert _get(_samples(first), "crawler_attempts_total", outcome="done") == 1
    assert _get(_samples(second), "crawler_attempts_total", outcome="done") == 0
    assert "crawler_attempts" not in {family.name for family in REGISTRY.collect()}


def test_a_url_held_for_robots_txt_is_not_an_attempt() -> None:
    metrics = Metrics()
    url = "http://a.example/page"
    entry = Entry(key=url_key(canonical(url)), url=url, host=host_of(url), attempts=1)
    held = Outcome.deferred(entry, attempts=1, reason="robots_fetched", not_before=0.0)
    metrics.record(held)
    retried = Outcome.deferred(entry, attempts=2, reason="timeout", not_before=0.0)
    metrics.record(retried)
    samples = _samples(metrics)
    assert _by(samples, "crawler_attempts_total", "outcome")["retry"] == 1.0
    assert _get(samples, "crawler_failures_total", outcome="retry", reason="robots_fetched") is None
