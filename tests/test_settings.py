"""Tests for crawler/settings.py: defaults, the four layers, validation, config/default.toml."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crawler.errors import ConfigError
from crawler.settings import FetchSettings, RetrySettings, Settings, load_settings
from tests.overrides import with_overrides

DEFAULT_TOML = Path(__file__).resolve().parents[1] / "config" / "default.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crawler.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_without_any_layer() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.fetch.concurrency == 64
    assert settings.politeness.per_host_concurrency == 2
    assert settings.politeness.delay == 1.0
    assert settings.retry.max_attempts == 3
    assert settings.network.allowed_networks == ()
    assert settings.output.warc_max_bytes == 1024**3
    assert settings.storage.fsync is True
    assert settings.log.format == "auto"


def test_settings_are_frozen_and_keyword_only() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.fetch.concurrency = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        FetchSettings(8)  # type: ignore[call-arg]


def test_load_settings_reads_os_environ_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRAWLER_FETCH__CONCURRENCY", "9")
    assert load_settings().fetch.concurrency == 9


def test_with_overrides_replaces_only_the_named_keys() -> None:
    settings = with_overrides(Settings(), "fetch", concurrency=5, http2=False)
    assert settings.fetch.concurrency == 5
    assert settings.fetch.http2 is False
    assert settings.fetch.read_timeout == FetchSettings().read_timeout
    assert settings.retry == RetrySettings()
    assert Settings().fetch.concurrency == 64


# -- layers -----------------------------------------------------------------------------------


def test_config_file_overrides_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [fetch]
        concurrency = 8
        connect_timeout = 3      # an integer for a float key is accepted
        http2 = false
        [network]
        allowed_networks = ["127.0.0.0/8", "::1/128"]
        [output]
        prefix = "site-a"
        """,
    )
    settings = load_settings(path, environ={})
    assert settings.fetch.concurrency == 8
    assert settings.fetch.connect_timeout == 3.0
    assert isinstance(settings.fetch.connect_timeout, float)
    assert settings.fetch.http2 is False
    assert settings.network.allowed_networks == ("127.0.0.0/8", "::1/128")
    assert settings.output.prefix == "site-a"
    # untouched keys keep their defaults, in the same section and in others
    assert settings.fetch.read_timeout == 30.0
    assert settings.retry == RetrySettings()


def test_environment_variable() -> None:
    settings = load_settings(
        environ={
            "CRAWLER_FETCH__CONCURRENCY": "7",
            "CRAWLER_LOG__LEVEL": "debug",  # a bare word is a string
            "CRAWLER_STORAGE__FSYNC": "false",
            "CRAWLER_NETWORK__ALLOWED_NETWORKS": '["10.0.0.0/8"]',
            "CRAWLER_FETCH__PROXY": "http://proxy.invalid:3128",
            "CRAWLERISH": "ignored",
            "CRAWLER_NO_DOUBLE_UNDERSCORE": "ignored",
            "HOME": "/root",
        }
    )
    assert settings.fetch.concurrency == 7
    assert settings.log.level == "debug"
    assert settings.storage.fsync is False
    assert settings.network.allowed_networks == ("10.0.0.0/8",)
    assert settings.fetch.proxy == "http://proxy.invalid:3128"


@pytest.mark.parametrize(
    ("assignment", "section", "key", "value"),
    [
        ("fetch.concurrency=12", "fetch", "concurrency", 12),
        ("fetch.concurrency = 12", "fetch", "concurrency", 12),
        ("politeness.delay=0.25", "politeness", "delay", 0.25),
        ("politeness.delay=2", "politeness", "delay", 2.0),
        ("fetch.http2=false", "fetch", "http2", False),
        ('fetch.user_agent="bot/1 (x)"', "fetch", "user_agent", "bot/1 (x)"),
        ("log.level=warning", "log", "level", "warning"),
        ("fetch.proxy=http://proxy.invalid:3128", "fetch", "proxy", "http://proxy.invalid:3128"),
        ('fetch.proxy=""', "fetch", "proxy", ""),
        (
            'network.allowed_networks=["127.0.0.0/8", "10.1.0.0/16"]',
            "network",
            "allowed_networks",
            ("127.0.0.0/8", "10.1.0.0/16"),
        ),
        ("network.allowed_networks=[]", "network", "allowed_networks", ()),
        (
            'network.allowed_networks=["127.0.0.1/32:8600-8603", "[::1]/128:8080"]',
            "network",
            "allowed_networks",
            ("127.0.0.1/32:8600-8603", "[::1]/128:8080"),
        ),
        ("output.gzip_level=9", "output", "gzip_level", 9),
        ("fetch.user_agent=a=b", "fetch", "user_agent", "a=b"),
    ],
)
def test_set_assignment(assignment: str, section: str, key: str, value: Any) -> None:
    settings = load_settings(assignments=[assignment], environ={})
    assert getattr(getattr(settings, section), key) == value


def test_ca_bundle_must_be_an_existing_file(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    settings = load_settings(assignments=[f'fetch.ca_bundle="{bundle}"'], environ={})
    assert settings.fetch.ca_bundle == str(bundle)
    with pytest.raises(ConfigError, match=r"fetch\.ca_bundle"):
        load_settings(assignments=[f'fetch.ca_bundle="{tmp_path}"'], environ={})


def test_precedence_defaults_file_env_set(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [fetch]
        concurrency = 2
        connect_timeout = 2.0
        read_timeout = 2.0
        [politeness]
        delay = 2.0
        """,
    )
    environ = {
        "CRAWLER_FETCH__CONNECT_TIMEOUT": "3.0",
        "CRAWLER_FETCH__READ_TIMEOUT": "3.0",
    }
    settings = load_settings(path, ["fetch.read_timeout=4.0"], environ)
    assert settings.fetch.deadline == 120.0  # default
    assert settings.fetch.concurrency == 2  # file over default
    assert settings.politeness.delay == 2.0  # file
    assert settings.fetch.connect_timeout == 3.0  # env over file
    assert settings.fetch.read_timeout == 4.0  # --set over env and file


def test_later_set_wins() -> None:
    settings = load_settings(assignments=["fetch.concurrency=3", "fetch.concurrency=4"], environ={})
    assert settings.fetch.concurrency == 4


# -- errors name the key and the value -----------------------------------------------------------


def _config_error(
    *,
    text: str | None = None,
    sets: list[str] | None = None,
    environ: dict[str, str] | None = None,
    tmp_path: Path | None = None,
) -> str:
    path = _write(tmp_path, text) if (text is not None and tmp_path is not None) else None
    with pytest.raises(ConfigError) as info:
        load_settings(path, sets or [], environ or {})
    assert info.value.exit_code == 2
    return str(info.value)


@pytest.mark.parametrize(
    ("assignment", "fragments"),
    [
        ("fetch.concurency=3", ["fetch.concurency"]),
        ("fetchh.concurrency=3", ["fetchh"]),
        ("fetch.concurrency=many", ["fetch.concurrency", "'many'", "integer"]),
        ("fetch.concurrency=3.5", ["fetch.concurrency", "3.5", "integer"]),
        ("fetch.concurrency=true", ["fetch.concurrency", "True"]),
        ("fetch.http2=1", ["fetch.http2", "1", "true or false"]),
        ("fetch.user_agent=[1]", ["fetch.user_agent", "[1]", "string"]),
        ("politeness.delay=fast", ["politeness.delay", "'fast'", "number"]),
        ("fetch.concurrency=0", ["fetch.concurrency", "0", "1 to 10000"]),
        ("fetch.concurrency=10001", ["fetch.concurrency", "10001"]),
        ("fetch.connect_timeout=0", ["fetch.connect_timeout", "0"]),
        ("fetch.max_body_bytes=1023", ["fetch.max_body_bytes", "1023"]),
        ("fetch.max_redirects=-1", ["fetch.max_redirects", "-1"]),
        ("politeness.delay=-0.5", ["politeness.delay", "-0.5"]),
        ("politeness.delay=nan", ["politeness.delay", "nan"]),
        ("retry.max_attempts=0", ["retry.max_attempts", "0"]),
        ("output.warc_max_bytes=1000", ["output.warc_max_bytes", "1000"]),
        ("output.gzip_level=0", ["output.gzip_level", "0", "1 to 9"]),
        ("output.gzip_level=10", ["output.gzip_level", "10"]),
        ('fetch.ca_bundle="/nonexistent/ca.pem"', ["fetch.ca_bundle", "/nonexistent/ca.pem"]),
        ('output.prefix="a/b"', ["output.prefix", "'a/b'"]),
        ('output.prefix=""', ["output.prefix", "''"]),
        ("frontier.lease_seconds=5", ["frontier.lease_seconds", "5"]),
        ("log.level=loud", ["log.level", "'loud'", "debug"]),
        ("log.format=xml", ["log.format", "'xml'"]),
        ('fetch.user_agent="  "', ["fetch.user_agent"]),
        ('network.allowed_networks=["10.0.0.0/33"]', ["network.allowed_networks", "10.0.0.0/33"]),
        ('network.allowed_networks=["not-a-cidr"]', ["network.allowed_networks", "not-a-cidr"]),
        ("network.allowed_networks=10.0.0.0/8", ["network.allowed_networks", "10.0.0.0/8"]),
        ("network.allowed_networks=[1, 2]", ["network.allowed_networks", "list of strings"]),
        (
            'network.allowed_networks=["10.0.0.0/8", "127.0.0.1/32:70000"]',
            ["network.allowed_networks", "127.0.0.1/32:70000", ":FIRST-LAST"],
        ),
        ('network.allowed_networks=["127.0.0.1:8603-8600"]', ["127.0.0.1:8603-8600"]),
        ('network.allowed_networks=["::1/128:8080"]', ["::1/128:8080", "[IPv6]/LEN:PORT"]),
        ('network.allowed_networks=["10.0.0.0/8:"]', ["network.allowed_networks", "10.0.0.0/8:"]),
    ],
)
def test_set_errors_name_key_and_value(assignment: str, fragments: list[str]) -> None:
    message = _config_error(sets=[assignment])
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "assignment", ["fetch.concurrency", "concurrency=3", ".concurrency=3", "fetch.=3", "=3", ""]
)
def test_malformed_set_is_named(assignment: str) -> None:
    message = _config_error(sets=[assignment])
    assert repr(assignment) in message
    assert "section.key=value" in message


def test_env_errors_name_key_and_value() -> None:
    message = _config_error(environ={"CRAWLER_FETCH__CONCURRENCY": "-3"})
    assert "fetch.concurrency" in message
    assert "-3" in message
    message = _config_error(environ={"CRAWLER_FETCH__NOPE": "1"})
    assert "fetch.nope" in message
    message = _config_error(environ={"CRAWLER_NOPE__KEY": "1"})
    assert "[nope]" in message


def test_file_errors_name_key_and_value(tmp_path: Path) -> None:
    assert "fetch.colour" in _config_error(text="[fetch]\ncolour = 'red'\n", tmp_path=tmp_path)
    assert "[fetcher]" in _config_error(text="[fetcher]\nconcurrency = 1\n", tmp_path=tmp_path)
    message = _config_error(text="[fetch]\nconcurrency = '8'\n", tmp_path=tmp_path)
    assert "fetch.concurrency" in message
    assert "'8'" in message
    message = _config_error(text="[retry]\nbackoff_max = -1\n", tmp_path=tmp_path)
    assert "retry.backoff_max" in message
    assert "-1" in message
    message = _config_error(text="concurrency = 8\n", tmp_path=tmp_path)
    assert "[concurrency]" in message
    assert "8" in message


def test_unreadable_or_invalid_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(missing, environ={})
    broken = _write(tmp_path, "[fetch\nconcurrency = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, environ={})
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[fetch]\nuser_agent = '\xff'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(binary, environ={})


def test_a_later_layer_replaces_a_bad_earlier_value(tmp_path: Path) -> None:
    # only the merged value is validated: a bad file value overridden by --set is fine
    path = _write(tmp_path, "[fetch]\nconcurrency = 0\n")
    settings = load_settings(path, ["fetch.concurrency=5"], {})
    assert settings.fetch.concurrency == 5


# -- config/default.toml is the documentation of Settings ---------------------------------------


def _dataclass_defaults() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        if section.name == "profiles":  # [[profile]] tables: a commented example, no defaults
            continue
        value = getattr(defaults, section.name)
        result[section.name] = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return result


def _documented() -> dict[str, Any]:
    with DEFAULT_TOML.open("rb") as handle:
        return tomllib.load(handle)


def test_default_toml_has_exactly_the_settings_sections_and_keys() -> None:
    documented = _documented()
    expected = _dataclass_defaults()
    assert list(documented) == list(expected)
    for section, keys in expected.items():
        assert sorted(documented[section]) == sorted(keys), section


def _key_params(known: dict[tuple[str, str], str]) -> list[Any]:
    params = []
    for section, keys in _dataclass_defaults().items():
        for key in keys:
            marks = []
            if (section, key) in known:
                marks = [pytest.mark.xfail(strict=True, reason=known[(section, key)])]
            params.append(pytest.param(section, key, marks=marks, id=f"{section}.{key}"))
    return params


@pytest.mark.parametrize(("section", "key"), _key_params({}))
def test_default_toml_value_equals_dataclass_default(section: str, key: str) -> None:
    documented = _documented()[section][key]
    default = _dataclass_defaults()[section][key]
    if isinstance(default, tuple):
        documented = tuple(documented)
    assert documented == default
    assert type(documented) is type(default)


def test_default_toml_loads_to_the_defaults_through_load_settings() -> None:
    assert load_settings(DEFAULT_TOML, environ={}) == Settings()


_UNCOMMENTED: dict[tuple[str, str], str] = {}


def _preceding_lines() -> dict[tuple[str, str], str]:
    """(section, key) -> the line just above the key's line in config/default.toml."""
    found: dict[tuple[str, str], str] = {}
    section = ""
    previous = ""
    for line in DEFAULT_TOML.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        elif stripped and not stripped.startswith("#") and "=" in stripped:
            found[(section, stripped.split("=", 1)[0].strip())] = previous
        previous = stripped
    return found


@pytest.mark.parametrize(("section", "key"), _key_params(_UNCOMMENTED))
def test_default_toml_key_is_preceded_by_a_comment(section: str, key: str) -> None:
    preceding = _preceding_lines()
    assert (section, key) in preceding
    assert preceding[(section, key)].startswith("#")


def test_default_toml_comment_check_would_catch_a_bare_key() -> None:
    lines = _preceding_lines()
    assert len(lines) == sum(len(keys) for keys in _dataclass_defaults().values())


def test_a_number_given_for_a_string_key_is_taken_as_text() -> None:
    settings = load_settings(None, ["output.prefix=2024"], environ={"CRAWLER_OUTPUT__PREFIX": "7"})
    assert settings.output.prefix == "2024"


def test_proxy_must_be_a_proxy_url() -> None:
    assert load_settings(None, ["fetch.proxy=http://127.0.0.1:3128"]).fetch.proxy
    for bad in ("7", "ftp://proxy:21", "http://"):
        with pytest.raises(ConfigError, match=r"fetch\.proxy"):
            load_settings(None, [f"fetch.proxy={bad}"])
