"""The internet in a box: a synthetic world of hosts (DNS + HTTP(S) on loopback) to crawl.

    shape.py   host classes, the seed list (Zipf-like URLs per host), the expected() oracle
    dns.py     the DNS server (UDP, a process of its own)
    web.py     the HTTP(S) server (asyncio, routing by Host)
    limit.py   the world's own limit: requests/s to a bare keep-alive client
    box.py     both servers in one process, and the files a crawler needs
    __main__   `python -m bench.world --hosts H --urls N --out DIR`

`start_world()` runs it as a child process and returns once it answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.world.shape import CLASSES, EXPECTED, Shape, expected, host_class, seed_urls, url_host

__all__ = [
    "CLASSES",
    "EXPECTED",
    "RunningWorld",
    "Shape",
    "expected",
    "host_class",
    "running_world",
    "seed_urls",
    "url_host",
]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningWorld:
    shape: Shape
    info: dict[str, Any]  # world.json
    out: Path

    @property
    def seeds(self) -> Path:
        return self.out / "seeds.txt"

    @property
    def config(self) -> Path:
        return self.out / "crawler.toml"


@contextmanager
def running_world(
    out: Path, *args: str, timeout: float = 120.0, limit: bool = False
) -> Iterator[RunningWorld]:
    """`python -m bench.world --out OUT ARGS...` as a child; yields once world.json is
    written (the world answers), stops it (SIGTERM) on exit."""
    (out / "world.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.world", "--out", str(out), *args]
    if not limit:
        cmd.append("--no-limit")
    log = open(out.parent / f"{out.name}-world.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not (out / "world.json").exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the world exited with {proc.returncode}: see {log.name}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the world did not start in {timeout:g}s: see {log.name}")
            time.sleep(0.05)
        info = json.loads((out / "world.json").read_text(encoding="utf-8"))
        yield RunningWorld(Shape(**info["shape"]), info, out)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
