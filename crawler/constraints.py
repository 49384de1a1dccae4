"""What each settings key must be: its check, and the words the error says when it fails."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.addresses import parse_allowed, split_dns_server, split_listen

# (section, key) -> (predicate, what the value must be)
CONSTRAINTS: dict[tuple[str, str], tuple[Any, str]] = {
    ("fetch", "concurrency"): (lambda v: 1 <= v <= 10_000, "an integer from 1 to 10000"),
    ("fetch", "connect_timeout"): (lambda v: v > 0, "a number of seconds > 0"),
    ("fetch", "read_timeout"): (lambda v: v > 0, "a number of seconds > 0"),
    ("fetch", "deadline"): (lambda v: v > 0, "a number of seconds > 0"),
    ("fetch", "max_body_bytes"): (lambda v: v >= 1024, "an integer >= 1024"),
    ("fetch", "user_agent"): (lambda v: v.strip() != "", "a non-empty string"),
    ("fetch", "proxy"): (lambda v: v == "" or _is_proxy(v), '"" or an http(s):// proxy URL'),
    ("fetch", "max_redirects"): (lambda v: 0 <= v <= 100, "an integer from 0 to 100"),
    ("fetch", "ca_bundle"): (lambda v: v == "" or Path(v).is_file(), '"" or a readable PEM file'),
    ("crawl", "max_depth"): (lambda v: 0 <= v <= 1000, "an integer from 0 to 1000"),
    ("crawl", "max_pages_per_host"): (lambda v: v >= 0, "an integer >= 0 (0: no limit)"),
    ("crawl", "recrawl_after"): (lambda v: v >= 0, "a number of seconds >= 0 (0: never)"),
    ("crawl", "recrawl_min"): (lambda v: v >= 1, "a number of seconds >= 1"),
    ("crawl", "recrawl_max"): (lambda v: v >= 1, "a number of seconds >= 1"),
    ("crawl", "max_links_per_page"): (lambda v: v >= 1, "an integer >= 1"),
    ("crawl", "scope"): (lambda v: v in ("host", "domain", "any"), "one of host, domain, any"),
    ("crawl", "include"): (lambda v: all(_is_regex(r) for r in v), "a list of valid regexes"),
    ("crawl", "exclude"): (lambda v: all(_is_regex(r) for r in v), "a list of valid regexes"),
    ("robots", "ttl"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("robots", "max_wait"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("robots", "retry_base"): (lambda v: v > 0, "a number of seconds > 0"),
    ("politeness", "max_crawl_delay"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("politeness", "max_delay"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("politeness", "max_retry_after"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("politeness", "latency_factor"): (lambda v: 0 <= v <= 100, "a number from 0 to 100"),
    ("politeness", "key"): (lambda v: v in ("host", "domain", "ip"), "one of host, domain, ip"),
    ("politeness", "per_host_concurrency"): (lambda v: v >= 1, "an integer >= 1"),
    ("politeness", "delay"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("retry", "max_attempts"): (lambda v: v >= 1, "an integer >= 1"),
    ("retry", "backoff_base"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("retry", "backoff_max"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("retry", "max_retry_after"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("retry", "max_wait"): (lambda v: v >= 1, "a number of seconds >= 1"),
    ("retry", "host_max_failures"): (lambda v: v >= 1, "an integer >= 1"),
    ("retry", "host_down_seconds"): (lambda v: v >= 1, "a number of seconds >= 1"),
    ("output", "gzip_level"): (lambda v: 1 <= v <= 9, "an integer from 1 to 9"),
    ("output", "warc_max_bytes"): (lambda v: v >= 64 * 1024, "an integer >= 65536"),
    ("output", "dedup"): (lambda v: v in ("digest", "off"), "digest or off"),
    ("output", "dedup_index"): (lambda v: v == "" or Path(v).is_file(), '"" or a CDXJ file'),
    ("output", "prefix"): (
        lambda v: v != "" and all(c.isalnum() or c in "-_." for c in v),
        "letters, digits, '-', '_' or '.'",
    ),
    ("storage", "commit_interval"): (lambda v: v > 0, "a number of seconds > 0"),
    ("storage", "commit_batch"): (lambda v: v >= 1, "an integer >= 1"),
    ("storage", "busy_timeout"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("frontier", "claim_batch"): (lambda v: 1 <= v <= 100_000, "an integer from 1 to 100000"),
    ("frontier", "lease_seconds"): (lambda v: v >= 10, "a number of seconds >= 10"),
    ("shutdown", "grace_seconds"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("log", "level"): (
        lambda v: v in ("debug", "info", "warning", "error"),
        "one of debug, info, warning, error",
    ),
    ("log", "format"): (lambda v: v in ("auto", "json", "console"), "one of auto, json, console"),
    ("log", "summary_seconds"): (lambda v: v >= 0, "a number of seconds >= 0 (0: none)"),
    ("service", "listen"): (lambda v: _is_listen(v), "HOST:PORT (an IP address, port 0-65535)"),
    ("service", "min_free_bytes"): (lambda v: v >= 0, "an integer >= 0"),
    ("service", "max_request_bytes"): (lambda v: v >= 1024, "an integer >= 1024"),
    ("service", "inbox_interval"): (lambda v: v > 0, "a number of seconds > 0"),
    ("service", "inbox_settle_seconds"): (lambda v: v >= 0, "a number of seconds >= 0"),
    ("network", "allowed_networks"): (
        lambda v: all(_is_network(n) for n in v),
        "a list of CIDRs, each with :PORT or :FIRST-LAST if not every port ([IPv6]/LEN:PORT)",
    ),
    ("network", "dns_timeout"): (lambda v: 0 < v <= 300, "a number of seconds > 0 and <= 300"),
    ("network", "dns_servers"): (
        lambda v: all(_is_dns_server(s) for s in v),
        'a list of "IP" or "IP:PORT" ("[IPv6]:PORT")',
    ),
}


def _is_regex(text: str) -> bool:
    try:
        re.compile(text)
    except re.error:
        return False
    return True


def _is_proxy(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_listen(text: str) -> bool:
    try:
        split_listen(text)
    except ValueError:
        return False
    return True


def _is_network(text: str) -> bool:
    try:
        parse_allowed(text)
    except ValueError:
        return False
    return True


def _is_dns_server(text: str) -> bool:
    try:
        split_dns_server(text)
    except ValueError:
        return False
    return True
