"""Per-host fetch profiles: the `[[profile]]` tables of a config, validated at start.

A `[[profile]]` table sets headers, credentials, cookies, proxy, TLS, timeouts and politeness
for the URLs it matches by `hosts` (exact names or IP literals, `*.example.org` for any
subdomain; the port is not part of the match) or by `url_regex`; the first match wins. Its
auth, proxy and TLS keys are read by credentials.py, which keeps the secrets out of sight.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from crawler.config_keys import get_flag, get_number, get_string
from crawler.credentials import auth_spec, transport_spec
from crawler.errors import ConfigError
from crawler.specs import Profile, Profiles

TIMEOUTS = ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout", "deadline")
_KEYS = {
    "name",
    "hosts",
    "url_regex",
    "headers",
    "user_agent",
    "auth",
    "proxy",
    "proxy_username",
    "proxy_password",
    "proxy_password_env",
    "proxy_password_file",
    "verify",
    "ca_bundle",
    "client_cert",
    "client_key",
    "client_key_password",
    "client_key_password_env",
    "client_key_password_file",
    "cookies",
    "delay",
    "per_host_concurrency",
    *TIMEOUTS,
}


def _host_pattern(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: must be a host name, *.domain or an IP address")
    name = value.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    bare = name[2:] if name.startswith("*.") else name
    if not bare or any(c in bare for c in "/:*@ ") or bare.startswith("."):
        raise ConfigError(f"{path}: {value!r} is not a host name, *.domain or IP address")
    return name


def _headers(table: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    raw = table.get("headers", {})
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ConfigError(f"{path}.headers: must be a table of strings")
    for name, value in raw.items():
        if any(c in name + value for c in "\r\n\x00") or not name.strip():
            raise ConfigError(f"{path}.headers.{name}: invalid header name or value")
    return tuple(raw.items())


def _matching(
    table: Mapping[str, Any], path: str
) -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    """(hosts, url_regex): exactly one of them is given."""
    raw = table.get("hosts", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{path}.hosts: must be a list of host names")
    hosts = tuple(_host_pattern(h, f"{path}.hosts[{i}]") for i, h in enumerate(raw))
    regex: re.Pattern[str] | None = None
    if "url_regex" in table:
        try:
            regex = re.compile(get_string(table, "url_regex", path))
        except re.error as exc:
            raise ConfigError(f"{path}.url_regex: invalid regex: {exc}") from None
    if bool(hosts) == (regex is not None):
        raise ConfigError(f"{path}: give exactly one of hosts or url_regex")
    return hosts, regex


def _profile(index: int, table: Any, environ: Mapping[str, str]) -> Profile:
    path = f"profile[{index}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: must be a table")
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"{path}.{key}: unknown profile key")
    hosts, regex = _matching(table, path)
    seconds = "a number of seconds > 0"
    timeouts = [(k, get_number(table, k, path, seconds, lambda v: v > 0)) for k in TIMEOUTS]
    delay = get_number(table, "delay", path, "a number of seconds >= 0", lambda v: v >= 0)
    concurrency = get_number(
        table,
        "per_host_concurrency",
        path,
        "an integer >= 1",
        lambda v: isinstance(v, int) and v >= 1,
    )
    if (delay is not None or concurrency is not None) and regex is not None:
        raise ConfigError(f"{path}: politeness overrides need hosts, not url_regex")
    return Profile(
        index=index,
        name=get_string(table, "name", path),
        hosts=hosts,
        url_regex=regex,
        headers=_headers(table, path),
        user_agent=get_string(table, "user_agent", path),
        auth=auth_spec(table["auth"], f"{path}.auth", environ) if "auth" in table else None,
        transport=transport_spec(table, path, environ),
        cookies=get_flag(table, "cookies", path, False),
        timeouts=tuple((k, float(v)) for k, v in timeouts if v is not None),
        delay=None if delay is None else float(delay),
        per_host_concurrency=None if concurrency is None else int(concurrency),
    )


def load_profiles(raw: Any, environ: Mapping[str, str] | None = None) -> Profiles:
    """Validate the `[[profile]]` list of a config; raises ConfigError naming the key."""
    if raw is None:
        return Profiles()
    if not isinstance(raw, list):
        raise ConfigError("profile: must be a list of tables ([[profile]])")
    env = os.environ if environ is None else environ
    return Profiles([_profile(i, table, env) for i, table in enumerate(raw)])
