"""Settings: frozen value objects loaded from TOML, environment and --set, validated at start."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from crawler.errors import ConfigError
from crawler.guard import parse_allowed
from crawler.profiles import Profiles, load_profiles

ENV_PREFIX = "CRAWLER_"


@dataclass(frozen=True, kw_only=True)
class FetchSettings:
    concurrency: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 120.0
    max_body_bytes: int = 10 * 1024 * 1024
    user_agent: str = "crawler/0.1 (+https://example.invalid/crawler-contact)"
    http2: bool = True
    ca_bundle: str = ""
    proxy: str = ""
    trust_env: bool = False
    max_redirects: int = 10


@dataclass(frozen=True, kw_only=True)
class CrawlSettings:
    max_depth: int = 0
    max_links_per_page: int = 1000
    obey_rel_nofollow: bool = True
    scope: str = "host"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sitemaps: bool = False
    sort_query: bool = False
    max_pages_per_host: int = 0


@dataclass(frozen=True, kw_only=True)
class RobotsSettings:
    obey: bool = True
    ttl: float = 86400.0
    max_wait: float = 86400.0
    retry_base: float = 60.0


@dataclass(frozen=True, kw_only=True)
class PolitenessSettings:
    per_host_concurrency: int = 2
    delay: float = 1.0
    max_crawl_delay: float = 30.0
    max_delay: float = 60.0
    max_retry_after: float = 3600.0
    latency_factor: float = 0.0
    key: str = "host"


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    max_attempts: int = 3
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    max_retry_after: float = 3600.0
    max_wait: float = 300.0
    host_max_failures: int = 5
    host_down_seconds: float = 3600.0


@dataclass(frozen=True, kw_only=True)
class NetworkSettings:
    allowed_networks: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    dns_servers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OutputSettings:
    warc_max_bytes: int = 1024**3
    gzip_level: int = 1
    prefix: str = "crawler"
    store_credentials: bool = False


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    fsync: bool = True
    commit_interval: float = 0.5
    commit_batch: int = 256
    busy_timeout: float = 30.0


@dataclass(frozen=True, kw_only=True)
class FrontierSettings:
    claim_batch: int = 512
    lease_seconds: float = 900.0


@dataclass(frozen=True, kw_only=True)
class ShutdownSettings:
    grace_seconds: float = 10.0


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"
    summary_seconds: float = 30.0


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    listen: str = "127.0.0.1:8080"
    token: str = ""
    min_free_bytes: int = 1024**3
    max_request_bytes: int = 16 * 1024 * 1024
    inbox_interval: float = 1.0
    inbox_settle_seconds: float = 2.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    fetch: FetchSettings = field(default_factory=FetchSettings)
    crawl: CrawlSettings = field(default_factory=CrawlSettings)
    robots: RobotsSettings = field(default_factory=RobotsSettings)
    politeness: PolitenessSettings = field(default_factory=PolitenessSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    frontier: FrontierSettings = field(default_factory=FrontierSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    log: LogSettings = field(default_factory=LogSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    # [[profile]] tables (config file only): not a section; see crawler/profiles.py.
    profiles: Profiles = field(default_factory=Profiles, compare=False, repr=False)


# (section, key) -> (predicate, what the value must be)
_RULES: dict[tuple[str, str], tuple[Any, str]] = {
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


def split_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:8080` or `[::1]:8080` -> (host, port); raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(text)
    host = host.removeprefix("[").removesuffix("]")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(text)
    return host, number


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


def split_dns_server(text: str) -> tuple[str, int]:
    """`192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353` -> (IP, port);
    port 53 when none is given; raises ValueError."""
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        host, number = split_listen(text)
    if number == 0:
        raise ValueError(text)
    return host, number


def _is_dns_server(text: str) -> bool:
    try:
        split_dns_server(text)
    except ValueError:
        return False
    return True


def _coerce(path: str, value: Any, kind: Any) -> Any:
    """Turn a TOML/env value into the field's type, or raise ConfigError naming the key."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `--set output.prefix=2024` means the text "2024"
    elif (
        kind == tuple[str, ...]
        and isinstance(value, list | tuple)
        and all(isinstance(v, str) for v in value)
    ):
        return tuple(value)
    raise ConfigError(f"{path} = {value!r}: expected {_type_name(kind)}")


def _type_name(kind: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(kind, "a list of strings")


def _parse_value(text: str) -> Any:
    """Parse one value in TOML syntax; a bare word that is not TOML is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(into: dict[str, dict[str, Any]], layer: Mapping[str, Any], origin: str) -> None:
    for section, values in layer.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table, got {values!r}")
        into.setdefault(section, {}).update(values)


def _env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        layer.setdefault(section.lower(), {})[key.lower()] = _parse_value(text)
    return layer


def _set_layer(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        layer.setdefault(section, {})[key] = _parse_value(text.strip())
    return layer


def _build(raw: Mapping[str, Mapping[str, Any]], profiles: Profiles | None = None) -> Settings:
    sections: dict[str, Any] = {}
    section_types = get_type_hints(Settings)
    for section, values in raw.items():
        if section not in section_types:
            raise ConfigError(f"unknown config section [{section}]")
        cls = section_types[section]
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            path = f"{section}.{key}"
            if key not in hints:
                raise ConfigError(f"unknown config key {path}")
            coerced = _coerce(path, value, hints[key])
            rule = _RULES.get((section, key))
            if rule is not None and not rule[0](coerced):
                raise ConfigError(f"{path} = {value!r}: must be {rule[1]}")
            kwargs[key] = coerced
        sections[section] = cls(**kwargs)
    return Settings(**sections, profiles=profiles or Profiles())


def load_settings(
    config_file: Path | None = None,
    assignments: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < config file < CRAWLER_SECTION__KEY variables < --set section.key=value."""
    raw: dict[str, dict[str, Any]] = {}
    profiles: Profiles | None = None
    env = os.environ if environ is None else environ
    if config_file is not None:
        try:
            layer = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
        profiles = load_profiles(layer.pop("profile", None), env)
        _merge(raw, layer, str(config_file))
    _merge(raw, _env_layer(env), "environment")
    _merge(raw, _set_layer(assignments), "--set")
    return _build(raw, profiles)
