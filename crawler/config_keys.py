"""Typed keys of a config table, each read or refused with a ConfigError naming the key.

A secret (a password, token, client secret or key password) is given as `key`, `key_env`
(the name of an environment variable) or `key_file` (a file holding it), read at start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crawler.errors import ConfigError


def get_secret(table: Mapping[str, Any], key: str, path: str, environ: Mapping[str, str]) -> str:
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


def get_string(table: Mapping[str, Any], key: str, path: str) -> str:
    """A string key of `table` ("" when absent)."""
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: must be a string")
    return value


def get_readable(table: Mapping[str, Any], key: str, path: str) -> str:
    """The path of a file that can be opened ("" when absent)."""
    value = get_string(table, key, path)
    if value:
        try:
            with open(value, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{path}.{key}: cannot read {value}: {exc.strerror}") from None
    return value


def get_flag(table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    """A true or false key of `table` (`default` when absent)."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: must be true or false")
    return value


def get_number(
    table: Mapping[str, Any], key: str, path: str, what: str, ok: Callable[[float], bool]
) -> float | None:
    """An optional number of `table` (None when absent); `what` says what it must be."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        raise ConfigError(f"{path}.{key}: must be {what}")
    return value
