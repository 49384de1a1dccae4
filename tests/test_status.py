"""Status: why each host's queued URLs wait, from what a real frontier database holds."""

from __future__ import annotations

import pytest

from crawler import status
from crawler.frontier import CommitBatch, RobotsRecord
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.frontier.values import HostState
from crawler.models import NewURL

NOW = 1_700_000_000.0


def _urls(host: str, n: int) -> list[NewURL]:
    return [NewURL(key=hash((host, i)), url=f"http://{host}/{i}", host=host) for i in range(n)]


@pytest.mark.anyio
async def test_status_says_why_each_hosts_urls_wait_and_until_when(
    frontier: SQLiteFrontier,
) -> None:
    hosts = {
        "dead.example": 7,
        "limited.example": 6,
        "probing.example": 5,
        "robots.example": 4,
        "slowed.example": 3,
        "fine.example": 2,
        "gone.example": 1,
    }
    for host, n in hosts.items():
        await frontier.add(_urls(host, n))
    await frontier.commit(
        CommitBatch(
            hosts=[
                HostState("dead.example", 0.5, 0.0, 5, NOW + 3600, "dns"),
                HostState("limited.example", 1.0, NOW + 120, 0, 0.0, None),
                HostState("probing.example", 1.0, NOW + 8, 3, 0.0, None),
                HostState("slowed.example", 2.0, 0.0, 0, 0.0, None),
                HostState("gone.example", 1.0, NOW + 900, 0, NOW + 900, "http_429"),
            ]
        )
    )
    await frontier.save_robots(RobotsRecord("robots.example", None, 503, NOW + 60, NOW - 60))

    report = status.as_dict(await frontier.counts(top_hosts=10), now=NOW)

    waiting = {w["host"]: (w["queued"], w["why"], w["until"]) for w in report["waiting"]}
    assert waiting == {
        "dead.example": (7, "down: dns", "2023-11-14T23:13:20.000Z"),
        "limited.example": (6, "Retry-After", "2023-11-14T22:15:20.000Z"),
        "probing.example": (5, "probing after 3 failures", "2023-11-14T22:13:28.000Z"),
        "robots.example": (4, "robots.txt failing", "2023-11-14T22:14:20.000Z"),
        "slowed.example": (3, "back-off level 2", None),
        "fine.example": (2, "delay", None),
        "gone.example": (
            1,
            "given up: http_429 (Retry-After past retry.max_wait)",
            "2023-11-14T22:28:20.000Z",
        ),
    }
    assert [w["host"] for w in report["waiting"]] == list(hosts)  # most queued first
    text = status.as_text(await frontier.counts(top_hosts=10), now=NOW)
    assert "why queued URLs wait" in text
    assert "down: dns (until 2023-11-14T23:13:20.000Z)" in text
