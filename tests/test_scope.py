"""Tests for crawler/scope.py: host, registrable-domain and any scope, include/exclude regexes."""

from __future__ import annotations

import pytest

from crawler.scope import Scope
from crawler.settings import CrawlSettings
from crawler.urls import host_of


def make_scope(
    scope: str = "host", include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> Scope:
    return Scope(CrawlSettings(scope=scope, include=include, exclude=exclude))


@pytest.fixture(scope="module")
def domain_scope() -> Scope:
    """One domain-mode Scope for the module: loading the public suffix list takes ~50 ms."""
    return make_scope("domain")


def allows(scope: Scope, url: str, seed: str) -> bool:
    """Whether `url`, found on a page descending from `seed`, is followed (hosts as host_of)."""
    return scope.allows(url, host_of(url), host_of(seed))


# -- scope = "host" ---------------------------------------------------------------------------


def test_host_scope_is_the_default() -> None:
    scope = Scope(CrawlSettings())
    assert allows(scope, "http://a.example/x", "http://a.example/")
    assert not allows(scope, "http://b.example/x", "http://a.example/")


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://a.example/x", "http://a.example/"),
        ("https://a.example/x?y=1", "http://a.example/"),
        ("http://A.Example/x", "http://a.example/"),
        ("http://a.example:80/x", "http://a.example/"),
        ("https://a.example:443/x", "https://a.example/"),
        ("http://a.example:8080/x", "http://a.example:8080/"),
        ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000/"),
        ("http://[::1]:8000/x", "http://[::1]:8000/"),
    ],
)
def test_host_scope_allows_the_same_host_and_port(url: str, seed: str) -> None:
    assert allows(make_scope("host"), url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://a.example:8080/x", "http://a.example/"),
        ("http://a.example/x", "http://a.example:8080/"),
        ("http://a.example:8081/x", "http://a.example:8080/"),
        ("https://a.example/x", "http://a.example:443/"),
        ("http://www.a.example/x", "http://a.example/"),
        ("http://a.example/x", "http://www.a.example/"),
        ("http://b.example/x", "http://a.example/"),
        ("http://127.0.0.2:8000/x", "http://127.0.0.1:8000/"),
        ("http://[::2]:8000/x", "http://[::1]:8000/"),
    ],
)
def test_host_scope_refuses_another_host_or_port(url: str, seed: str) -> None:
    assert not allows(make_scope("host"), url, seed)


# -- scope = "domain" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://example.co.uk/x", "http://www.example.co.uk/"),
        ("http://www.example.co.uk/x", "http://example.co.uk/"),
        ("http://x.y.example.co.uk/x", "http://www.example.co.uk/"),
        ("https://WWW.Example.CO.UK/x", "http://x.y.example.co.uk/"),
        ("http://a.example.com/x", "http://b.example.com/"),
        ("http://example.com:8080/x", "http://www.example.com/"),
        ("http://www.example.com/x", "http://example.com:8443/"),
        ("http://deep.a.github.io/x", "http://a.github.io/"),
    ],
)
def test_domain_scope_allows_the_same_registrable_domain(
    url: str, seed: str, domain_scope: Scope
) -> None:
    assert allows(domain_scope, url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://other.co.uk/x", "http://www.example.co.uk/"),
        ("http://example.co.uk/x", "http://www.other.co.uk/"),
        ("http://co.uk/x", "http://example.co.uk/"),
        ("http://b.github.io/x", "http://a.github.io/"),
        ("http://example.org/x", "http://example.com/"),
        ("http://example.com.evil.example/x", "http://example.com/"),
    ],
)
def test_domain_scope_refuses_another_registrable_domain(
    url: str, seed: str, domain_scope: Scope
) -> None:
    assert not allows(domain_scope, url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://127.0.0.1/x", "http://127.0.0.1/"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/"),
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/"),
    ],
)
def test_domain_scope_allows_the_same_ip_literal(url: str, seed: str, domain_scope: Scope) -> None:
    assert allows(domain_scope, url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://127.0.0.2/x", "http://127.0.0.1/"),
        ("http://[::2]/x", "http://[::1]/"),
        ("http://[2001:db8::2]/x", "http://[2001:db8::1]/"),
    ],
)
def test_domain_scope_refuses_another_ip_literal(url: str, seed: str, domain_scope: Scope) -> None:
    assert not allows(domain_scope, url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://10.0.0.1/x", "http://127.0.0.1/"),
        ("http://192.168.0.1/x", "http://127.0.0.1/"),
        ("http://10.20.0.1:8080/x", "http://127.0.0.1:8080/"),
    ],
)
def test_domain_scope_refuses_another_ipv4_literal_with_the_same_last_octets(
    url: str, seed: str, domain_scope: Scope
) -> None:
    assert not allows(domain_scope, url, seed)


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://[::1]:8080/x", "http://[::1]/"),
        ("http://[::1]:8080/x", "http://[::1]:9090/"),
        ("http://localhost:8080/x", "http://localhost/"),
    ],
)
def test_domain_scope_ignores_the_port_of_hosts_without_a_registrable_domain(
    url: str, seed: str, domain_scope: Scope
) -> None:
    assert allows(domain_scope, url, seed)


# -- scope = "any" ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "seed"),
    [
        ("http://a.example/x", "http://a.example/"),
        ("http://b.example:8080/x", "http://a.example/"),
        ("http://b.github.io/x", "http://a.github.io/"),
        ("http://10.0.0.1/x", "http://[::1]:8080/"),
    ],
)
def test_any_scope_allows_every_host(url: str, seed: str) -> None:
    assert allows(make_scope("any"), url, seed)


# -- include / exclude regexes ----------------------------------------------------------------


def test_without_patterns_everything_is_allowed() -> None:
    assert make_scope().patterns_allow("http://a.example/anything?at=all")


def test_include_requires_a_match_of_one_pattern() -> None:
    scope = make_scope(include=(r"/blog/", r"\.html$"))
    assert scope.patterns_allow("http://a.example/blog/post")
    assert scope.patterns_allow("http://a.example/about.html")
    assert not scope.patterns_allow("http://a.example/shop/item")
    assert not scope.patterns_allow("http://a.example/about.html?x=1")


def test_exclude_refuses_a_match_of_any_pattern() -> None:
    scope = make_scope(exclude=(r"\?sort=", r"/private/"))
    assert scope.patterns_allow("http://a.example/list")
    assert not scope.patterns_allow("http://a.example/list?sort=asc")
    assert not scope.patterns_allow("http://a.example/private/x")


def test_include_and_exclude_together() -> None:
    scope = make_scope(include=(r"/docs/",), exclude=(r"/docs/old/",))
    assert scope.patterns_allow("http://a.example/docs/new/page")
    assert not scope.patterns_allow("http://a.example/docs/old/page")
    assert not scope.patterns_allow("http://a.example/blog/page")


def test_patterns_use_search_not_match_and_respect_anchors() -> None:
    scope = make_scope(include=(r"example/docs",))
    assert scope.patterns_allow("https://a.example/docs/x")  # found mid-string
    anchored = make_scope(include=(r"^https://",), exclude=(r"\.pdf$",))
    assert anchored.patterns_allow("https://a.example/x.pdf.html")
    assert not anchored.patterns_allow("http://a.example/https://")
    assert not anchored.patterns_allow("https://a.example/x.pdf")


def test_patterns_are_case_sensitive_unless_asked() -> None:
    assert not make_scope(include=(r"/Docs/",)).patterns_allow("http://a.example/docs/")
    assert make_scope(include=(r"(?i)/Docs/",)).patterns_allow("http://a.example/docs/")


@pytest.mark.parametrize("mode", ["host", "domain", "any"])
def test_allows_applies_the_patterns_in_every_mode(mode: str) -> None:
    scope = make_scope(mode, include=(r"/keep",), exclude=(r"/keep/not",))
    seed = "http://a.example/"
    assert allows(scope, "http://a.example/keep/this", seed)
    assert not allows(scope, "http://a.example/other", seed)
    assert not allows(scope, "http://a.example/keep/not/this", seed)


def test_allows_needs_both_the_host_and_the_patterns() -> None:
    scope = make_scope("host", include=(r"/keep",))
    assert not allows(scope, "http://b.example/keep", "http://a.example/")
    assert not allows(
        make_scope("domain", include=(r"/keep",)), "http://b.example/keep", "http://a.example/"
    )


def test_patterns_allow_ignores_the_host_scope() -> None:
    scope = make_scope("host", exclude=(r"/private",))
    assert scope.patterns_allow("http://elsewhere.example/public")
    assert not scope.patterns_allow("http://elsewhere.example/private")
