"""Tests for crawler/urls.py: validation, canonical form, de-duplication key, politeness key."""

from __future__ import annotations

import random
import re
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx2
import idna
import pytest

from crawler.joiner import Joiner
from crawler.urls import (
    _CANONICAL,
    MAX_URL_LENGTH,
    BadURL,
    _fast,
    canonical,
    encoded,
    host_of,
    identify,
    locate,
    url_key,
    validate,
    without_userinfo,
)

# -- validate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://example.com/a?b=1",
        "HTTPS://EXAMPLE.COM/",
        "http://example.com:8080/x",
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
        # userinfo is never sent: a seed with it is refused, its credentials go in a profile
        ("http://user:pass@example.com/", "credentials belong in a profile"),
        ("http://user@example.com/", "credentials belong in a profile"),
        ("http://:@example.com/", "credentials belong in a profile"),
        ("http://@example.com/", "credentials belong in a profile"),
        ("https://u:p@0x7f.1:8080/", "credentials belong in a profile"),
        # hosts the HTTP client refuses
        ("http://☃.invalid/", "not valid IDNA"),
        ("http://xn--/x", "not valid IDNA"),
        ("http://xn--zz.example/", "not valid IDNA"),
        ("http://xn--n3h.example/", "not valid IDNA"),  # ☃ as an A-label
        ("http://a.xn--bcher-.de/", "not valid IDNA"),
        ("http://ex\u00adample.com/", "not valid IDNA"),  # soft hyphen
        ("http://\u200bexample.com/", "not valid IDNA"),  # zero-width space
        ("http://\uff11\uff12\uff17.0.0.1/", "not valid IDNA"),  # full-width digits
        ("http://\uff45xample.com/", "not valid IDNA"),
        ("http://bücher-.de/", "not valid IDNA"),
        ("http://[v1.x]/", "not an IPv6 address"),
        ("http://[::1]junk/", "not an IPv6 address"),
        ("http://[::1];/", "not an IPv6 address"),
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


# -- hosts as browsers read them (WHATWG URL standard) ----------------------------------------


@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        # octal, hexadecimal, decimal, short forms and mixes of them
        ("http://0177.0.0.1/", "http://127.0.0.1/"),
        ("http://0177.0000.0.01/", "http://127.0.0.1/"),
        ("http://0x7f.0.0.1/", "http://127.0.0.1/"),
        ("http://0X7F.0x0.0X0.0x1/", "http://127.0.0.1/"),
        ("http://0x7f000001/", "http://127.0.0.1/"),
        ("http://017700000001/", "http://127.0.0.1/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://127.0.1/", "http://127.0.0.1/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://0177.0x0.1/", "http://127.0.0.1/"),
        ("http://10.0x10203/", "http://10.1.2.3/"),
        ("http://192.168.0x101/", "http://192.168.1.1/"),
        ("http://169.254.43518/", "http://169.254.169.254/"),
        ("http://0xa9fea9fe/", "http://169.254.169.254/"),
        ("http://127.0.0.01/", "http://127.0.0.1/"),  # a leading zero is octal
        ("http://0127.0.0.1/", "http://87.0.0.1/"),  # octal 127 is 87
        ("http://0/", "http://0.0.0.0/"),
        ("http://0x/", "http://0.0.0.0/"),  # "0x" alone is 0
        ("http://00/", "http://0.0.0.0/"),
        ("http://4294967295/", "http://255.255.255.255/"),
        ("http://0xffffffff/", "http://255.255.255.255/"),
        ("http://037777777777/", "http://255.255.255.255/"),
        ("http://0x00000000000000000000000000000007f.1/", "http://127.0.0.1/"),
        # a final dot is dropped from an address
        ("http://127.0.0.1./", "http://127.0.0.1/"),
        ("http://0x7f.1./x", "http://127.0.0.1/x"),
        # ideographic full stop: the client's IDNA encoding makes it a dot
        ("http://127\u30020.0.1/", "http://127.0.0.1/"),
        # the rest of the URL is kept as written
        ("http://0x7f.1:8080/a/../b?q=1&r#frag", "http://127.0.0.1:8080/a/../b?q=1&r#frag"),
        ("HTTPS://0X7F.1:443/P", "HTTPS://127.0.0.1:443/P"),
        ("http://0x7f.1:/", "http://127.0.0.1:/"),
        # names, dotted quads and IPv6 are fetched as written
        ("http://1.2.3.4/", "http://1.2.3.4/"),
        ("http://1.2.3.4.example/", "http://1.2.3.4.example/"),
        ("http://example.0x/", None),  # ends in a number ("0x" is 0) but is not an address
        ("http://1.2.3.4../", "http://1.2.3.4../"),  # two final dots: a name (WHATWG)
        ("http://0x7g.example/", "http://0x7g.example/"),
        ("http://a1.b2/", "http://a1.b2/"),
        ("http://1.2.3.-1/", "http://1.2.3.-1/"),  # "-1", "+1", "1_0" are no numbers
        ("http://1.2.3.+1/", "http://1.2.3.+1/"),
        ("http://1.2.3.1_0/", "http://1.2.3.1_0/"),
        ("http://3com.example/", "http://3com.example/"),
        ("http://example.3com/", "http://example.3com/"),
        ("http://xn--bcher-kva.de/", "http://xn--bcher-kva.de/"),
        ("http://bücher.de/", "http://bücher.de/"),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:127.0.0.1]/"),
    ],
)
def test_ipv4_hosts_are_fetched_as_dotted_quads(url: str, fetched: str | None) -> None:
    if fetched is None:
        with pytest.raises(BadURL, match="not an IPv4 address"):
            validate(url)
        return
    assert validate(url) == fetched
    assert locate(url)[0] == encoded(fetched)
    assert identify(url) == identify(fetched)
    assert host_of(url) == host_of(fetched)
    assert canonical(url) == canonical(fetched)


@pytest.mark.parametrize(
    "host",
    [
        "4294967296",  # 2^32
        "0x100000000",
        "040000000000",
        "256.0.0.1",
        "1.256.0.1",
        "1.2.256.1",
        "1.2.3.256",
        "1.2.65536",
        "1.16777216",
        "1.2.3.4.5",
        "0.0.0.0.0",
        "1.2.3.999",
        "09.0.0.1",  # 9 is no octal digit
        "0x7g.1",
        "1..1",
        ".1",
        "example.123",
        "example.0x1",
        "a.b.c.0",
        "1.2.3.٣",  # an Arabic-Indic digit is no ASCII digit
        "9" * 5000,  # too many digits for int(): refused, not a crash
    ],
)
def test_hosts_ending_in_a_number_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(BadURL):
        validate(f"http://{host}/")
    with pytest.raises(BadURL):
        locate(f"http://{host}:8080/x")


def test_many_leading_zeros_are_still_an_address() -> None:
    assert validate("http://0." + "0" * 200 + "1/") == "http://0.0.0.1/"


def test_ipv4_reading_agrees_with_inet_aton() -> None:
    """glibc's inet_aton reads the same spellings (the WHATWG rules come from it)."""
    rng = random.Random(20261202)
    spellings = [str, oct, hex, lambda n: f"0{n:o}", lambda n: f"0X{n:X}"]
    for _ in range(3000):
        count = rng.randint(1, 4)
        numbers = [
            rng.choice([0, 1, 127, 255, 256, rng.randrange(0, 1 << 33)]) for _ in range(count)
        ]
        if rng.random() < 0.5:
            numbers[:-1] = [n % 256 for n in numbers[:-1]]
            numbers[-1] %= 256 ** (5 - count)
        host = ".".join(rng.choice(spellings)(n).replace("0o", "0") for n in numbers)
        try:
            want: str | None = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            want = None
        try:
            got: str | None = host_of(validate(f"http://{host}/"))
        except BadURL:
            got = None
        assert got == want, host


@pytest.mark.parametrize(
    "host",
    [
        "☃.invalid",
        "ex\u00adample.com",
        "\u200bexample.com",
        "\uff11\uff12\uff17.0.0.1",
        "1.2.3.999",
        "[v1.x]",
    ],
)
def test_hosts_the_http_client_refuses_are_refused(host: str) -> None:
    with pytest.raises(httpx2.InvalidURL):
        httpx2.Request("GET", f"http://{host}/")
    with pytest.raises(BadURL):
        validate(f"http://{host}/")


def test_the_http_client_connects_to_the_host_the_guard_judges() -> None:
    """Every URL validate accepts, httpx2 accepts, with the host that host_of names."""
    numeric = ["http://0177.0.0.1:81/", "http://0x7f.1/", "http://2130706433/", "http://127.1./"]
    for url in [*URLS, *numeric]:
        try:
            fetched = validate(url)
        except BadURL:
            continue
        host = _bare(host_of(fetched))
        ascii_host = host if host.isascii() else idna.encode(host).decode("ascii")
        client_host = httpx2.URL(fetched).raw_host.decode().removesuffix(".")
        assert client_host.lower() == ascii_host, url


def _bare(host: str) -> str:
    """A host_of key without its port (and an IPv6 address without its brackets)."""
    return host[1 : host.index("]")] if host.startswith("[") else host.partition(":")[0]


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
        # userinfo dropped (it is never sent: the same resource)
        ("http://user:pw@Example.COM/", "http://example.com/"),
        ("http://user@Example.com:8000/x", "http://example.com:8000/x"),
        ("https://user:pw@example.com:443/", "https://example.com/"),
        # an IPv4 address in any spelling is its dotted quad
        ("http://0177.0.0.1/", "http://127.0.0.1/"),
        ("HTTP://0X7F.1:80/a#b", "http://127.0.0.1/a"),
        ("http://2130706433:8080", "http://127.0.0.1:8080/"),
        ("http://127.0.0.1./", "http://127.0.0.1/"),
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
    """Whether a URL is taken: validate's verdict on its encoded form, what locate checks."""
    try:
        validate(encoded(url))
    except BadURL:
        return False
    return True


@pytest.mark.parametrize("url", [u for u in URLS if _valid(u)])
def test_identify_agrees_with_validate_canonical_and_host_of(url: str) -> None:
    fetched = validate(encoded(url))  # locate's URL to fetch: one (RFC 3986) form
    assert identify(url) == (url_key(canonical(fetched)), host_of(fetched))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "http:///x",
        "http://example.com:0/",
        "http://[::1",
        "http://example.com/a\tb",
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


# -- Joiner: links joined by concatenation agree with urljoin --------------------------------


def _reference_join(base: str, href: str) -> str | None:
    """What link extraction did before the fast paths: urljoin, then the same checks, then
    the form the URL is fetched in (no userinfo, an IPv4 address as inet_aton reads it)."""
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    hostport = parts.netloc.rpartition("@")[2]
    host = parts.hostname
    if re.fullmatch(r"(?:.*\.)?(?:[0-9]+|0x[0-9a-f]*)\.?", host):  # ends in a number
        try:
            quad = socket.inet_ntoa(socket.inet_aton(host.removesuffix(".")))
        except OSError:
            return None
        hostport = quad + hostport[len(host) :]
    elif not host.isascii() or parts.netloc.rpartition("@")[2].startswith("["):
        try:
            httpx2.URL(f"http://{hostport}/")
        except httpx2.InvalidURL:
            return None
    start = len(parts.scheme) + 3
    if hostport == parts.netloc:
        pass
    elif url[start : start + len(parts.netloc)] == parts.netloc:
        url = url[:start] + hostport + url[start + len(parts.netloc) :]
    else:  # urlsplit dropped a tab or newline from it
        url = urlunsplit(parts._replace(netloc=hostport))
    return encoded(url.split("#", 1)[0])  # as browsers request it (issue 14)


def _identified(url: str | None) -> tuple[int, str] | str | None:
    """(key, host) of a joined URL, "bad" when identify rejects it."""
    if url is None:
        return None
    try:
        return identify(url)
    except BadURL:
        return "bad"


BASES = [
    "http://a.example/dir/page.html",
    "http://a.example/dir/",
    "http://a.example",
    "http://a.example/",
    "https://a.example/dir/page.html?q=1#top",
    "http://a.example?q=1",
    "http://127.0.0.1:18080/p1.html",
    "http://a.example:80/dir/page",
    "https://a.example:8443/x/y/",
    "http://A.Example/Dir/Page",
    # bases that rule out some or all of the fast paths
    "HTTP://a.example/dir/page",
    "http://user:pw@a.example/dir/page",
    "http://[::1]:8080/dir/page",
    "http://a.example:99999/dir/page",
    "http://a.example/a//b/page",
    "http://a.example/./a/page",
    "http://a.example/a/../b/page",
    "http://a.example/a/b/..",
    "http://a.example/d;p/x;q",
    "http://a.example/d é/page",
    "http://bücher.example/dir/page",
    "http://0x7f.1/dir/page",
    "http://127.1:8080/d/",
    "http://127.0.0.1./d/p",
    "http://u:p@0177.0.0.1/d/p",
]

HREFS = [
    # absolute
    "http://b.example/x",
    "https://b.example/x?y=1#z",
    "http://b.example",
    "http://b.example?x=1",
    "http://b.example:8080/x",
    "http://b.example:99999/x",
    "http://b.example:/x",
    "http://B.EXAMPLE/X",
    "HTTP://b.example/x",
    "http://user@b.example/x",
    "http://user:pw@b.example:81/x?q#f",
    "http://@b.example/x",
    "http://a@b@c.example/x",
    "http://0177.0.0.1/x",
    "http://0x7f.1:8080/x",
    "http://2130706433/x",
    "http://127.0.0.1./x",
    "http://u:p@127.1/x",
    "//u:p@0x7f.1/x",
    "http://1.2.3.999/x",
    "http://example.123/x",
    "http://☃.example/x",
    "http://[::1]/x",
    "http://[::1]x/",
    "http://[::1/x",
    "http://b.example/a/../b/./c",
    "http://b.example/x;p",
    "http://b.example/x;",
    "http://b.example/x?",
    "http://b.example/x#",
    "http://b.example/é?é=é",
    "http://b.example/a b",
    "http:relative",
    "https:x",
    "http://",
    # network-path
    "//b.example/x",
    "//b.example:8080/x?q#f",
    "///x",
    # rooted
    "/",
    "/x",
    "/p14600.html",
    "/a/b/c?d=e&f=g#h",
    "/a//b",
    "/a/./b",
    "/a/../b",
    "/..",
    "/.",
    "/.hidden",
    "/x?",
    "/x?#f",
    "/x#",
    "/x;p",
    "/x;",
    "/a b",
    "/дом",
    "/caf%C3%A9",
    "/x\ty",
    "/x\ny#f",
    "/x#a\nb",
    " /x ",
    "/x?q=a b",
    "/x?q=\u00e9",
    # query and fragment only
    "?q",
    "?q=1&r=2#f",
    "?",
    "?#f",
    "#f",
    "#",
    "",
    "   ",
    # relative
    "x",
    "x/",
    "other.html",
    "sub/x?y#z",
    "./x",
    "../x",
    "../../../../x",
    "a/./b",
    "a/../b",
    "a//b",
    "a/.",
    "a/..",
    ".hidden",
    "x:y",
    "a/b:c",
    "h",
    "home.html",
    "héllo/wörld",
    "x;p",
    "a b",
    # not http(s)
    "javascript:void(0)",
    "mailto:x@y.example",
    "data:text/html,<a>",
    "ftp://b.example/",
    "tel:+44",
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("href", HREFS)
def test_resolver_agrees_with_urljoin(base: str, href: str) -> None:
    got = Joiner(base).join(href)
    want = _reference_join(base, href)
    assert got == want
    assert _identified(got) == _identified(want)


@pytest.mark.parametrize(
    ("base", "href", "expected"),
    [
        ("http://a.example/d/p", "/x", "http://a.example/x"),
        ("http://a.example/d/p", "/x?q=1#f", "http://a.example/x?q=1"),
        ("http://a.example:8080/d/p", "/x", "http://a.example:8080/x"),
        ("http://A.Example/d/p", "/x", "http://A.Example/x"),
        ("http://a.example/d/p", "/a//b", "http://a.example/a//b"),
        ("http://a.example/d/p", "/дом", "http://a.example/%D0%B4%D0%BE%D0%BC"),
        ("http://a.example/d/p", "http://b.example:81/x#f", "http://b.example:81/x"),
        ("https://a.example/d/p", "http://b.example/x", "http://b.example/x"),
        ("http://a.example/d/p", "x/y?q", "http://a.example/d/x/y?q"),
        ("http://a.example", "x", "http://a.example/x"),
        ("http://a.example/d/p?old", "?new#f", "http://a.example/d/p?new"),
        ("http://a.example?old", "?new", "http://a.example?new"),
    ],
)
def test_resolver_joins_common_links_without_urljoin(
    base: str, href: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_urljoin(*args: object) -> None:
        raise AssertionError("took the urljoin path")

    monkeypatch.setattr("crawler.joiner.urljoin", no_urljoin)
    assert Joiner(base).join(href) == expected


def test_resolver_agrees_with_urljoin_on_random_links() -> None:
    rng = random.Random(20240601)
    pieces = [*"ab/.?#;:%@ é\t-_~=&h", "http://", "https://", "//", "..", "./", ":80", "[::1]"]
    pieces += ["0x7f", "0177", "1", ".1", "u:p@", "256"]
    for base in BASES:
        resolver = Joiner(base)
        for _ in range(300):
            href = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
            href = rng.choice(["", "/", "?", "x/", "http://b.example/"]) + href
            assert resolver.join(href) == _reference_join(base, href), (base, href)


@pytest.mark.parametrize(
    ("base", "href", "expected"),
    [
        ("http://a.example/d/p", "http://0177.0.0.1:81/x#f", "http://127.0.0.1:81/x"),
        ("http://a.example/d/p", "//0x7f.1/x", "http://127.0.0.1/x"),
        ("http://a.example/d/p", "http://user:pw@b.example/x?q", "http://b.example/x?q"),
        ("http://a.example/d/p", "//user@127.1/", "http://127.0.0.1/"),
        ("http://0x7f.1/d/p", "x", "http://127.0.0.1/d/x"),
        ("http://0x7f.1/d/p", "/x", "http://127.0.0.1/x"),
        ("http://user:pw@a.example/d/p", "?q", "http://a.example/d/p?q"),
        ("http://a.example/d/p", "http://1.2.3.999/", None),
        ("http://a.example/d/p", "http://☃.example/", None),
    ],
)
def test_resolver_gives_links_in_the_form_they_are_fetched_in(
    base: str, href: str, expected: str | None
) -> None:
    url = Joiner(base).join(href)
    assert url == expected
    if url is not None:
        assert locate(url)[0] == url  # what Seen checks before a link is followed


@pytest.mark.parametrize(
    ("url", "fast"),
    [
        ("http://127.0.0.1:8080/x", True),
        ("http://1.2.3.4/", True),
        ("http://a1.example/", True),
        ("http://127.1/", False),
        ("http://2130706433/", False),
        ("http://0/", False),
        ("http://0x7f.1/", False),
        ("http://127.0.0.01/", False),
        ("http://example.123/", False),
        ("http://xn--bcher-kva.de/", False),
        ("http://xn--n3h.example/", False),  # refused by the slow path
    ],
)
def test_fast_path_takes_only_hosts_fetched_as_written(url: str, fast: bool) -> None:
    assert (_fast(url) is not None) is fast
    assert _CANONICAL.fullmatch(url) is not None  # the regex alone would have taken each


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://u:p@h.example/x", "http://h.example/x"),
        ("https://u@h.example:8443/x?a@b#c@d", "https://h.example:8443/x?a@b#c@d"),
        ("http://a@b@h.example/", "http://h.example/"),
        ("//u:p@h.example/x", "//h.example/x"),
        ("http://u:p@[::1/x", "http://[::1/x"),  # unparsable, still without its userinfo
        ("http://h.example/x@y", "http://h.example/x@y"),
        ("http://h.example?x=u:p@y", "http://h.example?x=u:p@y"),
        ("mailto:u@h.example", "mailto:u@h.example"),
        ("/rooted/u:p@x", "/rooted/u:p@x"),
    ],
)
def test_without_userinfo(url: str, expected: str) -> None:
    assert without_userinfo(url) == expected


@pytest.mark.parametrize("url", [u for u in URLS if _valid(u)])
@pytest.mark.parametrize("sort_query", [False, True])
def test_locate_is_identify_before_the_key(url: str, sort_query: bool) -> None:
    fetched, canonical_url, host = locate(url, sort_query)
    assert (url_key(canonical_url), host) == identify(url, sort_query)
    assert fetched == validate(encoded(url))
    assert canonical_url == canonical(fetched, sort_query)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///x", "http://example.com/a\tb"])
def test_locate_rejects_what_identify_rejects(url: str) -> None:
    with pytest.raises(BadURL):
        locate(url)
