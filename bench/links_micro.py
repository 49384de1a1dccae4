"""Micro-benchmark of the crawl-mode link path: `Judge._discover` over the bench corpus.

Reads pages of `bench/out/site/` (written by `bench/run.py`) into memory, then times what a
worker does with each fetched HTML page in crawl mode: sniff, decode, extract links, resolve,
canonicalise, key and scope-check them (host scope, as in the crawl-mode benchmark), with
the keys of new URLs stored as the committer does. No network, no frontier. A script, not a test.

    .venv/bin/python bench/links_micro.py [--pages 4000] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from pathlib import Path
from typing import Any, cast

from crawler.judge import Judge
from crawler.models import Entry, Response
from crawler.settings import CrawlSettings
from crawler.urls import identify

SITE = Path(__file__).resolve().parent / "out" / "site"
PORT = 18080
HEADERS = [("content-type", "text/html"), ("content-length", "0")]


def load(pages: int) -> list[tuple[str, bytes]]:
    """(page URL, body) of the first `pages` pages, spread over all hosts."""
    hosts = sorted(SITE.glob("h*"), key=lambda p: int(p.name[1:]))
    if not hosts:
        raise SystemExit(f"no corpus in {SITE}: run bench/run.py once first")
    out = []
    page = 0
    while len(out) < pages:
        h = page % len(hosts)
        path = hosts[h] / f"p{page}.html"
        if not path.exists():
            break
        out.append((f"http://127.0.0.{h + 1}:{PORT}/p{page}.html", path.read_bytes()))
        page += 1
    return out


def run_once(judge: Judge, corpus: list[tuple[str, bytes]]) -> tuple[float, int, int]:
    """Seconds of CPU for one pass, and the in-scope / out-of-scope links found."""
    entries = []
    for url, body in corpus:
        key, host = identify(url)
        response = Response(
            200, "OK", "HTTP/1.1", HEADERS, [], "GET", url, cast(Any, None), 0, 0, False
        )
        response.decoded = body
        entries.append((Entry(key, url, host, depth=1, origin=host), response))
    followed = out_of_scope = 0
    seen = judge.seen
    started = time.process_time()
    for entry, response in entries:
        outcome = judge._discover(entry, response, 1)
        for new in outcome.new_urls:  # as the committer does once the page is committed
            seen.store(new.key)
        followed += outcome.links or 0
        out_of_scope += outcome.out_of_scope
    return time.process_time() - started, followed, out_of_scope


def fresh_judge() -> Judge:
    """A judge with nothing met yet: each pass starts as a new crawl does."""
    return Judge(cast(Any, None), CrawlSettings(max_depth=1000), max_redirects=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one extra pass")
    args = parser.parse_args()
    corpus = load(args.pages)
    run_once(fresh_judge(), corpus[:200])  # warm up (imports, caches)
    times = []
    for _ in range(args.repeat):
        took, followed, out_of_scope = run_once(fresh_judge(), corpus)
        times.append(took)
    per_1000 = statistics.median(times) / len(corpus) * 1000
    print(
        f"{len(corpus)} pages: median {statistics.median(times):.3f} CPU-s "
        f"(min {min(times):.3f}), {per_1000:.3f} CPU-s per 1000 pages; "
        f"{followed} links followed, {out_of_scope} out of scope"
    )
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        run_once(fresh_judge(), corpus)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())


if __name__ == "__main__":
    main()
