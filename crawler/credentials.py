"""Credentials and TLS of a fetch profile: its auth, its proxy and its client certificate.

Secrets (passwords, tokens, client secrets, key passwords) are read at start from the
config, a file or an environment variable, and kept only in memory: never in a repr, a log
line, the database or the output.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from crawler.config_keys import get_flag, get_readable, get_secret, get_string
from crawler.errors import ConfigError
from crawler.specs import AuthSpec, TransportSpec

AUTH_TYPES = ("basic", "digest", "bearer", "oauth2_client_credentials")
_AUTH_KEYS = {
    "basic": {"username", "password"},
    "digest": {"username", "password"},
    "bearer": {"token"},
    "oauth2_client_credentials": {"token_url", "client_id", "client_secret", "scope"},
}
_SECRETS = {"password", "token", "client_secret"}


def auth_spec(table: Any, path: str, environ: Mapping[str, str]) -> AuthSpec:
    """The `auth` table of a profile (at `path`), its secret read from where it is given."""
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
    secret = get_secret(table, secret_key, path, environ)
    if not secret:
        raise ConfigError(f"{path}.{secret_key}: required (or {secret_key}_env / _file)")
    spec = AuthSpec(
        type=kind,
        username=get_string(table, "username", path),
        token_url=get_string(table, "token_url", path),
        client_id=get_string(table, "client_id", path),
        scope=get_string(table, "scope", path),
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


def _proxy(table: Mapping[str, Any], path: str, environ: Mapping[str, str]) -> str:
    """The proxy URL, with the credentials from proxy_username / proxy_password_*."""
    proxy = get_string(table, "proxy", path)
    if proxy:
        parts = urlsplit(proxy)
        if parts.scheme not in ("http", "https", "socks5", "socks5h") or not parts.hostname:
            raise ConfigError(f"{path}.proxy: must be an http://, https:// or socks5:// URL")
        if parts.username or parts.password:
            raise ConfigError(
                f"{path}.proxy: put credentials in proxy_username / proxy_password_env"
            )
    username = get_string(table, "proxy_username", path)
    password = get_secret(table, "proxy_password", path, environ)
    if not (username or password):
        return proxy
    if not proxy:
        raise ConfigError(f"{path}.proxy_username: needs proxy")
    parts = urlsplit(proxy)
    userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return parts._replace(netloc=f"{userinfo}@{parts.netloc}").geturl()


def transport_spec(
    table: Mapping[str, Any], path: str, environ: Mapping[str, str]
) -> TransportSpec:
    """The proxy and TLS keys of a profile table, its TLS material loaded once to check it."""
    client_cert = get_readable(table, "client_cert", path)
    client_key = get_readable(table, "client_key", path)
    if client_key and not client_cert:
        raise ConfigError(f"{path}.client_key: needs client_cert")
    transport = TransportSpec(
        proxy=_proxy(table, path, environ),
        verify=get_flag(table, "verify", path, True),
        ca_bundle=get_readable(table, "ca_bundle", path),
        client_cert=client_cert,
        client_key=client_key,
        key_password=get_secret(table, "client_key_password", path, environ),
    )
    _check_tls(transport, path)
    return transport


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
