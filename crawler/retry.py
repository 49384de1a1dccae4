"""Retry policy: what a failed attempt means (retry in place, defer with back-off, or give up)."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from crawler.errors import FetchError, RetryableFetchError
from crawler.settings import RetrySettings

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class Verdict:
    """`retry` False: the attempt is final. True: defer until `not_before` (wall clock)."""

    retry: bool
    not_before: float = 0.0


class RetryPolicy:
    def __init__(self, settings: RetrySettings, rng: Callable[[], float] = random.random) -> None:
        self._settings = settings
        self._rng = rng

    @property
    def max_attempts(self) -> int:
        return self._settings.max_attempts

    def backoff(self, attempts: int) -> float:
        """Exponential back-off with jitter after `attempts` failed attempts (>= 1)."""
        growth = self._settings.backoff_base * 2.0 ** (attempts - 1)
        ceiling = min(self._settings.backoff_max, growth)
        return ceiling / 2 + self._rng() * ceiling / 2

    def for_status(
        self, status: int, retry_after: str | None, attempts: int, now: float
    ) -> Verdict:
        """A response with `status` after `attempts` attempts in all."""
        if status not in RETRYABLE_STATUSES or attempts >= self._settings.max_attempts:
            return Verdict(retry=False)
        wait = parse_retry_after(retry_after, now) if status in (429, 503) else None
        if wait is None:
            return self._later(now, self.backoff(attempts))
        return self._later(now, min(wait, self._settings.max_retry_after))

    def for_error(self, error: FetchError, attempts: int, now: float) -> Verdict:
        if not isinstance(error, RetryableFetchError) or attempts >= self._settings.max_attempts:
            return Verdict(retry=False)
        return self._later(now, self.backoff(attempts))

    def _later(self, now: float, wait: float) -> Verdict:
        """Retry after `wait` seconds, unless that is longer than a URL may wait at all."""
        if wait > self._settings.max_wait:
            return Verdict(retry=False)
        return Verdict(retry=True, not_before=now + wait)


async def retry_in_place(
    attempt: Callable[[], Awaitable[T]],
    should_retry: Callable[[BaseException], bool],
    wait: Callable[[], float],
    tries: int = 2,
) -> T:
    """Run `attempt`, running it again (at most `tries` in all) when `should_retry` says so.

    Used for the one short retry of a request that failed on a reused keep-alive
    connection; `wait` gives the seconds to pause first (politeness may ask for some).
    The first attempt runs bare: the common case costs nothing for the retry machinery.
    """
    try:
        return await attempt()
    except Exception as exc:
        if tries < 2 or not should_retry(exc):
            raise
    await anyio.sleep(wait())
    retrying = AsyncRetrying(
        stop=stop_after_attempt(tries - 1),
        retry=retry_if_exception(should_retry),
        wait=lambda _state: wait(),
        reraise=True,
    )
    return await retrying(attempt)
