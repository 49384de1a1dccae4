"""Per-host fetch profiles end to end: auth, cookies, proxies, TLS, redaction, matching.

Every test runs `crawler run --config FILE` against loopback servers (tests/servers/) and
asserts on what the servers saw and on the crawl's output.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import main
from tests import servers as site
from tests.crawling import cli_process, crawl, index, sets, write_seeds
from tests.profile_crawls import files_containing, request_headers, run_crawl, write_config
from tests.servers import (
    DigestRealm,
    Servers,
    SiteFactory,
    basic,
    basic_required,
    bearer_required,
    closed_port,
    cookie_required,
)

TOKEN = "tok-7c1f0e-SECRET-bearer"
PASSWORD = "pw-93ab41-SECRET-basic"
PROXY_PASSWORD = "pw-5d20c8-SECRET-proxy"
CLIENT_SECRET = "cs-a41e77-SECRET-oauth"
OAUTH_CLIENT = "crawler-id"
ONE_TRY = "retry.max_attempts=1"


def _config(tmp_path: Path, *profiles: dict[str, Any]) -> Path:
    return write_config(tmp_path / "crawler.toml", list(profiles))


def _outcome(data: Path, url: str) -> tuple[str, int | None, str | None]:
    """(state, HTTP status, reason) of a URL's index line."""
    line = index(data)[url]
    return line["state"], line["status"], line["reason"]


def _failure(data: Path, url: str) -> tuple[str, str | None]:
    """(state, reason) of a URL's index line."""
    line = index(data)[url]
    return line["state"], line["reason"]


def _secret_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, source: str
) -> dict[str, str]:
    """`{key: value}`, `{key_env: NAME}` or `{key_file: PATH}` (the file ends with a newline)."""
    if source == "inline":
        return {key: value}
    if source == "env":
        name = f"PROFILE_TEST_{key.upper()}"
        monkeypatch.setenv(name, value)
        return {f"{key}_env": name}
    path = tmp_path / f"{key}.secret"
    path.write_text(value + "\n", encoding="utf-8")
    return {f"{key}_file": str(path)}


# -- 1. Basic and Digest -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["inline", "env", "file"])
def test_basic_auth_turns_401_into_200(
    tmp_path: Path, make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    s = make_site()
    s.route("/private", basic_required("alice", PASSWORD))
    url = s.url("/private")

    assert crawl(tmp_path / "bare", [url]) == 0
    assert _outcome(tmp_path / "bare", url) == ("done", 401, None)  # a 401 is a result
    assert "authorization" not in s.hits_for("/private")[0].headers

    password = _secret_source(tmp_path, monkeypatch, "password", PASSWORD, source)
    auth = {"type": "basic", "username": "alice", **password}
    config = _config(tmp_path, {"name": "intranet", "hosts": ["127.0.0.1"], "auth": auth})
    assert run_crawl(tmp_path / "crawl", [url], config) == 0
    assert _outcome(tmp_path / "crawl", url) == ("done", 200, None)
    assert s.hits_for("/private")[-1].headers["authorization"] == basic("alice", PASSWORD)


def test_digest_auth_answers_the_challenge(
    tmp_path: Path, make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_site()
    realm = DigestRealm("crawl-test", "alice", PASSWORD)
    s.route("/digest?page=1", realm.handler())
    url = s.url("/digest?page=1")

    assert crawl(tmp_path / "bare", [url]) == 0
    assert _outcome(tmp_path / "bare", url) == ("done", 401, None)
    assert realm.verified == []

    monkeypatch.setenv("DIGEST_PW", PASSWORD)
    auth = {"type": "digest", "username": "alice", "password_env": "DIGEST_PW"}
    config = _config(tmp_path, {"hosts": ["127.0.0.1"], "auth": auth})
    assert run_crawl(tmp_path / "crawl", [url], config) == 0
    assert _outcome(tmp_path / "crawl", url) == ("done", 200, None)
    assert realm.verified == ["/digest?page=1"]  # the response hash checked out (RFC 7616)
    assert realm.rejected == 0
    assert PASSWORD not in json.dumps([hit.headers for hit in s.hits])


def test_digest_with_a_wrong_password_ends_401(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    realm = DigestRealm("crawl-test", "alice", PASSWORD)
    s.route("/digest", realm.handler())
    auth = {"type": "digest", "username": "alice", "password": "not-the-password"}
    config = _config(tmp_path, {"hosts": ["127.0.0.1"], "auth": auth})
    assert run_crawl(tmp_path / "crawl", [s.url("/digest")], config) == 0
    assert _outcome(tmp_path / "crawl", s.url("/digest")) == ("done", 401, None)
    assert realm.rejected >= 1
    assert realm.verified == []


# -- 2. Bearer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["inline", "env", "file"])
def test_bearer_token_goes_to_the_profile_hosts_only(
    tmp_path: Path, make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    api = make_site("127.0.0.2")
    other = make_site("127.0.0.1")
    api.route("/v1/items", bearer_required(TOKEN))
    api.route("/go", site.redirect(other.url("/landing")))  # credentials must not follow
    other.route("/landing", site.ok(b"<html>landing</html>"))
    other.route("/plain", site.ok(b"<html>plain</html>"))
    token = _secret_source(tmp_path, monkeypatch, "token", TOKEN, source)
    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "auth": {"type": "bearer", **token}})
    data = tmp_path / "crawl"
    urls = [api.url("/v1/items"), api.url("/go"), other.url("/plain")]

    assert run_crawl(data, urls, config) == 0

    assert _outcome(data, api.url("/v1/items")) == ("done", 200, None)
    assert _outcome(data, other.url("/landing")) == ("done", 200, None)
    assert {hit.headers.get("authorization") for hit in api.hits} == {f"Bearer {TOKEN}"}
    assert sorted(hit.path for hit in other.hits) == ["/landing", "/plain"]
    assert all("authorization" not in hit.headers for hit in other.hits)


# -- 3. OAuth2 client credentials --------------------------------------------------------------


def _oauth(token_url: str, **secret: str) -> dict[str, str]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": token_url,
        "client_id": OAUTH_CLIENT,
        "scope": "read",
        **(secret or {"client_secret_env": "OAUTH_SECRET"}),
    }


def test_oauth2_token_is_fetched_once_and_refreshed_once(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent first requests share one token fetch; a revoked token is replaced once."""
    # Each token is good for 8 requests (server-side, announced for an hour); the token
    # endpoint takes 0.2 s, so the first 4 concurrent fetches all wait for the same one.
    tokens = servers.tokens(OAUTH_CLIENT, CLIENT_SECRET, scope="read", uses=8, delay=0.2)
    api = make_site("127.0.0.2")
    api.route("*", tokens.resource(seconds=0.05))
    monkeypatch.setenv("OAUTH_SECRET", CLIENT_SECRET)
    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "auth": _oauth(tokens.token_url)})
    urls = [api.url(f"/items/{i}") for i in range(12)]
    data = tmp_path / "crawl"

    assert run_crawl(data, urls, config, "politeness.per_host_concurrency=4") == 0

    assert {_outcome(data, url) for url in urls} == {("done", 200, None)}
    assert api.max_in_flight > 1  # the requests did overlap
    assert tokens.refusals == []  # every token request was well formed (RFC 6749 4.4, 2.3.1)
    assert len(tokens.token_requests) == 2
    assert [token.used for token in tokens.issued] == [8, 4]
    assert all(hit.headers.get("authorization", "").startswith("Bearer ") for hit in api.hits)


def test_oauth2_token_is_refreshed_once_when_it_expires(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """expires_in=1: the second wave of requests (after 1.2 s) needs one new token, not four."""
    tokens = servers.tokens(
        OAUTH_CLIENT, CLIENT_SECRET, scope="read", expires_in=1, lifetime=1.0, delay=0.2
    )
    api = make_site("127.0.0.2")
    api.route("*", tokens.resource(seconds=1.2))
    monkeypatch.setenv("OAUTH_SECRET", CLIENT_SECRET)
    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "auth": _oauth(tokens.token_url)})
    urls = [api.url(f"/items/{i}") for i in range(8)]
    data = tmp_path / "crawl"

    assert run_crawl(data, urls, config, "politeness.per_host_concurrency=4") == 0

    assert {_outcome(data, url) for url in urls} == {("done", 200, None)}
    assert api.max_in_flight == 4
    assert len(tokens.token_requests) == 2
    assert [token.used for token in tokens.issued] == [4, 4]


@pytest.mark.parametrize("failure", ["status_500", "unreachable"])
def test_oauth2_token_endpoint_failure_fails_its_urls_with_reason_auth(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, failure: str
) -> None:
    if failure == "status_500":
        token_url = servers.tokens(OAUTH_CLIENT, CLIENT_SECRET, fail_status=500).token_url
    else:
        token_url = f"http://127.0.0.4:{closed_port('127.0.0.4')}/token"
    api = make_site("127.0.0.2")
    api.route("*", bearer_required("never-issued"))
    other = make_site("127.0.0.1")
    other.route("*", site.ok(b"<html>public</html>"))
    auth = _oauth(token_url, client_secret=CLIENT_SECRET)
    config = _config(tmp_path, {"name": "api", "hosts": ["127.0.0.2"], "auth": auth})
    urls = [api.url("/a"), api.url("/b"), other.url("/c")]
    data = tmp_path / "crawl"

    assert run_crawl(data, urls, config, "retry.max_attempts=2") == 0

    for url in urls[:2]:
        assert _failure(data, url) == ("failed", "auth")
        assert index(data)[url]["attempts"] == 2
    assert _outcome(data, other.url("/c")) == ("done", 200, None)
    assert api.hits == []  # nothing is sent without its credentials


@pytest.mark.timeout(60)  # far below fetch.deadline (120 s): a deadlock fails here
@pytest.mark.parametrize(
    ("concurrency", "refusal"), [(1, 0), (4, 0), (16, 0), (4, 1024 * 1024)], ids=str
)
def test_oauth2_token_endpoint_on_the_protected_origin_never_waits_on_itself(
    tmp_path: Path,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    concurrency: int,
    refusal: int,
) -> None:
    """The token endpoint beside the resources, on one origin: when the first token is
    refused on every request in flight, its renewal must not wait for a connection that
    those requests hold (it did, until fetch.deadline), nor after a restart. A long 401
    body is not read whole: its connection is closed instead."""
    tokens = servers.tokens(
        OAUTH_CLIENT, CLIENT_SECRET, host="127.0.0.2", scope="read", expires_in=2, revoke=1
    )
    api = tokens.server
    api.route("*", tokens.resource(refusal=b"x" * refusal))
    monkeypatch.setenv("OAUTH_SECRET", CLIENT_SECRET)
    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "auth": _oauth(tokens.token_url)})
    data = tmp_path / "crawl"
    settings = [f"politeness.per_host_concurrency={concurrency}", "fetch.concurrency=16"]
    settings += ["fetch.deadline=120", ONE_TRY]  # one attempt: a hang cannot be retried away
    seen = 0
    for run in ("first", "restart"):
        tokens.revoke = 1  # the first token of each run is refused on every request
        urls = [api.url(f"/data/{run}/{i}") for i in range(16)]
        started = time.monotonic()

        assert run_crawl(data, urls, config, *settings) == 0

        elapsed = time.monotonic() - started
        assert {_outcome(data, url) for url in urls} == {("done", 200, None)}
        assert tokens.refusals == []
        assert tokens.issued[seen].revoked  # the case under test did happen
        # One token, one renewal after the 401s, then one per 1.8 s (expires_in 2, less 10%).
        fetched = len(tokens.token_requests) - seen
        assert 2 <= fetched <= 3 + int(elapsed / 1.8), (fetched, elapsed)
        seen += fetched


# -- 4. Cookies --------------------------------------------------------------------------------


def _members_site(make_site: SiteFactory) -> site.Site:
    s = make_site()
    login = b'<html><a href="/members/a">members</a></html>'
    s.route("/login", site.ok(login, headers={"Set-Cookie": "session=abc; Path=/"}))
    s.route("/members/a", cookie_required("session", "abc"))
    s.route("/members/b", cookie_required("session", "abc"))
    return s


def test_cookie_jar_is_kept_and_survives_a_restart(tmp_path: Path, make_site: SiteFactory) -> None:
    s = _members_site(make_site)
    config = _config(tmp_path, {"hosts": ["127.0.0.1"], "cookies": True})
    data = tmp_path / "crawl"

    # /members/a is only discovered on the login page: it is fetched after the cookie is set.
    assert run_crawl(data, [s.url("/login")], config, "crawl.max_depth=1") == 0
    assert _outcome(data, s.url("/members/a")) == ("done", 200, None)
    assert s.hits_for("/members/a")[0].headers["cookie"] == "session=abc"

    # A new process, a new seed: the jar came back from the crawl database.
    assert run_crawl(data, [s.url("/members/b")], config) == 0
    assert _outcome(data, s.url("/members/b")) == ("done", 200, None)
    assert s.hits_for("/members/b")[0].headers["cookie"] == "session=abc"
    assert len(s.hits_for("/login")) == 1


def test_without_cookies_true_no_cookie_is_sent(tmp_path: Path, make_site: SiteFactory) -> None:
    s = _members_site(make_site)
    config = _config(tmp_path, {"hosts": ["127.0.0.1"], "headers": {"X-Client": "crawler"}})
    data = tmp_path / "crawl"
    assert run_crawl(data, [s.url("/login")], config, "crawl.max_depth=1") == 0
    assert run_crawl(data, [s.url("/members/b")], config) == 0
    assert _outcome(data, s.url("/members/a")) == ("done", 403, None)
    assert _outcome(data, s.url("/members/b")) == ("done", 403, None)
    assert all("cookie" not in hit.headers for hit in s.hits)


# -- 5. Proxies --------------------------------------------------------------------------------


def test_http_proxy_carries_the_profile_hosts_only(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = make_site("127.0.0.2")
    other = make_site("127.0.0.1")
    api.route("*", site.ok(b"<html>api</html>"))
    other.route("*", site.ok(b"<html>other</html>"))
    proxy = servers.proxy("127.0.0.3", credentials=("proxy-user", PROXY_PASSWORD))
    monkeypatch.setenv("PROXY_PW", PROXY_PASSWORD)
    profile = {
        "hosts": ["127.0.0.2"],
        "proxy": proxy.base_url,
        "proxy_username": "proxy-user",
        "proxy_password_env": "PROXY_PW",
    }
    config = _config(tmp_path, profile)
    proxied = [api.url(f"/p{i}") for i in range(3)]
    data = tmp_path / "crawl"

    assert run_crawl(data, [*proxied, other.url("/direct")], config) == 0

    assert {_outcome(data, url) for url in [*proxied, other.url("/direct")]} == {
        ("done", 200, None)
    }
    assert sorted(r.target for r in proxy.relayed) == sorted(proxied)  # absolute-form
    assert {r.headers["proxy-authorization"] for r in proxy.relayed} == {
        basic("proxy-user", PROXY_PASSWORD)
    }
    assert len(api.hits) == 3
    assert {hit.headers.get("via") for hit in api.hits} == {"1.1 test-proxy"}
    assert [hit.path for hit in other.hits] == ["/direct"]
    assert "via" not in other.hits[0].headers


@pytest.mark.parametrize("with_credentials", [False, True], ids=["no_auth", "username_password"])
def test_socks5_proxy_carries_the_profile_hosts_only(
    tmp_path: Path,
    make_site: SiteFactory,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    with_credentials: bool,
) -> None:
    api = make_site("127.0.0.2")
    other = make_site("127.0.0.1")
    api.route("*", site.ok(b"<html>api</html>"))
    other.route("*", site.ok(b"<html>other</html>"))
    credentials = ("socks-user", PROXY_PASSWORD) if with_credentials else None
    socks = servers.socks("127.0.0.3", credentials=credentials)
    profile: dict[str, Any] = {"hosts": ["127.0.0.2"], "proxy": socks.base_url}
    if with_credentials:
        monkeypatch.setenv("SOCKS_PW", PROXY_PASSWORD)
        profile |= {"proxy_username": "socks-user", "proxy_password_env": "SOCKS_PW"}
    config = _config(tmp_path, profile)
    proxied = [api.url(f"/p{i}") for i in range(3)]
    data = tmp_path / "crawl"

    assert run_crawl(data, [*proxied, other.url("/direct")], config) == 0

    assert {_outcome(data, url) for url in [*proxied, other.url("/direct")]} == {
        ("done", 200, None)
    }
    assert socks.connects, "nothing went through the SOCKS proxy"
    assert {(c.host, c.port) for c in socks.connects} == {("127.0.0.2", api.port)}
    assert len(socks.connects) == api.connections  # every connection to the API was tunnelled
    assert socks.refused == 0
    expected = credentials or (None, None)
    assert {(c.username, c.password) for c in socks.connects} == {expected}
    assert sorted(hit.path for hit in api.hits) == ["/p0", "/p1", "/p2"]
    assert [hit.path for hit in other.hits] == ["/direct"]


# -- 6. TLS: private CA, verify = false, mutual TLS --------------------------------------------


def test_ca_bundle_of_a_profile_trusts_its_hosts_only(tmp_path: Path, servers: Servers) -> None:
    tls = servers.tls()
    inside = servers.site("127.0.0.2", tls.server_context("127.0.0.2"))
    outside = servers.site("127.0.0.1", tls.server_context("127.0.0.1"))
    inside.route("/s", site.ok(b"<html>inside</html>"))
    outside.route("/s", site.ok(b"<html>outside</html>"))
    urls = [inside.url("/s"), outside.url("/s")]

    assert crawl(tmp_path / "bare", urls, ONE_TRY) == 0
    assert {_failure(tmp_path / "bare", url) for url in urls} == {("failed", "tls")}

    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "ca_bundle": str(tls.ca_file)})
    data = tmp_path / "crawl"
    assert run_crawl(data, urls, config, ONE_TRY) == 0
    assert _outcome(data, inside.url("/s")) == ("done", 200, None)
    assert _failure(data, outside.url("/s")) == ("failed", "tls")
    assert [r.path for r in inside.hits] == ["/s"]
    assert outside.hits == []
    assert outside.handshake_failures >= 1


def test_verify_false_skips_the_certificate_check_of_its_hosts_only(
    tmp_path: Path, servers: Servers
) -> None:
    tls = servers.tls()
    inside = servers.site("127.0.0.2", tls.server_context("127.0.0.2"))
    outside = servers.site("127.0.0.1", tls.server_context("127.0.0.1"))
    inside.route("/s", site.ok(b"<html>inside</html>"))
    outside.route("/s", site.ok(b"<html>outside</html>"))
    config = _config(tmp_path, {"hosts": ["127.0.0.2"], "verify": False})
    data = tmp_path / "crawl"
    assert run_crawl(data, [inside.url("/s"), outside.url("/s")], config, ONE_TRY) == 0
    assert _outcome(data, inside.url("/s")) == ("done", 200, None)
    assert _failure(data, outside.url("/s")) == ("failed", "tls")


@pytest.mark.parametrize("key_password", [None, "key-pass-SECRET"], ids=["plain", "encrypted"])
def test_mutual_tls_needs_the_client_certificate(
    tmp_path: Path,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    key_password: str | None,
) -> None:
    tls = servers.tls()
    server = servers.site("127.0.0.2", tls.server_context("127.0.0.2", client_certs=True))
    server.route("/m", site.ok(b"<html>mutual</html>"))
    url = server.url("/m")
    trusting = {"hosts": ["127.0.0.2"], "ca_bundle": str(tls.ca_file)}

    assert run_crawl(tmp_path / "bare", [url], _config(tmp_path, trusting), ONE_TRY) == 0
    assert _failure(tmp_path / "bare", url)[0] == "failed"
    assert server.hits == []
    assert server.handshake_failures >= 1

    cert_file, key_file = tls.client_files("client@example", password=key_password)
    profile = {**trusting, "client_cert": str(cert_file), "client_key": str(key_file)}
    if key_password is not None:
        monkeypatch.setenv("CLIENT_KEY_PW", key_password)
        profile["client_key_password_env"] = "CLIENT_KEY_PW"
    data = tmp_path / "crawl"
    assert run_crawl(data, [url], _config(tmp_path, profile), ONE_TRY) == 0
    assert _outcome(data, url) == ("done", 200, None)
    [request] = server.hits
    assert request.client_cert is not None
    assert request.client_cert["subjectAltName"] == (("email", "client@example"),)


# -- 7. Redaction ------------------------------------------------------------------------------

_SECRETS = [
    TOKEN,
    PASSWORD,
    PROXY_PASSWORD,
    basic("alice", PASSWORD).removeprefix("Basic "),
    basic("proxy-user", PROXY_PASSWORD).removeprefix("Basic "),
]


def _secret_crawl(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[str], list[str]]:
    """A bearer API, a Basic intranet behind an authenticating proxy: (config, api, intranet)."""
    api = make_site("127.0.0.2")
    api.route("*", bearer_required(TOKEN))
    intranet = make_site("127.0.0.1")
    intranet.route("*", basic_required("alice", PASSWORD))
    proxy = servers.proxy("127.0.0.3", credentials=("proxy-user", PROXY_PASSWORD))
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("INTRANET_PW", PASSWORD)
    monkeypatch.setenv("PROXY_PW", PROXY_PASSWORD)
    config = _config(
        tmp_path,
        {
            "name": "api",
            "hosts": ["127.0.0.2"],
            "auth": {"type": "bearer", "token_env": "API_TOKEN"},
        },
        {
            "name": "intranet",
            "hosts": ["127.0.0.1"],
            "auth": {"type": "basic", "username": "alice", "password_env": "INTRANET_PW"},
            "proxy": proxy.base_url,
            "proxy_username": "proxy-user",
            "proxy_password_env": "PROXY_PW",
        },
    )
    return config, [api.url("/a"), api.url("/b")], [intranet.url("/c"), intranet.url("/d")]


def _assert_no_secrets(data: Path) -> None:
    assert (data / "crawl.db").is_file()
    assert files_containing(data, _SECRETS) == []  # WARC (gunzipped), JSONL, crawl.db, -wal


def test_credentials_are_redacted_in_warc_index_and_database(
    tmp_path: Path,
    make_site: SiteFactory,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, api_urls, intranet_urls = _secret_crawl(tmp_path, make_site, servers, monkeypatch)
    data = tmp_path / "crawl"

    assert run_crawl(data, api_urls + intranet_urls, config, 'log.level="debug"') == 0

    assert {_outcome(data, url) for url in api_urls + intranet_urls} == {("done", 200, None)}
    headers = request_headers(data)
    for url in api_urls + intranet_urls:
        [sent] = headers[url]
        assert sent["authorization"] == "[redacted]"
        assert sent.get("proxy-authorization", "[redacted]") == "[redacted]"
    _assert_no_secrets(data)
    assert main(["status", "--json", "--data-dir", str(data), "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert [s for s in _SECRETS if s in out + err] == []


def test_store_credentials_keeps_them_in_the_warc_only(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, api_urls, intranet_urls = _secret_crawl(tmp_path, make_site, servers, monkeypatch)
    data = tmp_path / "crawl"

    assert run_crawl(data, api_urls + intranet_urls, config, "output.store_credentials=true") == 0

    headers = request_headers(data)
    for url in api_urls:
        assert headers[url][0]["authorization"] == f"Bearer {TOKEN}"
    for url in intranet_urls:
        assert headers[url][0]["authorization"] == basic("alice", PASSWORD)
    assert files_containing(data / "warc", [TOKEN])  # the search reads through the gzip
    assert list((data / "index").glob("*.jsonl"))
    assert files_containing(data / "index", _SECRETS) == []


@pytest.mark.slow
def test_cli_output_and_status_never_show_secrets(
    tmp_path: Path, make_site: SiteFactory, servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, api_urls, intranet_urls = _secret_crawl(tmp_path, make_site, servers, monkeypatch)
    urls = api_urls + intranet_urls
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = tmp_path / "crawl"
    debug = ('log.level="debug"', 'log.format="json"')
    proc = cli_process(data, "run", "--seeds", str(seeds), "--config", str(config), *sets(*debug))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")
    shown = (out + err).decode(errors="replace")
    assert [s for s in _SECRETS if s in shown] == []

    assert {_outcome(data, url) for url in urls} == {("done", 200, None)}
    _assert_no_secrets(data)
    command = [sys.executable, "-m", "crawler", "status", "--json"]
    status = subprocess.run(
        [*command, "--data-dir", str(data), "--config", str(config)],
        capture_output=True,
        check=True,
    )
    assert json.loads(status.stdout)["states"]["done"] == len(urls)
    shown = (status.stdout + status.stderr).decode(errors="replace")
    assert [s for s in _SECRETS if s in shown] == []


# -- 8. robots.txt -----------------------------------------------------------------------------


def test_robots_txt_goes_through_the_proxy_without_credentials(
    tmp_path: Path, make_site: SiteFactory, servers: Servers
) -> None:
    api = make_site("127.0.0.2")
    api.route("/robots.txt", site.ok(b"User-agent: *\nAllow: /\n", content_type="text/plain"))
    api.route("/page", bearer_required(TOKEN))
    proxy = servers.proxy("127.0.0.3")
    profile = {"hosts": ["127.0.0.2"], "auth": {"type": "bearer", "token": TOKEN}}
    config = _config(tmp_path, {**profile, "proxy": proxy.base_url})
    data = tmp_path / "crawl"

    assert run_crawl(data, [api.url("/page")], config, "robots.obey=true") == 0

    assert _outcome(data, api.url("/page")) == ("done", 200, None)
    [robots] = api.hits_for("/robots.txt")
    assert "authorization" not in robots.headers
    assert robots.headers.get("via") == "1.1 test-proxy"
    [fetched] = api.hits_for("/page")
    assert fetched.headers["authorization"] == f"Bearer {TOKEN}"
    assert fetched.headers.get("via") == "1.1 test-proxy"
    assert sorted(r.path for r in proxy.relayed) == ["/page", "/robots.txt"]


# -- 9. Bad configuration ----------------------------------------------------------------------

SECRET_IN_CONFIG = "hunter2-SECRET-in-config"


def _bad_profiles(case: str, tmp_path: Path, servers: Servers) -> list[dict[str, Any]]:
    """The profiles of one bad configuration (every other key in them is valid)."""
    hosts = {"hosts": ["127.0.0.1"]}
    missing = str(tmp_path / "no-such-file.pem")
    if case == "ca_bundle_missing":
        return [{**hosts, "ca_bundle": missing}]
    if case == "ca_bundle_not_pem":
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a certificate\n", encoding="utf-8")
        return [{**hosts, "ca_bundle": str(garbage)}]
    if case == "token_file_missing":
        return [{**hosts, "auth": {"type": "bearer", "token_file": missing}}]
    if case == "token_env_unset":
        return [{**hosts, "auth": {"type": "bearer", "token_env": "PROFILE_TEST_UNSET_TOKEN"}}]
    if case == "unknown_auth_type":
        return [{**hosts, "auth": {"type": "kerberos", "token": SECRET_IN_CONFIG}}]
    if case == "token_not_a_string":
        return [{**hosts, "auth": {"type": "bearer", "token": 31337313373}}]
    if case == "basic_without_username":
        return [{**hosts, "auth": {"type": "basic", "password": SECRET_IN_CONFIG}}]
    if case == "bad_url_regex":
        return [{"url_regex": "^http://(unclosed"}]
    if case == "neither_hosts_nor_url_regex":
        return [{"name": "lost", "headers": {"X-Client": "crawler"}}]
    if case == "second_profile_password_env_unset":
        auth = {"type": "basic", "username": "u", "password_env": "PROFILE_TEST_UNSET_PW"}
        return [{"hosts": ["127.0.0.9"]}, {**hosts, "auth": auth}]
    if case == "client_key_missing":
        cert_file, _ = servers.tls().client_files()
        return [{**hosts, "client_cert": str(cert_file), "client_key": missing}]
    if case == "proxy_password_file_missing":
        proxy = {"proxy": "http://127.0.0.3:3128", "proxy_username": "u"}
        return [{**hosts, **proxy, "proxy_password_file": missing}]
    if case == "oauth_client_secret_env_unset":
        auth = {
            "type": "oauth2_client_credentials",
            "token_url": "http://127.0.0.4:9/token",
            "client_id": "id",
            "client_secret_env": "PROFILE_TEST_UNSET_SECRET",
        }
        return [{**hosts, "auth": auth}]
    if case == "unknown_key":
        return [{**hosts, "verfiy": False}]
    raise AssertionError(case)


# case -> what the message must name (key path first, then the bad value or variable)
BAD_CONFIG = {
    "ca_bundle_missing": ["profile[0].ca_bundle", "no-such-file.pem"],
    "ca_bundle_not_pem": ["profile[0].ca_bundle"],
    "token_file_missing": ["profile[0].auth.token_file", "no-such-file.pem"],
    "token_env_unset": ["profile[0].auth.token_env", "PROFILE_TEST_UNSET_TOKEN"],
    "unknown_auth_type": ["profile[0].auth.type", "kerberos"],
    "token_not_a_string": ["profile[0].auth.token"],
    "basic_without_username": ["profile[0].auth.username"],
    "bad_url_regex": ["profile[0].url_regex"],
    "neither_hosts_nor_url_regex": ["profile[0]", "hosts", "url_regex"],
    "second_profile_password_env_unset": [
        "profile[1].auth.password_env",
        "PROFILE_TEST_UNSET_PW",
    ],
    "client_key_missing": ["profile[0].client_key"],
    "proxy_password_file_missing": ["profile[0].proxy_password_file"],
    "oauth_client_secret_env_unset": [
        "profile[0].auth.client_secret_env",
        "PROFILE_TEST_UNSET_SECRET",
    ],
    "unknown_key": ["profile[0].verfiy"],
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_bad_profile_configuration_stops_at_start(
    case: str,
    tmp_path: Path,
    make_site: SiteFactory,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("PROFILE_TEST_UNSET_TOKEN", "PROFILE_TEST_UNSET_PW", "PROFILE_TEST_UNSET_SECRET"):
        monkeypatch.delenv(name, raising=False)
    s = make_site()
    config = _config(tmp_path, *_bad_profiles(case, tmp_path, servers))

    assert run_crawl(tmp_path / "crawl", [s.url("/")], config) == 2

    out, err = capsys.readouterr()
    for part in BAD_CONFIG[case]:
        assert part in err, f"{part!r} not in {err!r}"
    for secret in (SECRET_IN_CONFIG, "31337313373"):
        assert secret not in out + err
    assert s.hits == []


# -- 10. Matching ------------------------------------------------------------------------------


def test_first_matching_profile_wins_and_the_port_is_not_matched(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    one, two = make_site("127.0.0.2"), make_site("127.0.0.2")  # same host, two ports
    other = make_site("127.0.0.1")
    for s in (one, two, other):
        s.route("*", site.ok(b"<html>ok</html>"))
    config = _config(
        tmp_path,
        {"name": "host", "hosts": ["127.0.0.2"], "headers": {"X-Profile": "host"}},
        {
            "name": "private",
            "url_regex": r"^http://127\.0\.0\.[12]:\d+/private/",
            "headers": {"X-Profile": "private"},
        },
        {"name": "unused", "hosts": ["127.0.0.9"], "headers": {"X-Profile": "unused"}},
    )
    urls = [one.url("/private/x"), two.url("/public"), other.url("/private/y"), other.url("/p")]

    assert run_crawl(tmp_path / "crawl", urls, config) == 0

    assert [hit.headers.get("x-profile") for hit in one.hits] == ["host"]  # not "private"
    assert [hit.headers.get("x-profile") for hit in two.hits] == ["host"]
    seen = {hit.path: hit.headers.get("x-profile") for hit in other.hits}
    assert seen == {"/private/y": "private", "/p": None}


def test_wildcard_and_case_insensitive_host_names(
    tmp_path: Path, make_site: SiteFactory, servers: Servers
) -> None:
    """Host names reach the site through a proxy that resolves them itself (no DNS here)."""
    s = make_site()
    s.route("*", site.ok(b"<html>ok</html>"))
    names = ["a.example.org", "b.c.example.org", "api.example.com", "notexample.org"]
    proxy = servers.proxy("127.0.0.3", names={n: ("127.0.0.1", s.port) for n in names})
    config = _config(
        tmp_path,
        {
            "name": "wild",
            "hosts": ["*.Example.ORG", "API.EXAMPLE.COM"],
            "headers": {"X-Profile": "wild"},
            "proxy": proxy.base_url,
        },
        {
            "name": "rest",
            "url_regex": "^http://",
            "headers": {"X-Profile": "rest"},
            "proxy": proxy.base_url,
        },
    )
    urls = [
        "http://a.example.org/1",
        "http://B.C.Example.Org:8080/2",
        "http://api.example.com/3",
        "http://notexample.org/4",
    ]

    assert run_crawl(tmp_path / "crawl", urls, config) == 0

    seen = {hit.path: hit.headers.get("x-profile") for hit in s.hits}
    assert seen == {"/1": "wild", "/2": "wild", "/3": "wild", "/4": "rest"}


def test_profiles_match_unit() -> None:
    from crawler.profiles import load_profiles

    profiles = load_profiles(
        [
            {"name": "regex", "url_regex": r"^https?://api\.example\.com/v2/"},
            {"name": "hosts", "hosts": ["API.Example.com", "*.Internal.example.org", "127.0.0.2"]},
        ],
        {},
    )

    def name(url: str) -> str | None:
        found = profiles.match(url)
        return None if found is None else found.name

    assert name("https://api.example.com/v2/items") == "regex"  # first match wins
    assert name("https://api.example.com/v1/items") == "hosts"
    assert name("http://API.Example.com:8443/x") == "hosts"  # case and port do not matter
    assert name("http://a.b.internal.example.org/") == "hosts"
    assert name("http://notinternal.example.org/") is None
    assert name("http://127.0.0.2:9999/") == "hosts"
    assert name("http://127.0.0.3/") is None


# -- per-profile headers, politeness and timeouts ----------------------------------------------


def test_profile_headers_and_user_agent_go_to_its_hosts_only(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    api = make_site("127.0.0.2")
    other = make_site("127.0.0.1")
    for s in (api, other):
        s.route("*", site.ok(b"<html>ok</html>"))
    profile = {
        "hosts": ["127.0.0.2"],
        "headers": {"X-Client": "crawler", "Accept-Language": "de"},
        "user_agent": "special/1.0",
    }
    config = _config(tmp_path, profile)

    assert run_crawl(tmp_path / "crawl", [api.url("/a"), other.url("/b")], config) == 0

    [inside] = api.hits
    assert inside.headers["x-client"] == "crawler"
    assert inside.headers["accept-language"] == "de"
    assert inside.headers["user-agent"] == "special/1.0"
    [outside] = other.hits
    assert "x-client" not in outside.headers
    assert outside.headers["user-agent"].startswith("crawler/")


def test_profile_politeness_and_timeouts_apply_to_its_hosts_only(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    single = make_site("127.0.0.2")  # per_host_concurrency = 1
    spaced = make_site("127.0.0.3")  # delay = 0.2, read_timeout = 0.3
    other = make_site("127.0.0.1")  # the global settings: 4 at once, no delay, 30 s read
    single.route("*", site.slow(0.2))
    spaced.route("*", site.slow(0.02))
    spaced.route("/stall", site.stall_headers(3.0))
    other.route("*", site.slow(0.6))
    config = _config(
        tmp_path,
        {"hosts": ["127.0.0.2"], "per_host_concurrency": 1},
        {"hosts": ["127.0.0.3"], "delay": 0.2, "read_timeout": 0.3},
    )
    urls = [s.url(f"/p{i}") for s in (single, spaced, other) for i in range(4)]
    data = tmp_path / "crawl"

    assert run_crawl(data, [*urls, spaced.url("/stall")], config, ONE_TRY) == 0

    assert {_outcome(data, url) for url in urls} == {("done", 200, None)}  # 0.6 s read: fine
    assert _failure(data, spaced.url("/stall")) == ("failed", "timeout")
    assert single.max_in_flight == 1
    starts = sorted(hit.started for hit in spaced.hits)
    assert len(starts) == 5
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.18
    assert other.max_in_flight > 1
