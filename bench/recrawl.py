"""Recrawl benchmark (`bench/run.py --only recrawl`, issue 14): the bench corpus crawled
once in bulk mode (the same run as `--only crawler`), then every URL made due again with
`crawler seed --recrawl` (timed apart) and crawled again by `crawler run`. nginx serves the
corpus as static files with ETag and Last-Modified, so each recrawl request is conditional
and answered 304: stored as a server-not-modified revisit record, no body fetched, parsed
or compressed. Target: the recrawl at least 1.5x the first crawl's pages/s.

Every recrawl must leave one more index line per seed, each a "not_modified" revisit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from bench.run import (
    Run,
    _tail,
    bulk_settings,
    crawler_exe,
    describe,
    generate_corpus,
    measure,
    nginx_running,
    write_seeds,
)

TARGET_SPEEDUP = 1.5  # recrawl pages/s over the first crawl's


def _visits(data_dir: Path, volume: dict[str, Counter[str]] | None = None) -> Counter[str]:
    """Index lines (robots.txt's apart) by their `revisit`, "full" for none; with `volume`,
    also the body bytes received and the WARC bytes written for each."""
    found: Counter[str] = Counter()
    for path in sorted((data_dir / "index").glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if record.get("kind") != "robots" and record.get("state") == "done":
                    kind = record.get("revisit") or "full"
                    found[kind] += 1
                    if volume is not None:
                        volume["body"][kind] += record.get("length") or 0
                        volume["warc"][kind] += record.get("warc_length") or 0
    return found


def _round(args: argparse.Namespace, seeds_file: Path, pages: int, i: int) -> dict[str, Run]:
    data_dir = args.workdir / "runs" / f"recrawl-{i}"
    shutil.rmtree(data_dir, ignore_errors=True)
    exe, where = str(crawler_exe()), ["--data-dir", str(data_dir)]
    logs = args.workdir / "runs"
    first = measure(
        [exe, "run", *where, "--seeds", str(seeds_file), *bulk_settings(args), "--quiet"],
        logs / f"recrawl-first-{i}.log",
        args.timeout,
    )
    first.ok = first.exit_code == 0 and _visits(data_dir) == Counter({"full": pages})
    seed = measure(
        [exe, "seed", *where, "--recrawl", str(seeds_file), *bulk_settings(args)],
        logs / f"recrawl-seed-{i}.log",
        args.timeout,
    )
    seed.ok = seed.exit_code == 0
    again = measure(
        [exe, "run", *where, *bulk_settings(args), "--quiet"],
        logs / f"recrawl-again-{i}.log",
        args.timeout,
    )
    volume: dict[str, Counter[str]] = {"body": Counter(), "warc": Counter()}
    visits = _visits(data_dir, volume)
    again.detail = {"index": dict(visits), "bytes": {k: dict(v) for k, v in volume.items()}}
    again.ok = again.exit_code == 0 and visits == Counter({"full": pages, "not_modified": pages})
    for name, run in (("first", first), ("seed", seed), ("again", again)):
        if not run.ok:
            run.detail["log_tail"] = _tail(logs / f"recrawl-{name}-{i}.log")
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"first": first, "seed": seed, "recrawl": again}


def recrawl_benchmark(args: argparse.Namespace, results: dict[str, Any]) -> None:
    site = args.workdir / "site"
    generate_corpus(site, args.pages, args.hosts, args.port, args.seed)
    seeds_file = args.workdir / "seeds.txt"
    write_seeds(seeds_file, args.pages, args.hosts, args.port, args.seed)
    rounds: list[dict[str, Run]] = []
    with nginx_running(args.workdir, site, args.hosts, args.port, args.nginx_workers):
        for i in range(args.repeat):
            runs = _round(args, seeds_file, args.pages, i)
            for name, run in runs.items():
                pages = None if name == "seed" else args.pages
                print(f"recrawl round {i + 1}/{args.repeat}, {name}: {describe(run, pages)}")
                if not run.ok:
                    print(json.dumps(run.detail, indent=1)[:3000])
            rounds.append(runs)
    ok = all(run.ok for runs in rounds for run in runs.values())
    summary: dict[str, Any] = {"ok": ok, "target_speedup": TARGET_SPEEDUP, "rounds": []}
    for runs in rounds:
        summary["rounds"].append({name: run.__dict__ for name, run in runs.items()})
    if ok:
        for name in ("first", "seed", "recrawl"):
            walls = [runs[name].wall for runs in rounds]
            cpus = [runs[name].cpu for runs in rounds]
            summary[name] = {
                "wall_s": statistics.median(walls),
                "cpu_s": statistics.median(cpus),
                "rss_mb": statistics.median(runs[name].rss_mb for runs in rounds),
            }
            if name != "seed":
                summary[name]["pages_per_s"] = args.pages / statistics.median(walls)
                summary[name]["cpu_per_1000"] = statistics.median(cpus) / args.pages * 1000
        summary["speedup"] = summary["recrawl"]["pages_per_s"] / summary["first"]["pages_per_s"]
        summary["bytes"] = rounds[-1]["recrawl"].detail["bytes"]
    results["recrawl"] = summary


def print_recrawl(results: dict[str, Any]) -> None:
    summary = results["recrawl"]
    if not summary["ok"]:
        print("\nrecrawl: FAILED (see the runs above)")
        return
    first, again, seed = summary["first"], summary["recrawl"], summary["seed"]
    print("\nrecrawl (medians)")
    for label, row in (("first crawl", first), ("recrawl (304s)", again)):
        print(
            f"  {label:<16} {row['pages_per_s']:>7.0f} pages/s  {row['cpu_per_1000']:.2f}"
            f" CPU-s/1k  peak RSS {row['rss_mb']:.0f} MB"
        )
    print(f"  seed --recrawl   {seed['wall_s']:.1f} s wall, {seed['cpu_s']:.1f} CPU-s")
    volume = summary["bytes"]
    for what, label in (("body", "body bytes received"), ("warc", "WARC bytes written")):
        first_mb = volume[what].get("full", 0) / 2**20
        again_mb = volume[what].get("not_modified", 0) / 2**20
        print(f"  {label:<20} first {first_mb:8.1f} MiB  recrawl {again_mb:8.1f} MiB")
    verdict = "met" if summary["speedup"] >= TARGET_SPEEDUP else "NOT met"
    print(f"  speedup {summary['speedup']:.2f}x (target >= {TARGET_SPEEDUP}x: {verdict})")
