"""Tests for crawler/retry.py: Retry-After parsing, the retry policy, the short in-place retry."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from crawler import errors
from crawler.errors import ConnectFailed
from crawler.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    Verdict,
    parse_retry_after,
    retry_in_place,
)
from crawler.settings import RetrySettings

NOW = 1_700_000_000.0


def _policy(rng: Callable[[], float] = lambda: 1.0, **settings: Any) -> RetryPolicy:
    return RetryPolicy(RetrySettings(**settings), rng=rng)


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 30 ", 30.0), ("007", 7.0), ("86400", 86400.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after(_http_date(NOW + 90), NOW) == pytest.approx(90.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", NOW) == pytest.approx(120.0)
    # a numeric UTC offset is as good as GMT
    assert parse_retry_after("Tue, 14 Nov 2023 23:15:20 +0100", NOW) == pytest.approx(120.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(_http_date(NOW - 3600), NOW) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",
        "1.5",
        "+10",
        "1e3",
        "0x10",
        "Tue, 99 Nov 2023 25:61:00 GMT",
        "Tue, 14 Nov 2023",
    ],
)
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_naive_date_is_none() -> None:
    # "-0000" means "no time zone information" (RFC 2822): parsedate_to_datetime gives a naive
    # datetime that cannot be placed on the clock
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 -0000", NOW) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "\uff11\uff10"])
def test_retry_after_non_ascii_digits_are_none(value: str) -> None:
    # regression: str.isdigit() accepts these but float() rejects some ("²" raised ValueError)
    assert parse_retry_after(value, NOW) is None


def test_for_status_survives_a_hostile_retry_after() -> None:
    # "Retry-After: \xb2" decoded as latin-1 is "²": ignored, back-off used instead
    verdict = _policy(rng=lambda: 1.0, backoff_base=2.0).for_status(503, "\u00b2", 1, NOW)
    assert verdict == Verdict(True, NOW + 2.0)


# -- for_status -------------------------------------------------------------------------------


def test_retryable_statuses() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_retryable_status_defers(status: int) -> None:
    verdict = _policy().for_status(status, None, attempts=1, now=NOW)
    assert verdict.retry is True
    assert verdict.not_before > NOW


@pytest.mark.parametrize("status", [200, 204, 301, 302, 304, 400, 401, 403, 404, 410, 501, 505])
def test_other_statuses_are_final(status: int) -> None:
    assert _policy().for_status(status, "10", attempts=1, now=NOW) == Verdict(retry=False)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_last_attempt_is_final(status: int) -> None:
    policy = _policy(max_attempts=3)
    assert policy.for_status(status, None, attempts=2, now=NOW).retry is True
    assert policy.for_status(status, None, attempts=3, now=NOW).retry is False
    assert policy.for_status(status, "5", attempts=4, now=NOW).retry is False


def test_single_attempt_never_retries() -> None:
    policy = _policy(max_attempts=1)
    assert policy.for_status(503, None, attempts=1, now=NOW).retry is False
    assert policy.for_error(errors.ConnectFailed("x"), attempts=1, now=NOW).retry is False


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_on_429_and_503(status: int) -> None:
    policy = _policy(backoff_base=2.0)
    assert policy.for_status(status, "120", 1, NOW) == Verdict(True, NOW + 120)
    date = _http_date(NOW + 300)
    assert policy.for_status(status, date, 1, NOW).not_before == pytest.approx(NOW + 300)
    # a date in the past means "now"
    assert policy.for_status(status, _http_date(NOW - 60), 1, NOW) == Verdict(True, NOW)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_capped_by_max_retry_after(status: int) -> None:
    policy = _policy(max_retry_after=600.0, max_wait=3600.0)
    assert policy.for_status(status, "86400", 1, NOW) == Verdict(True, NOW + 600)
    far = _http_date(NOW + 10 * 86400)
    assert policy.for_status(status, far, 1, NOW) == Verdict(True, NOW + 600)


@pytest.mark.parametrize("status", [429, 503])
def test_a_wait_past_max_wait_is_final_with_defaults(status: int) -> None:
    """With default settings no URL waits longer than retry.max_wait (300 s) at once."""
    policy = _policy()
    assert policy.for_status(status, "300", 1, NOW) == Verdict(True, NOW + 300)
    assert policy.for_status(status, "301", 1, NOW) == Verdict(False)
    assert policy.for_status(status, "86400", 1, NOW) == Verdict(False)
    long_backoff = _policy(backoff_base=400.0, max_attempts=5)
    assert long_backoff.for_error(ConnectFailed("x"), 1, NOW) == Verdict(False)


@pytest.mark.parametrize("status", [429, 503])
def test_unparsable_retry_after_falls_back_to_backoff(status: int) -> None:
    policy = _policy(rng=lambda: 1.0, backoff_base=7.0)
    assert policy.for_status(status, "later please", 1, NOW) == Verdict(True, NOW + 7.0)


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_retry_after_is_ignored_on_other_statuses(status: int) -> None:
    policy = _policy(rng=lambda: 1.0, backoff_base=2.0)
    assert policy.for_status(status, "3000", 1, NOW) == Verdict(True, NOW + 2.0)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = _policy(rng=lambda: 1.0, backoff_base=2.0, backoff_max=20.0, max_attempts=100)
    assert [policy.backoff(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    waits = [policy.for_status(500, None, n, NOW).not_before - NOW for n in range(1, 7)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_backoff_jitter_is_within_half_and_full_ceiling() -> None:
    draws = iter([0.0, 0.5, 0.999999, 0.25])
    policy = _policy(rng=lambda: next(draws), backoff_base=10.0, backoff_max=1000.0)
    assert policy.backoff(1) == 5.0  # rng 0 -> ceiling / 2
    assert policy.backoff(1) == 7.5
    assert policy.backoff(1) == pytest.approx(10.0)
    assert policy.backoff(2) == 12.5  # ceiling 20, rng 0.25


def test_backoff_jitter_bounds_with_a_real_rng() -> None:
    rng = random.Random(42)
    policy = RetryPolicy(RetrySettings(backoff_base=3.0, backoff_max=50.0), rng=rng.random)
    for attempts in range(1, 10):
        ceiling = min(50.0, 3.0 * 2 ** (attempts - 1))
        for _ in range(50):
            assert ceiling / 2 <= policy.backoff(attempts) <= ceiling


def test_zero_backoff() -> None:
    policy = _policy(backoff_base=0.0)
    assert policy.for_status(503, None, 1, NOW) == Verdict(True, NOW)


def test_max_attempts_property() -> None:
    assert _policy(max_attempts=5).max_attempts == 5


# -- for_error --------------------------------------------------------------------------------

RETRYABLE_ERRORS = [
    errors.DnsError,
    errors.ConnectFailed,
    errors.FetchTimeout,
    errors.DeadlineExceeded,
    errors.ConnectionLost,
    errors.ProtocolError,
    errors.TLSFailed,
]
FINAL_ERRORS = [errors.BlockedAddress, errors.BadContentEncoding, errors.InvalidURL]


@pytest.mark.parametrize("error", RETRYABLE_ERRORS)
def test_retryable_errors_defer_with_backoff(error: type[errors.FetchError]) -> None:
    policy = _policy(rng=lambda: 0.0, backoff_base=4.0, max_attempts=3)
    assert policy.for_error(error("boom"), 1, NOW) == Verdict(True, NOW + 2.0)
    assert policy.for_error(error("boom"), 2, NOW) == Verdict(True, NOW + 4.0)
    assert policy.for_error(error("boom"), 3, NOW) == Verdict(False)


@pytest.mark.parametrize("error", [*FINAL_ERRORS, errors.FetchError, errors.FinalFetchError])
def test_final_errors_never_retry(error: type[errors.FetchError]) -> None:
    assert _policy(max_attempts=10).for_error(error("boom"), 1, NOW) == Verdict(False)


# -- retry_in_place ---------------------------------------------------------------------------


class _Flaky:
    """Fails with the given errors in order, then returns "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def _always(_exc: BaseException) -> bool:
    return True


@pytest.mark.anyio
async def test_retry_in_place_succeeds_on_the_second_try() -> None:
    attempt = _Flaky(errors.ConnectionLost("reset"))
    waits: list[int] = []

    def wait() -> float:
        waits.append(1)
        return 0.0

    assert await retry_in_place(attempt, _always, wait, tries=2) == "ok"
    assert attempt.calls == 2
    assert waits == [1]


@pytest.mark.anyio
async def test_retry_in_place_first_success_is_not_retried() -> None:
    attempt = _Flaky()
    assert await retry_in_place(attempt, _always, lambda: 0.0) == "ok"
    assert attempt.calls == 1


@pytest.mark.anyio
@pytest.mark.parametrize("tries", [1, 2, 3])
async def test_retry_in_place_runs_at_most_tries_and_reraises_the_last(tries: int) -> None:
    failures = [errors.ConnectionLost(f"reset {i}") for i in range(5)]
    attempt = _Flaky(*failures)
    with pytest.raises(errors.ConnectionLost, match=f"^reset {tries - 1}$") as info:
        await retry_in_place(attempt, _always, lambda: 0.0, tries=tries)
    assert info.value is failures[tries - 1]
    assert attempt.calls == tries


@pytest.mark.anyio
async def test_retry_in_place_does_not_retry_when_told_not_to() -> None:
    attempt = _Flaky(errors.ConnectFailed("refused"), errors.ConnectFailed("again"))
    seen: list[BaseException] = []

    def should_retry(exc: BaseException) -> bool:
        seen.append(exc)
        return False

    with pytest.raises(errors.ConnectFailed, match="refused"):
        await retry_in_place(attempt, should_retry, lambda: 0.0, tries=5)
    assert attempt.calls == 1
    assert len(seen) == 1


@pytest.mark.anyio
async def test_retry_in_place_asks_should_retry_about_each_error() -> None:
    lost, timeout = errors.ConnectionLost("reset"), errors.FetchTimeout("slow")
    attempt = _Flaky(lost, timeout)

    def only_resets(exc: BaseException) -> bool:
        return isinstance(exc, errors.ConnectionLost)

    with pytest.raises(errors.FetchTimeout) as info:
        await retry_in_place(attempt, only_resets, lambda: 0.0, tries=5)
    assert info.value is timeout
    assert attempt.calls == 2


@pytest.mark.anyio
async def test_retry_in_place_pauses_for_wait_before_retrying() -> None:
    attempt = _Flaky(errors.ConnectionLost("reset"))
    start = anyio.current_time()
    assert await retry_in_place(attempt, _always, lambda: 0.05, tries=2) == "ok"
    assert anyio.current_time() - start >= 0.05
