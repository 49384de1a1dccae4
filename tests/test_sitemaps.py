"""Sitemaps: parsing with caps, and end to end from robots.txt through an index."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from crawler import sitemaps
from tests import servers as site
from tests.crawling import crawl, index
from tests.servers import SiteFactory

URLSET = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">%s</urlset>'
)
INDEX = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">%s</sitemapindex>'
)


def _urlset(*urls: str) -> bytes:
    return URLSET % b"".join(b"<url><loc>%s</loc></url>" % u.encode() for u in urls)


def _index(*urls: str) -> bytes:
    return INDEX % b"".join(b"<sitemap><loc>%s</loc></sitemap>" % u.encode() for u in urls)


def test_parse_urlset_index_and_gzip() -> None:
    assert sitemaps.parse(_urlset("http://a/1", " http://a/2 ")).urls == [
        "http://a/1",
        "http://a/2",
    ]
    found = sitemaps.parse(gzip.compress(_index("http://a/s1.xml")))
    assert (found.index, found.urls) == (True, ["http://a/s1.xml"])


def test_parse_caps_urls_and_survives_garbage() -> None:
    many = sitemaps.parse(_urlset(*(f"http://a/{i}" for i in range(sitemaps.MAX_URLS + 5))))
    assert len(many.urls) == sitemaps.MAX_URLS
    assert many.truncated
    broken = sitemaps.parse(b"<urlset><url><loc>http://a/1</loc></url><url><loc>")
    assert broken.urls == ["http://a/1"]
    assert broken.error is not None


def test_a_compressed_bomb_costs_nothing() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(200)) + compressor.flush()
    found = sitemaps.parse(bomb)  # 200 MiB of zeros, inflated at most to the 50 MB cap
    assert found.truncated or found.error is not None
    assert found.urls == []


def test_sitemaps_from_robots_are_followed_in_scope(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    other = make_site("127.0.0.2")
    s.route("/robots.txt", site.ok(b"User-agent: *\nAllow: /\nSitemap: /sitemap_index.xml\n"))
    s.route("/sitemap_index.xml", site.ok(_index(s.url("/s1.xml.gz"), s.url("/s2.xml"))))
    s.route(
        "/s1.xml.gz",
        site.ok(gzip.compress(_urlset(s.url("/a"), s.url("/b"))), content_type="application/gzip"),
    )
    s.route("/s2.xml", site.ok(_urlset(s.url("/c"), other.url("/out-of-scope"))))
    s.route("*", site.ok(b"<html>page</html>"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "robots.obey=true", "crawl.sitemaps=true") == 0
    lines = index(data)
    for path in ("/", "/sitemap_index.xml", "/s1.xml.gz", "/s2.xml", "/a", "/b", "/c"):
        assert lines[s.url(path)]["state"] == "done", path
    assert lines[s.url("/a")]["discovered_from"] == s.url("/s1.xml.gz")
    assert lines[s.url("/s2.xml")]["out_of_scope"] == 1
    assert other.hits == []


def test_sitemap_xml_is_the_fallback(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()  # robots.txt: 404
    s.route("/sitemap.xml", site.ok(_urlset(s.url("/listed"))))
    s.route("*", site.ok(b"<html>page</html>"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "robots.obey=true", "crawl.sitemaps=true") == 0
    assert index(data)[s.url("/listed")]["state"] == "done"


def test_off_by_default(tmp_path: Path, make_site: SiteFactory) -> None:
    s = make_site()
    s.route("/sitemap.xml", site.ok(_urlset(s.url("/listed"))))
    s.route("*", site.ok(b"<html>page</html>"))
    data = tmp_path / "crawl"
    assert crawl(data, [s.url("/")], "robots.obey=true") == 0
    assert list(index(data)) == [s.url("/")]
