"""Waiting in tests: poll until something holds, or fail saying what never happened.

Every wait of a test goes through `eventually` (or `eventually_async` inside an event loop),
so none can fall through silently when its time runs out: the failure names what was
awaited and the last value seen.

    eventually(lambda: s.max_in_flight, 10, "4 fetches in flight", until=lambda n: n >= 4)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

INTERVAL = 0.02  # seconds between polls


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"not within {timeout} s: {what} (last seen: {last!r})")


def eventually(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    until: Callable[[T], Any] = bool,
    interval: float = INTERVAL,
) -> T:
    """Call `probe` every `interval` seconds until `until(value)` is true (by default: the
    value itself is true); return that value. After `timeout` seconds, fail naming `what`
    and the last value seen. An exception from `probe` ends the wait at once."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    until: Callable[[T], Any] = bool,
    interval: float = INTERVAL,
) -> T:
    """`eventually` for a test running in an event loop: sleeps without blocking it."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, value)
        await anyio.sleep(interval)
