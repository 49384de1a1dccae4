"""The operator's console (issue 15): what the API says of each host, and what it may change.

A host here is a politeness key (`politeness.key`: the host by default). Its view joins
what the frontier keeps (URLs by state, the saved pace and health, the operator's controls)
with what this process knows (requests in flight, the delay in force and why, the next
start, its last fetch events).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from datetime import datetime
from importlib import resources
from typing import Any

from crawler.frontier.values import HostControl, HostRow
from crawler.models import Outcome
from crawler.output.jsonl import rfc3339

__all__ = [
    "CONTROL_KEYS",
    "BadChange",
    "HostEvents",
    "changed_control",
    "console_page",
    "host_view",
    "timestamp",
]

CONTROL_KEYS = ("paused", "blocked_until", "delay", "per_host_concurrency")
MAX_CONCURRENCY = 32  # per_host_concurrency the console may set (each origin's pool allows it)
EVENTS_PER_HOST = 50
EVENT_HOSTS = 2_000  # hosts whose events are kept (the most recently active ones)


def console_page() -> bytes:
    """The console's page: one HTML file with its script and styles, nothing fetched from
    elsewhere (crawler/static/console.html)."""
    return (resources.files("crawler") / "static" / "console.html").read_bytes()


_Event = tuple[str, float, str, int | None, str | None, int]


class HostEvents:
    """The last fetch events of the hosts most recently active (bounded in both ways)."""

    def __init__(self, per_host: int = EVENTS_PER_HOST, hosts: int = EVENT_HOSTS) -> None:
        self._per_host = per_host
        self._hosts = hosts
        # host -> (url, at, outcome, status, reason, ms) of its last events
        self._events: OrderedDict[str, deque[_Event]] = OrderedDict()

    def record(self, outcome: Outcome) -> None:
        """Note one outcome (on the commit path: a tuple now, the JSON when asked for)."""
        host = outcome.entry.host
        events = self._events.get(host)
        if events is None:
            events = self._events[host] = deque(maxlen=self._per_host)
            if len(self._events) > self._hosts:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(host)
        events.append(
            (
                outcome.entry.url,
                outcome.fetched_at or time.time(),
                outcome.state.value if outcome.final else "retry",
                outcome.status,
                outcome.reason,
                outcome.elapsed_ms,
            )
        )

    def of(self, host: str) -> list[dict[str, Any]]:
        """Newest first."""
        return [
            {"url": url, "at": rfc3339(at), "outcome": outcome, "status": status,
             "reason": reason, "ms": ms}
            for url, at, outcome, status, reason, ms in reversed(self._events.get(host, ()))
        ]  # fmt: skip

    def last_error(self, host: str) -> dict[str, Any] | None:
        """The newest event that failed or is to be retried (a skip is no error)."""
        for event in self.of(host):
            if event["outcome"] in ("failed", "retry"):
                return event
        return None


def timestamp(value: float | None) -> str | None:
    """A wall-clock time as RFC 3339 (None for none: unset, 0 or infinite)."""
    return None if value is None or value <= 0 or math.isinf(value) else rfc3339(value)


def host_view(
    row: HostRow, pace: dict[str, Any] | None, events: HostEvents, now: float
) -> dict[str, Any]:
    """A host as `GET /hosts` shows it. `pace` is the scheduler's view of it (None: not
    active in this process, its delay then what is configured or set)."""
    control, saved = row.control, row.pace
    live = pace or {}
    down = None
    if saved.down_until > now:
        down = {"reason": saved.down_reason, "until": timestamp(saved.down_until)}
    return {
        "host": row.host,
        "key": control.host,  # the politeness budget it draws on (politeness.key)
        "total": row.total,
        **row.states,
        "reasons": row.reasons,  # failed and skipped URLs by reason
        "in_flight": live.get("in_flight", 0),
        "buffered": live.get("buffered", 0),
        "delay": live.get("delay"),
        "delay_source": live.get("delay_source"),
        "backoff_level": live.get("backoff_level", saved.level),
        "retry_after_until": timestamp(max(saved.blocked_until, live.get("blocked_until", 0.0)))
        if max(saved.blocked_until, live.get("blocked_until", 0.0)) > now
        else None,
        "next_start": timestamp(live.get("next_start")),
        "down": down,
        "paused": control.paused,
        "blocked_until": timestamp(control.blocked_until),
        "held": control.holds(now),
        "operator_delay": control.delay,
        "per_host_concurrency": control.concurrency,
        "last_error": events.last_error(row.host),
    }


class BadChange(ValueError):
    """A PATCH /hosts body that cannot be applied; the message names the key."""


def changed_control(current: HostControl, change: Any) -> HostControl:
    """`current` with the keys of a PATCH body applied (null undoes one)."""
    if not isinstance(change, dict):
        raise BadChange("body must be a JSON object")
    unknown = sorted(set(change) - set(CONTROL_KEYS))
    if unknown:
        raise BadChange(f"unknown key {unknown[0]!r} (known: {', '.join(CONTROL_KEYS)})")
    control = current
    if "paused" in change:
        value = change["paused"]
        if value is not None and not isinstance(value, bool):
            raise BadChange("paused: must be true, false or null")
        control = _replace(control, paused=bool(value))
    if "blocked_until" in change:
        control = _replace(control, blocked_until=_when(change["blocked_until"]))
    if "delay" in change:
        control = _replace(control, delay=_number(change["delay"], "delay", 0.0, 86400.0))
    if "per_host_concurrency" in change:
        value = change["per_host_concurrency"]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON has one kind of number: 2.0 is 2
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_CONCURRENCY
        ):
            raise BadChange(
                f"per_host_concurrency: must be an integer from 1 to {MAX_CONCURRENCY}, or null"
            )
        control = _replace(control, concurrency=value)
    return control


def _replace(control: HostControl, **changes: Any) -> HostControl:
    fields = {
        "paused": control.paused,
        "blocked_until": control.blocked_until,
        "delay": control.delay,
        "concurrency": control.concurrency,
        **changes,
    }
    return HostControl(control.host, **fields)


def _number(value: Any, key: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadChange(f"{key}: must be a number of seconds from {low:g} to {high:g}, or null")
    return float(value)


def _when(value: Any) -> float | None:
    """A time: seconds since the epoch, or RFC 3339 with its offset (null: none)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadChange(f"blocked_until: {value!r} is not an RFC 3339 time") from None
        if moment.tzinfo is None:
            raise BadChange("blocked_until: an RFC 3339 time needs its offset (Z or +hh:mm)")
        return moment.timestamp()
    number = _number(value, "blocked_until", 0.0, 1e11)
    return number
