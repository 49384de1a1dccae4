"""Per-host fetch profiles: headers, credentials, cookies, proxy, TLS, timeouts, politeness.

A `[[profile]]` table matches URLs by `hosts` (exact names or IP literals, `*.example.org`
for any subdomain; the port is not part of the match) or by `url_regex`; the first match
wins. Secrets (passwords, tokens, client secrets, key passwords) are read at start from the
config, a file or an environment variable, and kept only in memory: never in a repr, a
log line, the database or the output.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from crawler.errors import ConfigError

AUTH_TYPES = ("basic", "digest", "bearer", "oauth2_client_credentials")
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
_AUTH_KEYS = {
    "basic": {"username", "password"},
    "digest": {"username", "password"},
    "bearer": {"token"},
    "oauth2_client_credentials": {"token_url", "client_id", "client_secret", "scope"},
}
_SECRETS = {"password", "token", "client_secret"}


@dataclass(frozen=True, slots=True)
class AuthSpec:
    type: str
    username: str = ""
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    secret: str = field(default="", repr=False)  # password, token or client secret


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """What needs a client of its own: profiles equal in these share one."""

    proxy: str = ""
    verify: bool = True
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    key_password: str = field(default="", repr=False, compare=True)


@dataclass(frozen=True, slots=True)
class Profile:
    index: int
    name: str
    hosts: tuple[str, ...] = ()
    url_regex: re.Pattern[str] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = ""
    auth: AuthSpec | None = None
    transport: TransportSpec = field(default_factory=TransportSpec)
    cookies: bool = False
    timeouts: tuple[tuple[str, float], ...] = ()
    delay: float | None = None
    per_host_concurrency: int | None = None

    @property
    def label(self) -> str:
        return self.name or f"profile[{self.index}]"

    def timeout(self, name: str) -> float | None:
        return dict(self.timeouts).get(name)

    def matches_host(self, host: str) -> bool:
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False


class Profiles:
    """The configured profiles, in order."""

    def __init__(self, profiles: Sequence[Profile] = ()) -> None:
        self.all = tuple(profiles)
        self._by_host: dict[str, Profile | None] = {}

    def __bool__(self) -> bool:
        return bool(self.all)

    def match(self, url: str) -> Profile | None:
        """The first profile matching `url`, or None."""
        if not self.all:
            return None
        host = (urlsplit(url).hostname or "").lower().removesuffix(".")
        for profile in self.all:
            if profile.url_regex is not None:
                if profile.url_regex.search(url):
                    return profile
            elif profile.matches_host(host):
                return profile
        return None

    def for_host(self, host: str) -> Profile | None:
        """The first hosts-profile matching a host[:port] (politeness overrides use this)."""
        if host not in self._by_host:
            name = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
            found = [p for p in self.all if p.url_regex is None and p.matches_host(name)]
            if len(self._by_host) > 100_000:
                self._by_host.clear()
            self._by_host[host] = found[0] if found else None
        return self._by_host[host]


def _secret(table: Mapping[str, Any], key: str, path: str, environ: Mapping[str, str]) -> str:
    """`key`, `key_env` or `key_file` of `table`: the secret's value ("" when none given)."""
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in table]
    if len(given) > 1:
        raise ConfigError(f"{path}.{key}: give only one of {', '.join(given)}")
    if not given:
        return ""
    name = given[0]
    value = table[name]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{name}: must be a non-empty string")
    if name.endswith("_env"):
        if value not in environ:
            raise ConfigError(f"{path}.{name}: environment variable {value} is not set")
        return environ[value]
    if name.endswith("_file"):
        try:
            return Path(value).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(f"{path}.{name}: cannot read {value}: {reason}") from None
    return value


def _string(table: Mapping[str, Any], key: str, path: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: must be a string")
    return value


def _readable(table: Mapping[str, Any], key: str, path: str) -> str:
    value = _string(table, key, path)
    if value:
        try:
            with open(value, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}.{key}: cannot read {value}: {exc.strerror}") from None
    return value


def _auth(table: Any, path: str, environ: Mapping[str, str]) -> AuthSpec:
    if not isinstance(table, Mapping):
        raise ConfigError(f'{path}: must be a table such as {{ type = "bearer", ... }}')
    kind = table.get("type")
    if kind not in AUTH_TYPES:
        raise ConfigError(f"{path}.type: {kind!r} is not one of {', '.join(AUTH_TYPES)}")
    allowed = {"type"} | _AUTH_KEYS[kind]
    for key in table:
        base = key.removesuffix("_env").removesuffix("_file")
        if key not in allowed and not (base in allowed and base in _SECRETS):
            raise ConfigError(f"{path}.{key}: unknown key for auth type {kind}")
    secret_key = next(iter(_AUTH_KEYS[kind] & _SECRETS))
    secret = _secret(table, secret_key, path, environ)
    if not secret:
        raise ConfigError(f"{path}.{secret_key}: required (or {secret_key}_env / _file)")
    spec = AuthSpec(
        type=kind,
        username=_string(table, "username", path),
        token_url=_string(table, "token_url", path),
        client_id=_string(table, "client_id", path),
        scope=_string(table, "scope", path),
        secret=secret,
    )
    if kind in ("basic", "digest") and not spec.username:
        raise ConfigError(f"{path}.username: required for {kind}")
    if kind == "oauth2_client_credentials":
        parts = urlsplit(spec.token_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{path}.token_url: must be an http(s) URL")
        if not spec.client_id:
            raise ConfigError(f"{path}.client_id: required")
    return spec


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


def _flag(table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: must be true or false")
    return value


def _number(
    table: Mapping[str, Any], key: str, path: str, what: str, ok: Callable[[float], bool]
) -> float | None:
    """An optional number of `table` (None when absent); `what` says what it must be."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        raise ConfigError(f"{path}.{key}: must be {what}")
    return value


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


def _proxy(table: Mapping[str, Any], path: str, environ: Mapping[str, str]) -> str:
    """The proxy URL, with the credentials from proxy_username / proxy_password_*."""
    proxy = _string(table, "proxy", path)
    if proxy:
        parts = urlsplit(proxy)
        if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
            raise ConfigError(f"{path}.proxy: must be an http://, https:// or socks5:// URL")
        if parts.username or parts.password:
            raise ConfigError(
                f"{path}.proxy: put credentials in proxy_username / proxy_password_env"
            )
    username = _string(table, "proxy_username", path)
    password = _secret(table, "proxy_password", path, environ)
    if not (username or password):
        return proxy
    if not proxy:
        raise ConfigError(f"{path}.proxy_username: needs proxy")
    parts = urlsplit(proxy)
    userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return parts._replace(netloc=f"{userinfo}@{parts.netloc}").geturl()


def _transport(table: Mapping[str, Any], path: str, environ: Mapping[str, str]) -> TransportSpec:
    client_cert = _readable(table, "client_cert", path)
    client_key = _readable(table, "client_key", path)
    if client_key and not client_cert:
        raise ConfigError(f"{path}.client_key: needs client_cert")
    transport = TransportSpec(
        proxy=_proxy(table, path, environ),
        verify=_flag(table, "verify", path, True),
        ca_bundle=_readable(table, "ca_bundle", path),
        client_cert=client_cert,
        client_key=client_key,
        key_password=_secret(table, "client_key_password", path, environ),
    )
    _check_tls(transport, path)
    return transport


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
            regex = re.compile(_string(table, "url_regex", path))
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
    timeouts = [(k, _number(table, k, path, seconds, lambda v: v > 0)) for k in TIMEOUTS]
    delay = _number(table, "delay", path, "a number of seconds >= 0", lambda v: v >= 0)
    concurrency = _number(
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
        name=_string(table, "name", path),
        hosts=hosts,
        url_regex=regex,
        headers=_headers(table, path),
        user_agent=_string(table, "user_agent", path),
        auth=_auth(table["auth"], f"{path}.auth", environ) if "auth" in table else None,
        transport=_transport(table, path, environ),
        cookies=_flag(table, "cookies", path, False),
        timeouts=tuple((k, float(v)) for k, v in timeouts if v is not None),
        delay=None if delay is None else float(delay),
        per_host_concurrency=None if concurrency is None else int(concurrency),
    )


def _check_tls(transport: TransportSpec, path: str) -> None:
    """Load the TLS material once at start, so a bad file or password fails here."""
    try:
        context = ssl.create_default_context(cafile=transport.ca_bundle or None)
        if transport.client_cert:
            context.load_cert_chain(
                transport.client_cert,
                transport.client_key or None,
                password=transport.key_password or None,
            )
    except (ssl.SSLError, OSError) as exc:
        what = "client_cert" if transport.client_cert else "ca_bundle"
        raise ConfigError(f"{path}.{what}: cannot load: {exc}") from None


def load_profiles(raw: Any, environ: Mapping[str, str] | None = None) -> Profiles:
    """Validate the `[[profile]]` list of a config; raises ConfigError naming the key."""
    if raw is None:
        return Profiles()
    if not isinstance(raw, list):
        raise ConfigError("profile: must be a list of tables ([[profile]])")
    env = os.environ if environ is None else environ
    return Profiles([_profile(i, table, env) for i, table in enumerate(raw)])
