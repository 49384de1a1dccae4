"""Scrapy reference for the benchmark: fetch every seed once, follow nothing, keep nothing.

Usage: python bench/scrapy_ref.py SEEDS STATS_JSON [--concurrency 128]

Writes Scrapy's final stats (response counts by status, errors) to STATS_JSON so that
bench/run.py can check that every page was fetched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess


class SeedSpider(scrapy.Spider):
    """Yield one request per seed line; the callback discards the response."""

    name = "bench_seeds"

    def __init__(self, seeds: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seeds = seeds

    def _requests(self) -> Iterator[scrapy.Request]:
        with open(self.seeds, encoding="utf-8") as fh:
            for line in fh:
                url = line.strip()
                if url:
                    yield scrapy.Request(url, callback=self.parse, dont_filter=True)

    async def start(self) -> AsyncIterator[scrapy.Request]:  # Scrapy >= 2.13
        for request in self._requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:  # Scrapy < 2.13
        return self._requests()

    def parse(self, response: Any, **kwargs: Any) -> None:
        return None


def settings(concurrency: int) -> dict[str, Any]:
    """Politeness opened up and every optional component that costs CPU switched off."""
    return {
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "CONCURRENT_REQUESTS_PER_IP": 0,
        "DOWNLOAD_DELAY": 0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "RETRY_ENABLED": True,
        "LOG_LEVEL": "WARNING",
        "LOGSTATS_INTERVAL": 0,
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", type=Path)
    parser.add_argument("stats", type=Path)
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()

    process = CrawlerProcess(settings=settings(args.concurrency))
    crawler = process.create_crawler(SeedSpider)
    process.crawl(crawler, seeds=str(args.seeds))
    process.start()
    raw = crawler.stats.get_stats() if crawler.stats else {}
    stats = {k: v if isinstance(v, int | float) else str(v) for k, v in raw.items()}
    args.stats.write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
