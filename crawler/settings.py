"""Settings: frozen value objects loaded from TOML, environment and --set, validated at start."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from crawler.constraints import CONSTRAINTS
from crawler.errors import ConfigError
from crawler.profiles import load_profiles
from crawler.specs import Profiles

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
    recrawl_after: float = 0.0  # seconds from a URL's fetch to its next (0: never)
    recrawl_adaptive: bool = False  # per-URL interval: shorter when changed, longer when not
    recrawl_min: float = 60.0
    recrawl_max: float = 2_592_000.0  # 30 days


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
    collection: str = ""  # warcinfo isPartOf ("": the data directory's name)
    operator: str = ""  # warcinfo operator ("": not written)
    dedup: str = "digest"  # a payload stored before is written as a revisit; "off"
    dedup_index: str = ""  # a CDXJ of an earlier crawl whose payloads count as stored


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    fsync: bool = True
    commit_interval: float = 0.5
    commit_batch: int = 256
    busy_timeout: float = 30.0
    url: str = ""  # postgresql://...: a frontier shared by several nodes ("": SQLite)
    url_file: str = ""  # a file holding that URL (a secret: it may carry a password)


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    name: str = ""  # this node's name in a shared crawl ("": the host name)


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
    node: NodeSettings = field(default_factory=NodeSettings)
    frontier: FrontierSettings = field(default_factory=FrontierSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    log: LogSettings = field(default_factory=LogSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    # [[profile]] tables (config file only): not a section; see crawler/profiles.py.
    profiles: Profiles = field(default_factory=Profiles, compare=False, repr=False)


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
            constraint = CONSTRAINTS.get((section, key))
            if constraint is not None and not constraint[0](coerced):
                raise ConfigError(f"{path} = {value!r}: must be {constraint[1]}")
            kwargs[key] = coerced
        sections[section] = cls(**kwargs)
    settings = Settings(**sections, profiles=profiles or Profiles())
    _check_together(settings)
    return settings


def _check_together(settings: Settings) -> None:
    """Keys whose values must agree with each other."""
    crawl = settings.crawl
    if crawl.recrawl_adaptive:
        if crawl.recrawl_after <= 0:
            raise ConfigError(
                "crawl.recrawl_adaptive = true: needs crawl.recrawl_after > 0 (the first"
                " interval; 0 means never recrawl)"
            )
        if crawl.recrawl_min > crawl.recrawl_max:
            raise ConfigError(
                f"crawl.recrawl_min = {crawl.recrawl_min:g}: must be <= crawl.recrawl_max"
                f" ({crawl.recrawl_max:g})"
            )


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
