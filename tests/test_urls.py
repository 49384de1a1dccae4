"""Tests for crawler/urls.py: validation, canonical form, de-duplication key, politeness key."""

from __future__ import annotations

import re

import pytest

from crawler.urls import (
    _CANONICAL,
    MAX_URL_LENGTH,
    BadURL,
    canonical,
    host_of,
    identify,
    url_key,
    validate,
)

# -- validate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com/a?b=1",
        "HTTPS://EXAMPLE.COM/",
        "http://example.com:8080/x",
        "http://user:pw@example.com/",
        "http://[::1]:8080/",
        "http://bücher.de/straße",
        "http://example.com/" + "a" * (MAX_URL_LENGTH - len("http://example.com/")),
    ],
)
def test_validate_accepts_fetchable_urls_unchanged(url: str) -> None:
    assert validate(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/file", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("mailto:someone@example.com", "scheme 'mailto'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("example.com/path", "scheme '(none)'"),
        ("//example.com/path", "scheme '(none)'"),
        ("http:///path", "no host"),
        ("http://:80/", "no host"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:00/", "port 0"),
        ("http://[::1", "unparsable"),
        ("http://example.com:65536/", "unparsable"),
        ("http://example.com:port/", "unparsable"),
        ("http://example.com/a b", "whitespace or control"),
        (" http://example.com/", "whitespace or control"),
        ("http://example.com/\t", "whitespace or control"),
        ("http://example.com/\n", "whitespace or control"),
        ("http://exa\x00mple.com/", "whitespace or control"),
        ("http://example.com/\x7f", "whitespace or control"),
        ("http://example.com/" + "a" * MAX_URL_LENGTH, "longer than 8192"),
    ],
)
def test_validate_rejects_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(BadURL, match=re.escape(why)):
        validate(url)


def test_length_limit_is_8_kib_exactly() -> None:
    base = "http://example.com/"
    assert validate(base + "a" * (8192 - len(base)))
    with pytest.raises(BadURL):
        validate(base + "a" * (8193 - len(base)))


def test_bad_url_is_a_value_error() -> None:
    assert issubclass(BadURL, ValueError)


# -- canonical --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # scheme and host lower-cased, path case kept
        ("HTTP://EXAMPLE.COM/Path", "http://example.com/Path"),
        ("hTTps://Example.Com/A", "https://example.com/A"),
        # default ports dropped, others kept
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("http://example.com:/a", "http://example.com/a"),
        # fragment dropped
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/a?x=1#frag", "http://example.com/a?x=1"),
        ("http://example.com/#", "http://example.com/"),
        # empty path becomes "/"
        ("http://example.com", "http://example.com/"),
        ("https://example.com", "https://example.com/"),
        ("HTTP://EXAMPLE.COM", "http://example.com/"),
        ("http://example.com:8080", "http://example.com:8080/"),
        # percent-escapes: unreserved decoded, reserved upper-cased
        ("http://example.com/%7euser", "http://example.com/~user"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%2Fb", "http://example.com/a%2Fb"),
        ("http://example.com/%41%62%2d%2e%5f", "http://example.com/Ab-._"),
        ("http://example.com/a%3fb", "http://example.com/a%3Fb"),
        ("http://example.com/a%25b", "http://example.com/a%25b"),
        ("http://example.com/?q=%7e%2f", "http://example.com/?q=~%2F"),
        ("http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9"),
        # unsafe characters escaped
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/é", "http://example.com/%C3%A9"),
        ("http://example.com/{x}", "http://example.com/%7Bx%7D"),
        # query order kept
        ("http://example.com/?b=1&a=2", "http://example.com/?b=1&a=2"),
        ("HTTP://example.com/?b=1&a=2", "http://example.com/?b=1&a=2"),
        ("http://example.com/p?z=%7e&a=1&z=2", "http://example.com/p?z=~&a=1&z=2"),
        # IDN host to punycode
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("http://BÜCHER.de/straße", "http://xn--bcher-kva.de/stra%C3%9Fe"),
        # userinfo kept (host still lower-cased, default port still dropped)
        ("http://user:pw@Example.COM/", "http://user:pw@example.com/"),
        ("http://user@Example.com:8000/x", "http://user@example.com:8000/x"),
        ("https://user:pw@example.com:443/", "https://user:pw@example.com/"),
        # IPv6 literals keep their brackets
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://[::1]:80/", "http://[::1]/"),
    ],
)
def test_canonical(url: str, expected: str) -> None:
    assert canonical(url) == expected


def test_canonical_variants_of_one_url_share_a_key() -> None:
    variants = [
        "http://example.com/~a?x=1",
        "HTTP://EXAMPLE.COM/~a?x=1",
        "http://example.com:80/~a?x=1",
        "http://example.com/%7ea?x=1",
        "http://Example.com/%7Ea?x=1#top",
    ]
    assert {url_key(canonical(v)) for v in variants} == {url_key("http://example.com/~a?x=1")}


# URLs for the property checks: already canonical (fast path) and not (slow path).
URLS = [
    "http://example.com/",
    "https://example.com/",
    "http://example.com",
    "https://example.com",
    "http://example.com/a/b/c.html",
    "http://example.com/a/b/",
    "http://example.com/~user/",
    "http://example.com/a?b=1&a=2",
    "http://example.com/?q=x&q=y",
    "http://example.com/p?x=a/b?c",
    "http://example.com/path;params",
    "http://example.com/a,b;c=d",
    "http://example.com/a:b@c",
    "http://example.com/(paren)*star!",
    "http://example.com/$dollar&amp+plus=eq",
    "http://example.com/a/../b",
    "http://example.com/./a",
    "http://example.com//double",
    "http://sub.domain-with-dash.example.com/x",
    "http://1.2.3.4/",
    "http://127.0.0.1/x",
    "http://a.b.c.d.e/f",
    "http://xn--bcher-kva.de/",
    "https://example.com/it's",
    "http://example.com/-._~",
    "http://example.com/?a=1&b=&c",
    "http://example.com/?=x",
    "http://example.com/p?x=:@/",
    "http://0/",
    "https://example.com/index.php?id=42&lang=en",
    "HTTP://EXAMPLE.COM/Path",
    "http://Example.com/",
    "http://example.com:80/",
    "https://example.com:443/x",
    "http://example.com:8080/",
    "https://example.com:80/",
    "http://example.com/#frag",
    "http://example.com/a#",
    "http://example.com/%7euser",
    "http://example.com/a%2fb",
    "http://example.com/a%2Fb",
    "http://example.com/%41%42",
    "http://example.com/a b",
    "http://example.com/é",
    "http://bücher.de/straße",
    "http://user:pw@example.com/",
    "http://user@Example.com:8000/x",
    "http://[::1]/",
    "http://[2001:DB8::1]:8080/x",
    "http://example.com/?q=%7e%2f",
    "http://example.com/?q=a+b%20c",
    "http://example.com/%zz",
    "http://example.com/é?é=é",
    "http://example.com/a%25b",
    "http://example.com:/",
    "http://example.com./",
    "https://example.com/search?q=caf%C3%A9",
    "http://example.com/?a[]=1",
    "http://example.com/a|b",
    'http://example.com/a"b',
    "http://example.com/a^b`c",
    "http://example.com/?a=<b>",
    "http://example.com?x=1",
    "http://example.com?next=/x",
    "http://example.com??",
    "http://example.com/?",
    "http://example.com/?q=it's",
]


def _via_slow_path(url: str) -> str:
    """The same URL with an upper-cased scheme: never matches the fast path, must normalise."""
    scheme, sep, rest = url.partition("://")
    variant = scheme.upper() + sep + rest
    assert not _CANONICAL.fullmatch(variant)
    return canonical(variant)


def test_url_list_exercises_both_paths() -> None:
    fast = [u for u in URLS if _CANONICAL.fullmatch(u)]
    assert len(URLS) >= 50
    assert 20 <= len(fast) < len(URLS)


@pytest.mark.parametrize("url", URLS)
def test_canonical_is_idempotent(url: str) -> None:
    once = canonical(url)
    assert canonical(once) == once
    # the canonical form reached through the slow path is a fixed point too
    assert _via_slow_path(once) == once


@pytest.mark.parametrize("url", [u for u in URLS if _CANONICAL.fullmatch(u)])
def test_fast_path_agrees_with_slow_path(url: str) -> None:
    assert canonical(url) == _via_slow_path(url)


# Regressions: each of these once made the fast path disagree with the slow path.
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # no path before the query: "/" goes before the "?", not after the query
        ("http://example.com?x=1", "http://example.com/?x=1"),
        # a "/" inside the query does not count as a path
        ("http://example.com?next=/x", "http://example.com/?next=/x"),
        # an empty query is dropped on both paths
        ("http://example.com/?", "http://example.com/"),
        ("http://example.com?", "http://example.com/"),
        # w3lib escapes "'" in a query, so the fast path must not take it
        ("http://example.com/?q=it's", "http://example.com/?q=it%27s"),
    ],
)
def test_fast_path_edge_cases(url: str, expected: str) -> None:
    assert _via_slow_path(url) == expected
    assert canonical(url) == expected


# -- identify (the seeding hot path) ------------------------------------------------------------


def _valid(url: str) -> bool:
    try:
        validate(url)
    except BadURL:
        return False
    return True


@pytest.mark.parametrize("url", [u for u in URLS if _valid(u)])
def test_identify_agrees_with_validate_canonical_and_host_of(url: str) -> None:
    assert identify(url) == (url_key(canonical(validate(url))), host_of(url))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "http:///x",
        "http://example.com:0/",
        "http://[::1",
        "http://example.com/a b",
        *[u for u in URLS if not _valid(u)],
        "http://example.com/" + "a" * MAX_URL_LENGTH,  # would match the fast path
    ],
)
def test_identify_rejects_what_validate_rejects(url: str) -> None:
    with pytest.raises(BadURL):
        identify(url)


# -- url_key ----------------------------------------------------------------------------------


def test_url_key_is_stable_across_processes_and_versions() -> None:
    # blake2b-64 of the UTF-8 canonical URL: existing crawl databases depend on these values
    assert url_key("http://example.com/") == -350646258024731386
    assert url_key("https://example.com/") == 1493557592560457051
    assert url_key("http://example.com/") == url_key("http://example.com/")


def test_url_key_is_signed_64_bit_and_distinct() -> None:
    urls = [f"http://host{i % 37}.example/page/{i}?q={i * 7}" for i in range(5000)]
    keys = [url_key(canonical(u)) for u in urls]
    assert len(set(keys)) == len(urls)
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert any(k < 0 for k in keys)
    assert any(k > 0 for k in keys)


def test_url_key_distinguishes_near_identical_urls() -> None:
    urls = [
        "http://example.com/",
        "https://example.com/",
        "http://example.com/a",
        "http://example.com/A",
        "http://example.com/a?",
        "http://example.com/a?x=1",
        "http://example.com:8080/a",
        "http://user@example.com/a",
    ]
    assert len({url_key(u) for u in urls}) == len(urls)


def test_url_key_accepts_lone_surrogates() -> None:
    assert isinstance(url_key("http://example.com/\udc80"), int)


# -- host_of ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://example.com/", "example.com"),
        ("http://Example.COM/x", "example.com"),
        ("HTTP://EXAMPLE.COM:80/x", "example.com"),
        ("https://example.com:443/", "example.com"),
        ("http://example.com:8080/", "example.com:8080"),
        ("https://example.com:80/", "example.com:80"),
        ("http://example.com:443/", "example.com:443"),
        ("http://user:pw@example.com:81/", "example.com:81"),
        ("http://127.0.0.2:5000/", "127.0.0.2:5000"),
        ("http://[::1]/", "[::1]"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("http://[2001:DB8::1]:443/", "[2001:db8::1]:443"),
    ],
)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


def test_host_of_separates_ports_of_one_host() -> None:
    assert host_of("http://127.0.0.1:8001/") != host_of("http://127.0.0.1:8002/")
    assert host_of("http://a.example/") == host_of("http://a.example:80/")


def test_host_of_ipv6_with_port_is_unambiguous() -> None:
    assert host_of("http://[::1]:8080/") != host_of("http://[::1:8080]/")


def test_a_trailing_dot_names_the_same_host() -> None:
    assert host_of("http://example.com./x") == host_of("http://example.com/x") == "example.com"
    assert canonical("http://Example.COM./x") == canonical("http://example.com/x")


# -- crawl.sort_query -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://example.com/p?b=2&a=1", "http://example.com/p?a=1&b=2"),  # fast path
        ("http://example.com?b=2&a=1", "http://example.com/?a=1&b=2"),
        ("http://Example.com/p?b=%7e&a=1#x", "http://example.com/p?a=1&b=~"),  # w3lib path
        ("http://example.com:8080/?z=1&a=1&z=0", "http://example.com:8080/?a=1&z=0&z=1"),
    ],
)
def test_sort_query_makes_parameter_order_irrelevant(one: str, other: str) -> None:
    assert identify(one, sort_query=True) == identify(other, sort_query=True)
    assert identify(one) != identify(other)  # off by default: the order is kept


def test_sort_query_keeps_each_pair_and_duplicates_as_written() -> None:
    assert canonical("http://example.com/?b=2&a=&b=1", sort_query=True) == (
        "http://example.com/?a=&b=1&b=2"
    )
    assert canonical("http://example.com/?only=1", sort_query=True) == (
        "http://example.com/?only=1"
    )
