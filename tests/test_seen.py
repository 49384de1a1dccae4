"""The bounded memory of links met and keys stored (crawler/seen.py)."""

from __future__ import annotations

import pytest

from crawler.hosts import BadURL
from crawler.seen import Seen
from crawler.urls import identify


def test_host_then_key_match_identify() -> None:
    seen = Seen()
    url = "HTTP://Example.COM:80/a?b=1"
    host, key = seen.host(url)
    assert (host, key) == ("example.com", None)  # no key until the link is in scope
    assert seen.key(url) == identify(url)[0]
    assert seen.host(url) == ("example.com", identify(url)[0])  # remembered


def test_sort_query_is_applied_to_keys() -> None:
    seen = Seen(sort_query=True)
    assert seen.key("http://h/p?b=2&a=1") == seen.key("http://h/p?a=1&b=2")
    plain = Seen()
    assert plain.key("http://h/p?b=2&a=1") != plain.key("http://h/p?a=1&b=2")


def test_unfetchable_url_raises_and_is_not_remembered() -> None:
    seen = Seen()
    with pytest.raises(BadURL):
        seen.host("ftp://example.com/file")
    with pytest.raises(BadURL):
        seen.host("ftp://example.com/file")


def test_store_says_whether_a_key_is_new() -> None:
    seen = Seen()
    assert not seen.stored(7)
    assert seen.store(7) is True
    assert seen.stored(7)
    assert seen.store(7) is False


def test_tables_are_cleared_when_full() -> None:
    seen = Seen(max_links=3, max_keys=2)
    for n in range(3):
        seen.host(f"http://h/{n}")
    assert seen.key("http://h/0") == identify("http://h/0")[0]
    assert seen.host("http://h/0")[1] is not None  # giving a link its key adds no entry
    seen.host("http://h/3")  # the fourth link clears the table first
    assert seen.host("http://h/0") == ("h", None)  # forgotten: worked out again
    assert seen.store(1)
    assert seen.store(2)
    assert seen.store(3)  # cleared, then stored
    assert not seen.stored(1)
    assert seen.store(1) is True  # forgotten: stored again (the frontier ignores repeats)


def test_a_link_not_in_the_form_it_is_fetched_in_is_refused() -> None:
    # Joiner gives page links in that form; a sitemap's <loc> is taken as written
    seen = Seen()
    for url in ["http://u:p@h.example/", "http://127.1/", "http://0177.0.0.1/", "http://☃.x/"]:
        with pytest.raises(BadURL):
            seen.host(url)
    assert seen.host("http://127.0.0.1/") == ("127.0.0.1", None)
