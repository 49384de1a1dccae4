"""A frontier's report, in SQL both backends run: URLs by state and reason, the biggest
hosts, the waiting ones (from the `tallies` and `host_urls` tables both keep)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from crawler.frontier.values import (
    VISIT_KINDS,
    Counts,
    HostControl,
    HostCounts,
    HostRow,
    HostState,
    HostWait,
    State,
)

# The hosts with most queued URLs (host_urls, migration 0010: an index read), the earliest
# start among them (urls_host_ready: one seek per host), and what their host and robots.txt
# rows say.
_WAITING = (
    "SELECT q.host, q.queued,"
    " (SELECT min(not_before) FROM urls WHERE host = q.host AND state = 'queued'),"
    " coalesce(h.level, 0), coalesce(h.blocked_until, 0),"
    " coalesce(h.failures, 0), coalesce(h.down_until, 0), h.down_reason,"
    " CASE WHEN r.failing_since IS NULL THEN NULL ELSE r.expires_at END"
    " FROM (SELECT host, queued FROM host_urls WHERE queued > 0"
    " ORDER BY queued DESC, host LIMIT ?) AS q"
    " LEFT JOIN hosts AS h ON h.host = q.host LEFT JOIN robots AS r ON r.host = q.host"
    " ORDER BY q.queued DESC, q.host"
)
# The hosts with most URLs, by state in the order of `State` (host_urls: an index read).
_HOSTS = (
    "SELECT host, total, queued, leased, done, failed, skipped FROM host_urls"
    " ORDER BY total DESC, host LIMIT ?"
)


class Query(Protocol):
    """One read of the frontier, with `?` placeholders (errors translated by the backend)."""

    async def __call__(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]: ...


_TALLIES = "SELECT state, reason, n FROM tallies WHERE n != 0"
_VISITS = "SELECT kind, sum(n) FROM visits GROUP BY kind"  # (PostgreSQL's are sharded)


async def counts(query: Query, top_hosts: int, tallies: str = _TALLIES) -> Counts:
    """`Frontier.counts`: one read for each part of the report; `tallies` reads the URLs
    by (state, reason, n)."""
    states = {s.value: 0 for s in State}
    reasons: dict[str, int] = {}
    # Kept by every change (migration 0009): a few rows, whatever the size of the frontier.
    for state, reason, n in await query(tallies):
        states[str(state)] = states.get(str(state), 0) + int(n)
        if state in ("failed", "skipped"):
            reasons[str(reason)] = reasons.get(str(reason), 0) + int(n)
    reasons = dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
    hosts = [] if not top_hosts else await _hosts(query, top_hosts)
    waiting = (
        [] if not top_hosts else [HostWait(*row) for row in await query(_WAITING, (top_hosts,))]
    )
    visits = dict.fromkeys(VISIT_KINDS, 0)
    for kind, n in await query(_VISITS):
        visits[str(kind)] = int(n)
    return Counts(
        total=sum(states.values()),
        states=states,
        reasons=reasons,
        hosts=hosts,
        waiting=waiting,
        visits=visits,
    )


async def _hosts(query: Query, top_hosts: int) -> list[HostCounts]:
    """The `top_hosts` hosts with most URLs, with their URLs by state."""
    return [
        HostCounts(
            host=str(row[0]),
            total=int(row[1]),
            states={s.value: int(n) for s, n in zip(State, row[2:], strict=True)},
        )
        for row in await query(_HOSTS, (top_hosts,))
    ]


# The console's host table: a host's URLs by state (host_urls), its saved pace and health
# (hosts) and what the operator set (host_controls), one row per host.
_HOST_ROWS = (
    "SELECT u.host, u.total, u.queued, u.leased, u.done, u.failed, u.skipped,"
    " coalesce(h.level, 0), coalesce(h.blocked_until, 0), coalesce(h.failures, 0),"
    " coalesce(h.down_until, 0), h.down_reason,"
    " coalesce(c.paused, {false}), c.blocked_until, c.delay, c.concurrency"
    " FROM {matched}host_urls AS u{on} LEFT JOIN hosts AS h ON h.host = u.host"
    " LEFT JOIN host_controls AS c ON c.host = u.host"
)
_MATCHED = "WITH m AS MATERIALIZED (SELECT host FROM host_urls WHERE host LIKE ? ESCAPE '\\') "
SORTS = {"queued": "u.queued", "done": "u.done", "errors": "u.failed", "total": "u.total"}


async def host_rows(
    query: Query,
    *,
    sort: str = "queued",
    q: str = "",
    limit: int = 50,
    offset: int = 0,
    hosts: Sequence[str] | None = None,
    false: str = "0",
) -> list[HostRow]:
    """A page of the host table: sorted by `sort` (most first, then by name), the hosts
    whose name holds `q`, or exactly `hosts` (in that order). `false`: the backend's
    spelling of false."""
    # A filter reads every host name anyway: the names that match first (an index holds
    # them all), then their rows. Read with the rows, the names took 1-2 s at 1M hosts.
    matched = _MATCHED if q else ""
    sql = matched + _HOST_ROWS.format(
        false=false, matched="m JOIN " if q else "", on=" ON u.host = m.host" if q else ""
    )
    if hosts is not None:
        if not hosts:
            return []
        marks = ", ".join("?" * len(hosts))
        listed = await query(f"{sql} WHERE u.host IN ({marks})", list(hosts))
        found = {str(row[0]): _host_row(row) for row in listed}
        return await with_reasons(query, [found[h] for h in hosts if h in found])
    params: list[Any] = []
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append(f"%{escaped}%")
    sql += f" ORDER BY {SORTS[sort]} DESC, u.host LIMIT ? OFFSET ?"
    page = [_host_row(row) for row in await query(sql, [*params, limit, offset])]
    return await with_reasons(query, page)


# Failed and skipped URLs of these hosts by reason (urls_host_reasons, migration 0012: an
# index range per host).
_HOST_REASONS = (
    "SELECT host, state, coalesce(reason, ''), count(*) FROM urls"
    " WHERE host IN ({marks}) AND state IN ('failed', 'skipped') GROUP BY host, state, reason"
)


async def with_reasons(query: Query, rows: list[HostRow]) -> list[HostRow]:
    """`rows` with their failed and skipped URLs counted by reason."""
    if not rows:
        return rows
    marks = ", ".join("?" * len(rows))
    found: dict[str, dict[str, dict[str, int]]] = {}
    for host, state, reason, n in await query(
        _HOST_REASONS.format(marks=marks), [r.host for r in rows]
    ):
        found.setdefault(str(host), {}).setdefault(str(state), {})[str(reason)] = int(n)
    return [replace(row, reasons=found.get(row.host, {})) for row in rows]


def _host_row(row: Sequence[Any]) -> HostRow:
    return HostRow(
        host=str(row[0]),
        states={s.value: int(n) for s, n in zip(State, row[2:7], strict=True)},
        total=int(row[1]),
        pace=HostState(str(row[0]), float(row[7]), float(row[8]), int(row[9]), float(row[10]),
                       None if row[11] is None else str(row[11])),
        control=HostControl(str(row[0]), bool(row[12]), row[13], row[14], row[15]),
    )  # fmt: skip
