"""Scrapy reference in the world (bench/world): fetch every seed once, politely.

Usage: python bench/scrapy_world_ref.py SEEDS OUT_JSON --dns IP:PORT [--concurrency 1000]
       [--timeout 30]

Settings as the crawler's defaults: DOWNLOAD_DELAY 1 s and 2 requests at once per host,
CONCURRENT_REQUESTS 1000, ROBOTSTXT_OBEY, DNSCACHE on, 3 attempts. Scrapy's resolver
(getaddrinfo in threads) cannot be pointed at a DNS server, so TWISTED_DNS_RESOLVER is
WorldResolver below: twisted.names asking the world's server, cached like DNSCACHE. Scrapy
does not verify certificates by default, so the world's private CA needs no setting.

OUT_JSON: Scrapy's stats and each seed's outcome ("200", "301", ... or the error's class).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from twisted.internet import defer
from twisted.internet.interfaces import IResolverSimple
from twisted.names import client
from zope.interface import implementer

DNS_SERVER = ("127.0.0.1", 53)  # set by main() before the crawl starts


@implementer(IResolverSimple)
class WorldResolver:
    """getHostByName through twisted.names at DNS_SERVER, answers kept for the run."""

    def __init__(self, reactor: Any, timeout: float) -> None:
        self.reactor = reactor
        self._timeout = timeout
        self._names = client.Resolver(servers=[DNS_SERVER], reactor=reactor)
        self._cache: dict[str, str] = {}

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> WorldResolver:
        return cls(reactor, crawler.settings.getfloat("DNS_TIMEOUT"))

    def install_on_reactor(self) -> None:
        self.reactor.installResolver(self)

    def getHostByName(self, name: str, timeout: Any = ()) -> Any:
        if name in self._cache:
            return defer.succeed(self._cache[name])
        half = self._timeout / 2
        d = self._names.getHostByName(name, timeout=(half, half))

        def keep(address: str) -> str:
            self._cache[name] = address
            return address

        return d.addCallback(keep)


class WorldSpider(scrapy.Spider):
    name = "bench_world"

    def __init__(self, seeds: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seeds = seeds
        self.outcomes: dict[str, str] = {}

    def _requests(self) -> Iterator[scrapy.Request]:
        with open(self.seeds, encoding="utf-8") as fh:
            for line in fh:
                url = line.strip()
                if url:
                    yield scrapy.Request(
                        url,
                        callback=self.parse,
                        errback=self.failed,
                        dont_filter=True,
                        meta={"seed": url},
                    )

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for request in self._requests():
            yield request

    def parse(self, response: Any, **kwargs: Any) -> None:
        self.outcomes[response.meta["seed"]] = str(response.status)

    def failed(self, failure: Any) -> None:
        request = getattr(failure, "request", None)
        if request is None and hasattr(failure.value, "response"):
            request = failure.value.response.request
        if request is not None:
            response = getattr(failure.value, "response", None)
            got = str(response.status) if response is not None else failure.type.__name__
            self.outcomes[request.meta["seed"]] = got


def settings(concurrency: int, timeout: float) -> dict[str, Any]:
    return {
        "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
        "DOWNLOAD_DELAY": 1.0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "ROBOTSTXT_OBEY": True,
        "DNSCACHE_ENABLED": True,
        "DNS_TIMEOUT": 5.0,
        "TWISTED_DNS_RESOLVER": "__main__.WorldResolver",
        "DOWNLOAD_TIMEOUT": timeout,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": 2,  # 3 attempts, as retry.max_attempts
        "AUTOTHROTTLE_ENABLED": False,
        "HTTPCACHE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "ERROR",
        "LOGSTATS_INTERVAL": 0,
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
    }


def main() -> None:
    global DNS_SERVER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dns", required=True, help="the world's DNS server, IP:PORT")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=30.0, help="DOWNLOAD_TIMEOUT")
    args = parser.parse_args()
    ip, port = args.dns.rsplit(":", 1)
    DNS_SERVER = (ip, int(port))

    process = CrawlerProcess(settings=settings(args.concurrency, args.timeout))
    crawler = process.create_crawler(WorldSpider)
    process.crawl(crawler, seeds=str(args.seeds))
    process.start()
    raw = crawler.stats.get_stats() if crawler.stats else {}
    stats = {k: v if isinstance(v, int | float) else str(v) for k, v in raw.items()}
    spider = crawler.spider
    outcomes = spider.outcomes if isinstance(spider, WorldSpider) else {}
    args.out.write_text(json.dumps({"stats": stats, "outcomes": outcomes}), encoding="utf-8")


if __name__ == "__main__":
    main()
