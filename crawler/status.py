"""Status report: counts by state and reason and the busiest hosts, as text or JSON."""

from __future__ import annotations

import json
import time
from typing import Any

from crawler.frontier.values import Counts, HostWait, NodeCounts
from crawler.output.jsonl import rfc3339
from crawler.politeness import HOST_FAILURES


def why(wait: HostWait, now: float) -> tuple[str, float | None]:
    """Why a host's queued URLs are not being fetched now, and until when (None: the host
    is fetched at its pace; its URLs are waiting their turn)."""
    if wait.down_until > now:
        if wait.down_reason in HOST_FAILURES:
            return f"down: {wait.down_reason}", wait.down_until
        why = f"given up: {wait.down_reason} (Retry-After past retry.max_wait)"
        return why, wait.down_until
    if wait.robots_retry_at is not None and wait.robots_retry_at > now:
        return "robots.txt failing", wait.robots_retry_at
    if wait.blocked_until > now:
        if wait.failures:
            return f"probing after {wait.failures} failures", wait.blocked_until
        return "Retry-After", wait.blocked_until
    if wait.next_due > now:
        return "retry back-off", wait.next_due
    if wait.level > 0:
        return f"back-off level {wait.level:g}", None
    return "delay", None


def _waiting(counts: Counts, now: float) -> list[dict[str, Any]]:
    rows = []
    for wait in counts.waiting:
        reason, until = why(wait, now)
        rows.append(
            {
                "host": wait.host,
                "queued": wait.queued,
                "why": reason,
                "until": rfc3339(until) if until is not None else None,
            }
        )
    return rows


def as_dict(counts: Counts, now: float | None = None) -> dict[str, Any]:
    return {
        "total": counts.total,
        "states": counts.states,
        "reasons": counts.reasons,
        "visits": counts.visits,
        "hosts": [{"host": h.host, "total": h.total, **h.states} for h in counts.hosts],
        "waiting": _waiting(counts, time.time() if now is None else now),
        "nodes": [_node(n, time.time() if now is None else now) for n in counts.nodes],
    }


def _node(node: NodeCounts, now: float) -> dict[str, Any]:
    """A node's row: its last heartbeat, what it holds, its pages/s since it started."""
    running = max(node.beat_at - node.started_at, 1e-9)
    return {
        "node": node.name,
        "last_beat": rfc3339(node.beat_at),
        "seconds_since_beat": round(max(0.0, now - node.beat_at), 1),
        "leased": node.leased,
        "done": node.done,
        "pages_per_s": round(node.done / running, 1) if node.beat_at > node.started_at else 0.0,
    }


def as_json(counts: Counts, now: float | None = None) -> str:
    return json.dumps(as_dict(counts, now), indent=None)


def as_text(counts: Counts, now: float | None = None) -> str:
    lines = [f"total     {counts.total}"]
    lines += [f"{state:<9} {n}" for state, n in counts.states.items()]
    visits = counts.visits
    if visits.get("visits"):
        lines.append("")
        lines.append(
            f"visits    {visits['visits']} (revisits: {visits.get('not_modified', 0)} not"
            f" modified, {visits.get('identical', 0)} identical payload)"
        )
    if counts.reasons:
        lines.append("")
        lines.append("reasons (failed + skipped)")
        lines += [f"  {reason or '-':<24} {n}" for reason, n in counts.reasons.items()]
    if counts.hosts:
        lines.append("")
        lines.append(f"  {'host':<32} {'total':>8} {'done':>8} {'failed':>8} {'queued':>8}")
        for h in counts.hosts:
            lines.append(
                f"  {h.host[:32]:<32} {h.total:>8} {h.states['done']:>8}"
                f" {h.states['failed']:>8} {h.states['queued']:>8}"
            )
    now = time.time() if now is None else now
    if counts.nodes:
        lines.append("")
        lines.append(f"  {'node':<24} {'last beat':>12} {'leased':>8} {'done':>10} {'pages/s':>8}")
        for node in (_node(n, now) for n in counts.nodes):
            ago = f"{node['seconds_since_beat']:.1f}s ago"
            lines.append(
                f"  {node['node'][:24]:<24} {ago:>12} {node['leased']:>8} {node['done']:>10}"
                f" {node['pages_per_s']:>8}"
            )
    waiting = _waiting(counts, now)
    if waiting:
        lines.append("")
        lines.append("why queued URLs wait")
        lines.append(f"  {'host':<32} {'queued':>8}  why (until)")
        for w in waiting:
            until = f" (until {w['until']})" if w["until"] else ""
            lines.append(f"  {w['host'][:32]:<32} {w['queued']:>8}  {w['why']}{until}")
    return "\n".join(lines)
