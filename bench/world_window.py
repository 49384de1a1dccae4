"""Crawl a running world (`python -m bench.world --out DIR`) for a window of seconds, then
count what the crawl finished, by state and reason: the first minute of a crawl over many
hosts shows whether pages come early or only after every robots.txt.

    .venv/bin/python bench/world_window.py --world DIR --seconds 60 [--crawler EXE]

`--crawler` runs another build's `crawler` (e.g. an older checkout's .venv/bin/crawler) on
the same world, for side-by-side figures. Stopped with SIGINT after the window; the wall time
past the window is the shutdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True, help="the world's --out DIR")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--crawler", default=str(Path(sys.executable).parent / "crawler"))
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="world-window-"))
    cmd = [args.crawler, "run", "--data-dir", str(data / "crawl")]
    cmd += ["--seeds", str(args.world / "seeds.txt"), "--config", str(args.world / "crawler.toml")]
    cmd += ["--set", f"fetch.concurrency={args.concurrency}", "--set", 'log.level="warning"']
    started = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL) as proc:
        try:
            proc.wait(args.seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait()
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    counts: Counter[tuple[str, str | None]] = Counter()
    for path in (data / "crawl" / "index").glob("*.jsonl"):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                item = json.loads(line)
                counts[(item["state"], item["reason"])] += 1
    done = sum(n for (state, _), n in counts.items() if state == "done")
    print(
        f"{wall:.1f} s wall ({max(0.0, wall - args.seconds):.1f} s past the window),"
        f" {usage.ru_utime + usage.ru_stime:.1f} CPU-s, exit {proc.returncode}:"
        f" {sum(counts.values())} final, {done} done; {counts.most_common(8)}"
    )
    shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
