"""W2: the crawler with a big frontier. For each size, a world of size/K hosts with K seeds
each (every host healthy), and:

- `crawler seed --create`: wall time, URLs/s, peak RSS, database bytes per URL;
- `crawler status --json` on it: median wall time of 3;
- `crawler run` on it for a window: start to first request (as the world saw it), pages/s,
  requests/s, peak RSS of the process tree (sampled), SIGINT to exit;
- then SIGKILL of a run mid-crawl and the start to first request after it.

    .venv/bin/python bench/frontier_scale.py --sizes 100000,1000000,10000000 [--crawler EXE]

Figures go to stdout and `--out`/results.json. Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.world import RunningWorld, running_world


def world_stats(world: RunningWorld, path: str = "/") -> dict[str, float]:
    conn = http.client.HTTPConnection(world.info["addresses"][0], world.info["http_port"])
    conn.request("GET", path, headers={"Host": "stats"})
    stats: dict[str, float] = json.loads(conn.getresponse().read())
    conn.close()
    return stats


class TreeRSS:
    """Peak RSS (MB) of a process and its children, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.peak = 0.0
        self._proc = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                total = sum(p.memory_info().rss for p in procs)
            except psutil.Error:
                continue
            self.peak = max(self.peak, total / 2**20)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = TreeRSS(proc.pid)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    return wall, rss.stop(), subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def done_lines(data: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in (data / "index").glob("*.jsonl"):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                counts[json.loads(line)["state"]] += 1
    return counts


def crawl_window(
    args: argparse.Namespace, world: RunningWorld, data: Path, seconds: float, stop: int
) -> dict[str, Any]:
    """`crawler run` on `data` for `seconds`, then signal `stop`."""
    world_stats(world, "/reset")
    before = done_lines(data)
    cmd = [args.crawler, "run", "--data-dir", str(data), "--config", str(world.config)]
    cmd += ["--set", f"fetch.concurrency={args.concurrency}", "--set", 'log.level="warning"']
    started_wall, started = time.time(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rss = TreeRSS(proc.pid)
    first = 0.0
    while time.monotonic() - started < seconds and proc.poll() is None:
        if not first:
            first = world_stats(world)["first_at"]
        time.sleep(0.05)
    stats = world_stats(world)
    signalled = time.monotonic()
    proc.send_signal(stop)
    _, err = proc.communicate()
    exit_s = time.monotonic() - signalled
    after = done_lines(data)
    done = after["done"] - before["done"]
    return {
        "first_request_s": round(first - started_wall, 2) if first else None,
        "pages_per_s": round(done / seconds, 1),
        "requests_per_s": round(stats["requests"] / seconds, 1),
        "rss_mb": round(rss.stop()),
        "exit_s": round(exit_s, 2),
        "exit_code": proc.returncode,
        "stderr": err.decode(errors="replace")[-600:] if proc.returncode not in (0, -9) else "",
    }


def one_size(args: argparse.Namespace, urls: int) -> dict[str, Any]:
    hosts = urls // args.per_host
    out = args.out / f"world-{urls}"
    out.mkdir(parents=True, exist_ok=True)
    shape = ["--hosts", str(hosts), "--seeds-per-host", str(args.per_host), "--healthy-only"]
    with running_world(out, *shape, timeout=1800) as world:
        data = args.out / f"crawl-{urls}"
        subprocess.run(["rm", "-rf", str(data)], check=True)
        wall, rss, seeded = timed(
            [args.crawler, "seed", "--create", "--data-dir", str(data), str(world.seeds)]
        )
        db = sum(p.stat().st_size for p in data.glob("crawl.db*"))
        row: dict[str, Any] = {
            "urls": urls,
            "hosts": hosts,
            "seed_s": round(wall, 1),
            "seed_urls_per_s": round(urls / wall),
            "seed_rss_mb": round(rss),
            "seed_exit": seeded.returncode,
            "db_bytes_per_url": round(db / urls, 1),
        }
        status = [timed([args.crawler, "status", "--data-dir", str(data), "--json"]) for _ in "abc"]
        row["status_s"] = round(statistics.median(w for w, _, _ in status), 2)
        row["status_rss_mb"] = round(max(r for _, r, _ in status))
        row["status_total"] = json.loads(status[0][2].stdout or "{}").get("total")
        row["window"] = crawl_window(args, world, data, args.window, signal.SIGINT)
        row["killed"] = crawl_window(args, world, data, args.kill_after, signal.SIGKILL)
        row["after_kill"] = crawl_window(args, world, data, 10.0, signal.SIGINT)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(data)], check=True)
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000,10000000", help="URLs, comma-separated")
    p.add_argument("--per-host", type=int, default=10, help="seeds per host")
    p.add_argument("--window", type=float, default=60.0, help="seconds of crawling measured")
    p.add_argument("--kill-after", type=float, default=20.0, help="SIGKILL a run after this")
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--crawler", default=str(Path(sys.executable).parent / "crawler"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "w2")
    p.add_argument("--keep", action="store_true", help="keep the crawlers' data directories")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [one_size(args, int(size)) for size in args.sizes.split(",")]
    (args.out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
