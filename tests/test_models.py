"""Value objects (crawler/models.py): an Outcome is built once and never changed."""

from __future__ import annotations

import dataclasses

import pytest

from crawler.models import Entry, Outcome, State


def _entry() -> Entry:
    return Entry(key=1, url="http://a.example/", host="a.example", attempts=2, status=503)


def test_an_outcome_is_immutable_and_keyword_only() -> None:
    outcome = Outcome.skipped(_entry(), attempts=2, reason="robots")
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.reason = "scope"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Outcome(_entry(), State.DONE, 1)  # type: ignore[misc]


def test_only_a_deferral_is_not_final() -> None:
    deferred = Outcome.deferred(_entry(), attempts=3, reason="timeout", not_before=5.0)
    assert (deferred.final, deferred.state, deferred.not_before) == (False, State.QUEUED, 5.0)
    failed = Outcome.failed(_entry(), attempts=3, reason="timeout")
    skipped = Outcome.skipped(_entry(), attempts=2, reason="robots")
    assert (failed.final, failed.state, skipped.final, skipped.state) == (
        True,
        State.FAILED,
        True,
        State.SKIPPED,
    )


@pytest.mark.parametrize(
    ("host_down", "message"), [(True, "host down"), (False, "host blocked too long")]
)
def test_given_up_fails_without_a_request_keeping_the_last_status(
    host_down: bool, message: str
) -> None:
    outcome = Outcome.given_up(_entry(), reason="dns", host_down=host_down)
    assert (outcome.state, outcome.reason, outcome.attempts, outcome.status) == (
        State.FAILED,
        "dns",
        2,
        503,
    )
    assert (outcome.host_down, outcome.message, outcome.response) == (host_down, message, None)


def test_unwritten_is_a_new_warc_error_failure() -> None:
    done = Outcome.failed(_entry(), attempts=1, reason="http_404", status=404)
    unwritten = done.unwritten("cannot write WARC record: boom")
    assert (unwritten.state, unwritten.reason, unwritten.message, unwritten.status) == (
        State.FAILED,
        "warc_error",
        "cannot write WARC record: boom",
        404,
    )
    assert (done.reason, done.message) == ("http_404", None)
