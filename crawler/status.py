"""Status report: counts by state and reason and the busiest hosts, as text or JSON."""

from __future__ import annotations

import json
from typing import Any

from crawler.frontier import Counts


def as_dict(counts: Counts) -> dict[str, Any]:
    return {
        "total": counts.total,
        "states": counts.states,
        "reasons": counts.reasons,
        "hosts": [{"host": h.host, "total": h.total, **h.states} for h in counts.hosts],
    }


def as_json(counts: Counts) -> str:
    return json.dumps(as_dict(counts), indent=None)


def as_text(counts: Counts) -> str:
    lines = [f"total     {counts.total}"]
    lines += [f"{state:<9} {n}" for state, n in counts.states.items()]
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
    return "\n".join(lines)
