"""The world's own limit: requests/s its HTTP server serves to a trivial keep-alive client.

`measure_limit()` runs the client in a child process (so it does not share a GIL with the
server) over plain-HTTP healthy hosts, `connections` keep-alive connections for `seconds`,
and returns the responses per second. Every crawler figure is printed next to it: no
crawler can go faster than the world it crawls.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251  (a bench client, like the world's server: see web.py)
import json
import subprocess
import sys
import time
from dataclasses import asdict

from bench.world.shape import Ports, Shape, address, host_class, host_name


def _targets(shape: Shape, count: int) -> list[tuple[str, str]]:
    """(address, Host header) of up to `count` healthy plain-HTTP hosts."""
    found = []
    for n in range(shape.hosts):
        if host_class(shape, n) == "healthy":
            found.append((address(shape, n), host_name(n)))
            if len(found) == count:
                break
    return found


async def _client(
    target: tuple[str, str], port: int, until: float, counts: list[int], k: int
) -> None:
    ip, name = target
    reader, writer = await asyncio.open_connection(ip, port)
    request = f"GET /p{k} HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n".encode()
    try:
        while time.perf_counter() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts[0] += 1
    finally:
        writer.close()


async def _run(shape: Shape, port: int, seconds: float, connections: int) -> float:
    targets = _targets(shape, connections)
    counts = [0]
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_client(targets[i % len(targets)], port, until, counts, i) for i in range(connections))
    )
    return counts[0] / (time.perf_counter() - started)


def measure_limit(shape: Shape, ports: Ports, seconds: float = 3.0, connections: int = 32) -> float:
    """Responses/s of the world's HTTP server to a bare client in its own process."""
    cmd = [sys.executable, "-m", "bench.world.limit", "--port", str(ports.http)]
    cmd += ["--shape", json.dumps(asdict(shape))]
    cmd += ["--seconds", str(seconds), "--connections", str(connections)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return float(json.loads(done.stdout)["requests_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--shape", required=True, help="the world's Shape as JSON")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    shape = Shape(**json.loads(args.shape))
    rate = asyncio.run(_run(shape, args.port, args.seconds, args.connections))
    print(json.dumps({"requests_per_s": rate}))


if __name__ == "__main__":
    main()
