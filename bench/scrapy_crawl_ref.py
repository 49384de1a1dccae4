"""Scrapy reference for the crawl-mode benchmark: follow links within each seed's host.

Usage: python bench/scrapy_crawl_ref.py SEEDS STATS_JSON --jobdir DIR [--concurrency 128]

From one seed per host, follows every link (LinkExtractor) whose host and port equal those
of the seed it descends from, without a depth limit, with robots.txt obeyed and the crawl
state persisted in JOBDIR (disk queues and the seen-requests file of the default
dupefilter). Keeps no items. Writes Scrapy's final stats plus the URLs of the 200 responses
(`bench/fetched_urls`) to STATS_JSON so that bench/run.py can check what was fetched.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor


class CrawlSeedsSpider(scrapy.Spider):
    """Follow same-host links from each seed; the seed's netloc travels in `meta`."""

    name = "bench_crawl"

    def __init__(self, seeds: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seeds = seeds
        self.links = LinkExtractor()
        self.fetched: list[str] = []

    def _requests(self) -> Iterator[scrapy.Request]:
        with open(self.seeds, encoding="utf-8") as fh:
            for line in fh:
                url = line.strip()
                if url:
                    # Not dont_filter: the seed enters the dupefilter, so a link back to it
                    # is not fetched a second time.
                    yield scrapy.Request(url, callback=self.parse, meta={"seed": netloc(url)})

    async def start(self) -> AsyncIterator[scrapy.Request]:  # Scrapy >= 2.13
        for request in self._requests():
            yield request

    def start_requests(self) -> Iterator[scrapy.Request]:  # Scrapy < 2.13
        return self._requests()

    def parse(self, response: Any, **kwargs: Any) -> Iterator[scrapy.Request]:
        if response.status == 200:
            self.fetched.append(response.url)
        seed = response.meta["seed"]
        for link in self.links.extract_links(response):
            if netloc(link.url) == seed:
                yield scrapy.Request(link.url, callback=self.parse, meta={"seed": seed})


def netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


def settings(concurrency: int, jobdir: Path) -> dict[str, Any]:
    """Politeness opened up, robots.txt obeyed, state persisted in JOBDIR."""
    return {
        "JOBDIR": str(jobdir),
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "CONCURRENT_REQUESTS_PER_IP": 0,
        "DOWNLOAD_DELAY": 0,
        "ROBOTSTXT_OBEY": True,
        "DEPTH_LIMIT": 0,
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
    parser.add_argument("--jobdir", type=Path, required=True, help="a fresh directory")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()

    process = CrawlerProcess(settings=settings(args.concurrency, args.jobdir))
    crawler = process.create_crawler(CrawlSeedsSpider)
    process.crawl(crawler, seeds=str(args.seeds))
    process.start()
    raw = crawler.stats.get_stats() if crawler.stats else {}
    stats: dict[str, Any] = {k: v if isinstance(v, int | float) else str(v) for k, v in raw.items()}
    spider = crawler.spider
    stats["bench/fetched_urls"] = getattr(spider, "fetched", [])
    args.stats.write_text(json.dumps(stats, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
