"""Scale-out benchmark (`bench/run.py --only scale-out`, issue 13): the bench corpus crawled
by 1, 2 and 4 `crawler run` nodes sharing one PostgreSQL frontier, beside one node on
SQLite (the same bulk run as `--only crawler`).

For each count of nodes: a new database, the seeds added with `crawler seed` (not timed),
then the nodes started together, each with its own data directory, and timed until the
last exits. Pages/s is over that wall time; CPU per 1,000 pages is given for the crawler
processes (from wait4) and for PostgreSQL (its processes, live and reaped) apart. Every run
must leave one "done" index line per seed across its nodes' directories, and nothing else.

On this 2-core machine the crawler processes, PostgreSQL and nginx share two cores: what
more nodes add is bounded by them (see the CPU columns), not by the frontier.
"""

from __future__ import annotations

import argparse
import asyncio  # noqa: TID251 - a benchmark driver, not crawler code
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import pg
from bench.run import (
    Run,
    _tail,
    bulk_settings,
    check_index,
    crawler_exe,
    generate_corpus,
    nginx_running,
    run_crawler,
    write_seeds,
)

NODES = (1, 2, 4)
TARGET_PG_VS_SQLITE = 0.8  # one node on PostgreSQL: at least this share of SQLite's pages/s


def _settings(args: argparse.Namespace, url: str) -> list[str]:
    """The bulk run's settings (as bench/run.py's run_crawler), on the shared frontier."""
    return bulk_settings(args, f'storage.url="{url}"')


def _seed(args: argparse.Namespace, url: str, seeds_file: Path, where: Path) -> None:
    cmd = [str(crawler_exe()), "seed", "--data-dir", str(where), *_settings(args, url)]
    subprocess.run([*cmd, str(seeds_file)], check=True, timeout=args.timeout, capture_output=True)


def _nodes(args: argparse.Namespace, url: str, count: int, i: int) -> tuple[Run, list[Path]]:
    """`count` nodes started together; their summed CPU and largest RSS, wall to the last."""
    base = args.workdir / "runs" / f"scale-{count}-{i}"
    shutil.rmtree(base, ignore_errors=True)
    dirs = [base / f"node{n}" for n in range(count)]
    procs = []
    started = time.perf_counter()
    for n, data_dir in enumerate(dirs):
        data_dir.mkdir(parents=True)
        cmd = [str(crawler_exe()), "run", "--data-dir", str(data_dir), *_settings(args, url)]
        cmd += ["--set", f'node.name="node{n}"', "--quiet"]
        log = (base / f"node{n}.log").open("wb")
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    timers = [threading.Timer(args.timeout, p.kill) for p in procs]
    for timer in timers:
        timer.start()
    cpu, rss, codes = 0.0, 0.0, []
    try:
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            codes.append(proc.returncode)
            cpu += usage.ru_utime + usage.ru_stime
            rss = max(rss, usage.ru_maxrss / 1024)
    finally:
        for timer in timers:
            timer.cancel()
    wall = time.perf_counter() - started
    code = next((c for c in codes if c != 0), 0)
    return Run(wall=wall, cpu=cpu, rss_mb=rss, exit_code=code), dirs


def _union(dirs: list[Path], expected: list[str]) -> dict[str, Any]:
    """check_index over all the nodes' directories: each URL's lines counted once per node."""
    parts = [check_index(d, expected) for d in dirs]
    lines = sum(p["lines"] for p in parts)
    done = sum(p["states"].get("done", 0) for p in parts)
    seen: set[str] = set()
    for d in dirs:
        for path in sorted((d / "index").glob("*.jsonl")):
            for text in path.read_text(encoding="utf-8").splitlines():
                line = json.loads(text)
                if line.get("kind") != "robots":  # robots.txt responses are archived too
                    seen.add(line["url"])
    return {
        "lines": lines,
        "done": done,
        "missing": len(set(expected) - seen),
        "extra": len(seen - set(expected)),
        "per_node_lines": [p["lines"] for p in parts],
    }


def scale_out_benchmark(args: argparse.Namespace, results: dict[str, Any]) -> None:
    site = args.workdir / "site"
    generate_corpus(site, args.pages, args.hosts, args.port, args.seed)
    seeds_file = args.workdir / "seeds.txt"
    seeds = write_seeds(seeds_file, args.pages, args.hosts, args.port, args.seed)
    admin, server = (args.pg_url, None) if args.pg_url else pg.start()
    runs: dict[str, list[dict[str, Any]]] = {"sqlite-1": [], **{f"pg-{n}": [] for n in NODES}}
    try:
        with nginx_running(args.workdir, site, args.hosts, args.port, args.nginx_workers):
            for i in range(args.repeat):  # round by round, as fetch_benchmarks does
                run = run_crawler(args, seeds_file, seeds, i)
                runs["sqlite-1"].append(_row(run, len(seeds), None))
                print(f"sqlite, 1 node, run {i + 1}: {_describe(runs['sqlite-1'][-1])}")
                for count in NODES:
                    url = asyncio.run(pg.new_database(admin))
                    _seed(args, url, seeds_file, args.workdir / "runs" / "seeder")
                    pg_before = pg.server_cpu(server) if server is not None else 0.0
                    run, dirs = _nodes(args, url, count, i)
                    time.sleep(0.5)  # the backends of the nodes' connections exit
                    pg_cpu = pg.server_cpu(server) - pg_before if server is not None else None
                    if run.exit_code == 0:
                        run.detail = _union(dirs, seeds)
                        run.ok = (
                            run.detail["lines"] == run.detail["done"] == len(seeds)
                            and run.detail["missing"] == run.detail["extra"] == 0
                        )
                    if not run.ok:
                        run.detail["log_tail"] = _tail(dirs[0].parent / "node0.log")
                    row = _row(run, len(seeds), pg_cpu)
                    runs[f"pg-{count}"].append(row)
                    print(f"postgresql, {count} node(s), run {i + 1}: {_describe(row)}")
                    if not args.keep:
                        shutil.rmtree(dirs[0].parent, ignore_errors=True)
    finally:
        if server is not None:
            server.cleanup()
    summary = {name: _median(rows) for name, rows in runs.items()}
    sqlite, one = summary["sqlite-1"], summary["pg-1"]
    ok = all(row["ok"] for rows in runs.values() for row in rows)
    ratio = one["pages_per_s"] / sqlite["pages_per_s"] if ok else 0.0
    results["scale_out"] = {
        "ok": ok and ratio >= TARGET_PG_VS_SQLITE,
        "pg_vs_sqlite_1_node": round(ratio, 3),
        "target_pg_vs_sqlite": TARGET_PG_VS_SQLITE,
        "summary": summary,
        "runs": runs,
    }


def _row(run: Run, pages: int, pg_cpu: float | None) -> dict[str, Any]:
    return {
        "ok": run.ok,
        "exit_code": run.exit_code,
        "wall_s": round(run.wall, 2),
        "pages_per_s": round(pages / run.wall, 1),
        "crawler_cpu_per_1000": round(run.cpu / pages * 1000, 3),
        "pg_cpu_per_1000": None if pg_cpu is None else round(pg_cpu / pages * 1000, 3),
        "rss_mb": round(run.rss_mb),
        "detail": run.detail,
    }


def _describe(row: dict[str, Any]) -> str:
    if not row["ok"]:
        return f"FAILED (exit {row['exit_code']}): {str(row['detail'])[:1500]}"
    pg_cpu = row["pg_cpu_per_1000"]
    server = "" if pg_cpu is None else f", PostgreSQL {pg_cpu:.2f} CPU-s/1k"
    return (
        f"{row['pages_per_s']:.0f} pages/s, crawler {row['crawler_cpu_per_1000']:.2f} "
        f"CPU-s/1k{server}, {row['wall_s']:.1f}s"
    )


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if r["ok"]] or rows
    out: dict[str, Any] = {"runs_ok": f"{sum(r['ok'] for r in rows)}/{len(rows)}"}
    for key in ("pages_per_s", "crawler_cpu_per_1000", "pg_cpu_per_1000", "wall_s"):
        values = [r[key] for r in good if r[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def print_scale_out(results: dict[str, Any]) -> None:
    s = results["scale_out"]
    print(f"\n{'':16}{'pages/s':>9}{'crawler CPU-s/1k':>18}{'PG CPU-s/1k':>13}{'wall s':>8}  ok")
    for name, row in s["summary"].items():
        pg_cpu = "-" if row["pg_cpu_per_1000"] is None else f"{row['pg_cpu_per_1000']:.2f}"
        print(
            f"{name:16}{row['pages_per_s']:>9.0f}{row['crawler_cpu_per_1000']:>18.2f}"
            f"{pg_cpu:>13}{row['wall_s']:>8.1f}  {row['runs_ok']}"
        )
    verdict = "PASS" if s["ok"] else "FAIL"
    print(
        f"\none node, PostgreSQL/SQLite pages/s: {s['pg_vs_sqlite_1_node']:.2f}"
        f"   target >= {s['target_pg_vs_sqlite']}  {verdict}"
    )
