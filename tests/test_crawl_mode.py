"""End-to-end crawl mode: links followed to a depth, within scope, as the server sees it."""

from __future__ import annotations

from pathlib import Path

from tests import servers as site
from tests.crawling import crawl, index, warc_records
from tests.servers import SiteFactory


def _page(*hrefs: str, head: str = "") -> bytes:
    links = "".join(f'<a href="{h}">{h}</a>\n' for h in hrefs)
    return f"<html><head>{head}</head><body>{links}</body></html>".encode()


def test_follows_links_within_depth_and_scope(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site("127.0.0.1")
    other = make_site("127.0.0.2")
    other.route("/elsewhere", site.ok(b"<html>out of scope</html>"))
    s.route("/", site.ok(_page("a", "/b#section", "#top", "mailto:x@example.com", "/")))
    s.route("/a", site.ok(_page("/c", other.url("/elsewhere"), "javascript:void(0)")))
    s.route("/b", site.ok(_page("/a", "/d", head='<base href="/sub/">') + _page("rel")))
    s.route("/c", site.ok(_page("/deep")))  # depth 2: its links are beyond max_depth 2
    s.route("/d", site.ok(b"<html>no links</html>"))
    s.route("/sub/rel", site.ok(b"<html>resolved against base</html>"))
    s.route("/deep", site.ok(b"never fetched"))
    data = tmp_path / "crawl"

    assert crawl(data, [s.url("/")], "crawl.max_depth=2") == 0

    lines = index(data)
    assert sorted(lines) == sorted(
        s.url(p) for p in ("/", "/a", "/b", "/c", "/d", "/sub/rel")
    )  # no fragment variants, no cycles fetched twice, nothing out of scope
    assert {u: line["depth"] for u, line in lines.items()} == {
        s.url("/"): 0,
        s.url("/a"): 1,
        s.url("/b"): 1,
        s.url("/c"): 2,
        s.url("/d"): 2,
        s.url("/sub/rel"): 2,
    }
    assert lines[s.url("/c")]["discovered_from"] == s.url("/a")
    assert lines[s.url("/a")]["out_of_scope"] == 1
    assert lines[s.url("/c")]["links"] is None  # at max depth, not parsed
    assert other.hits == []
    assert s.hits_for("/deep") == []
    for path in ("/", "/a", "/b"):
        assert len(s.hits_for(path)) == 1


def test_nofollow_variants(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/", site.ok(_page("/meta", "/header", "/relnf", "/ok")))
    s.route("/meta", site.ok(_page("/from-meta", head='<meta name="robots" content="NOFOLLOW">')))
    s.route("/header", site.ok(_page("/from-header"), headers={"X-Robots-Tag": "nofollow"}))
    s.route("/ok", site.ok(b'<html><a rel="nofollow" href="/relnf-child">x</a></html>'))
    s.route("/relnf", site.ok(b"<html>fetched: linked normally from /</html>"))
    for path in ("/from-meta", "/from-header", "/relnf-child"):
        s.route(path, site.ok(b"must not be fetched"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "crawl.max_depth=3") == 0
    assert sorted(index(data)) == sorted(
        s.url(p) for p in ("/", "/meta", "/header", "/relnf", "/ok")
    )
    assert not s.hits_for("/from-meta")
    assert not s.hits_for("/from-header")
    assert not s.hits_for("/relnf-child")


def test_link_cap_and_binary_bodies(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    many = _page(*(f"/p{i}" for i in range(10_000)))
    s.route("/many", site.ok(many))
    s.route("*", site.ok(b"<html>leaf</html>"))
    s.route("/blob", site.ok(b'\x89PNG <a href="/hidden">', content_type="image/png"))
    s.route("/hidden", site.ok(b"must not be fetched"))
    data = tmp_path / "crawl"
    assert (
        crawl(
            data,
            [s.url("/many"), s.url("/blob")],
            "crawl.max_depth=1",
            "crawl.max_links_per_page=50",
        )
        == 0
    )
    lines = index(data)
    assert lines[s.url("/many")]["links"] == 50
    assert lines[s.url("/many")]["links_truncated"] is True
    assert len(lines) == 2 + 50
    assert not s.hits_for("/hidden")
    assert lines[s.url("/blob")]["links"] is None
    # every page fetched has its WARC response record (a revisit where the payload repeats)
    responses = {r["url"] for r in warc_records(data) if r["type"] in ("response", "revisit")}
    assert responses == set(lines)


def test_gzipped_html_links_are_found(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/", site.gzip_body(_page("/next")))
    s.route("/next", site.ok(b"<html>next</html>"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "crawl.max_depth=1") == 0
    assert sorted(index(data)) == [s.url("/"), s.url("/next")]


def test_bulk_mode_does_not_parse_or_follow(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/", site.ok(_page("/a")))
    s.route("/a", site.ok(b"must not be fetched"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")]) == 0
    assert list(index(data)) == [s.url("/")]
    assert index(data)[s.url("/")]["links"] is None
    assert not s.hits_for("/a")


def test_include_and_exclude_patterns(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/", site.ok(_page("/docs/1", "/docs/private/2", "/blog/3")))
    s.route("*", site.ok(b"<html>leaf</html>"))
    data = tmp_path / "crawl"
    assert (
        crawl(
            data,
            [s.url("/")],
            "crawl.max_depth=1",
            'crawl.include=["/docs/"]',
            'crawl.exclude=["/private/"]',
        )
        == 0
    )
    assert sorted(index(data)) == [s.url("/"), s.url("/docs/1")]
    assert index(data)[s.url("/")]["out_of_scope"] == 2


def test_max_pages_per_host(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/", site.ok(_page(*(f"/p{i}" for i in range(10)))))
    s.route("*", site.ok(_page("/", "/more")))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "crawl.max_depth=3", "crawl.max_pages_per_host=4") == 0
    assert sorted(index(data)) == sorted(s.url(p) for p in ("/", "/p0", "/p1", "/p2"))
    assert sorted(h.path for h in s.hits) == ["/", "/p0", "/p1", "/p2"]


def test_sort_query_fetches_one_of_each_reordered_url(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site()
    s.route("/", site.ok(_page("/q?a=1&b=2", "/q?b=2&a=1", "/q?a=1&b=3")))
    s.route("*", site.ok(b"<html>leaf</html>"))
    sorted_dir = tmp_path / "sorted"
    assert crawl(sorted_dir, [s.url("/")], "crawl.max_depth=1", "crawl.sort_query=true") == 0
    assert sorted(index(sorted_dir)) == sorted(s.url(p) for p in ("/", "/q?a=1&b=2", "/q?a=1&b=3"))
    kept_dir = tmp_path / "kept"
    assert crawl(kept_dir, [s.url("/")], "crawl.max_depth=1") == 0
    assert len(index(kept_dir)) == 4  # by default the order makes a different URL
