"""Archives the web-archiving world replays (issue 14): one URI form for every URL, however
it was written and wherever it was found."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers as site
from tests.crawling import crawl, index, response_at, warc_records
from tests.servers import SiteFactory


def _page(*hrefs: str) -> bytes:
    links = "".join(f'<a href="{h}">{h}</a>\n' for h in hrefs)
    return f'<html><head><meta charset="utf-8"></head><body>{links}</body></html>'.encode()


def test_every_url_is_archived_as_the_percent_encoded_uri_requested(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Links and seeds written raw (UTF-8, a space, `|`, `[`) or already encoded are
    requested, indexed and archived (WARC-Target-URI) in one RFC 3986 form, as browsers
    request them; a link that names no fetchable URL is counted, not dropped silently."""
    s = make_site("127.0.0.1")
    encoded_paths = {
        "/caf%C3%A9.html": "café.html",  # a link, raw
        "/%E6%97%A5%E6%9C%AC%E8%AA%9E/index.html": "日本語/index.html",
        "/a%20b.html": "a b.html",  # browsers request a%20b.html: it is not dropped
        "/x%7Cy.html": "x|y.html",
        "/q?k=%5B1%5D&v=%C3%A9": "q?k=[1]&v=é",
        "/already%C3%A9.html": "already%C3%A9.html",  # a link, encoded
        "/seed-%C3%BC.html": None,  # a seed, raw
        "/seed-enc-%C3%BC.html": None,  # a seed, encoded
    }
    links = [href for href in encoded_paths.values() if href]
    s.route("/", site.ok(_page(*links, "http://[bad/", "http://127.0.0.1:99999/")))
    for path in encoded_paths:
        s.route(path, site.ok(b"<html>page</html>"))
    data = tmp_path / "crawl"
    seeds = [s.url("/"), s.url("/seed-ü.html"), s.url("/seed-enc-%C3%BC.html")]

    assert crawl(data, seeds, "crawl.max_depth=1") == 0

    expected = {s.url(p) for p in encoded_paths} | {s.url("/")}
    lines = index(data)
    assert set(lines) == expected
    assert all(line["state"] == "done" for line in lines.values()), lines
    assert lines[s.url("/")]["links_invalid"] == 2  # [bad, and a port past 65535
    assert sorted(hit.target for hit in s.hits) == sorted(
        p for p in ["/", *encoded_paths]
    )  # each fetched once, as indexed
    targets = [r["url"] for r in warc_records(data) if r["type"] in ("request", "response")]
    assert set(targets) == expected
    assert all(t.isascii() and " " not in t and "|" not in t for t in targets)


def test_warcinfo_says_what_the_crawl_is_and_every_record_names_it(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    s = make_site("127.0.0.1")
    s.route("/", site.ok(b"<html>home</html>"))
    data = tmp_path / "my-collection"

    assert crawl(data, [s.url("/")], 'output.operator="Archivist <a@example.org>"') == 0

    records = warc_records(data)
    info = records[0]
    assert info["type"] == "warcinfo"
    fields = dict(
        line.split(": ", 1) for line in info["payload"].decode().splitlines() if ": " in line
    )
    assert fields["isPartOf"] == "my-collection"  # output.collection defaults to the dir
    assert fields["operator"] == "Archivist <a@example.org>"
    assert fields["robots"] == "ignore"  # the tests' settings: robots.obey = false
    assert fields["http-header-user-agent"].startswith("crawler/")
    others = records[1:]
    assert others
    assert {r["headers"]["WARC-Warcinfo-ID"] for r in others} == {info["headers"]["WARC-Record-ID"]}


def test_robots_txt_is_archived_with_an_index_line_and_a_log_line(
    tmp_path: Path, make_site: SiteFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """Each robots.txt request that got an answer (a redirect hop too) is in the WARC, as
    request and response records, and in the index (kind "robots"); the pages are not
    held back by it."""
    s = make_site("127.0.0.1")
    s.route("/robots.txt", site.redirect("/rules.txt"))
    s.route(
        "/rules.txt", site.ok(b"User-agent: *\nDisallow: /private\n", content_type="text/plain")
    )
    s.route("/", site.ok(b"<html>home</html>"))
    s.route("/private", site.ok(b"<html>no</html>"))
    data = tmp_path / "crawl"

    assert crawl(data, [s.url("/"), s.url("/private")], "robots.obey=true", 'log.level="info"') == 0

    lines = index(data, robots=True)
    robots = {url: line for url, line in lines.items() if line["kind"] == "robots"}
    assert {url: (line["status"], line["state"]) for url, line in robots.items()} == {
        s.url("/robots.txt"): (301, "done"),
        s.url("/rules.txt"): (200, "done"),
    }
    assert all(
        line["discovered_from"] in (s.url("/"), s.url("/private")) for line in robots.values()
    )
    assert (lines[s.url("/")]["state"], lines[s.url("/")]["kind"]) == ("done", None)
    assert (lines[s.url("/private")]["state"], lines[s.url("/private")]["reason"]) == (
        "skipped",
        "robots",
    )
    records = warc_records(data)
    for url, line in robots.items():
        types = [r["type"] for r in records if r["url"] == url]
        assert types == ["request", "response"], url
        assert response_at(data, line["warc_file"], line["warc_offset"]) == ("response", url)
    rules = next(r for r in records if r["url"] == s.url("/rules.txt") and r["type"] == "response")
    assert rules["payload"] == b"User-agent: *\nDisallow: /private\n"
    logged = capfd.readouterr()
    events = [json.loads(line) for line in (logged.out + logged.err).splitlines() if line]
    fetched = [e for e in events if e.get("event") == "robots_fetched"]
    assert sorted((e["url"], e["status"]) for e in fetched) == [
        (s.url("/robots.txt"), 301),
        (s.url("/rules.txt"), 200),
    ]


def test_each_warc_file_gets_the_cdxj_cdxj_indexer_makes_of_it(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """index/<name>.cdxj beside each WARC (rotated ones, and the last when the crawl
    stops) holds what cdxj-indexer --sort writes for that file, byte for byte."""
    s = make_site("127.0.0.1")
    s.route("/robots.txt", site.ok(b"User-agent: *\nAllow: /\n", content_type="text/plain"))
    pages = [f"/p{i}" for i in range(12)]
    for i, path in enumerate(pages):
        s.route(path, site.ok(b"<html>" + random.Random(i).randbytes(9000 * i) + b"</html>"))
    s.route("/gone", site.status(404, body=b"not here"))
    s.route("/moved", site.redirect("/p1"))
    s.route("/typeless", site.ok(b"raw", headers={"Content-Type": ""}))
    data = tmp_path / "crawl"
    seeds = [s.url(p) for p in [*pages, "/gone", "/moved", "/typeless", "/caf%C3%A9"]]

    assert crawl(data, seeds, "robots.obey=true", "output.warc_max_bytes=65536") == 0

    warcs = sorted((data / "warc").glob("*.warc.gz"))
    assert len(warcs) > 2  # rotated
    indexer = Path(sys.executable).parent / "cdxj-indexer"
    for warc in warcs:
        ours = (data / "index" / (warc.name.removesuffix(".warc.gz") + ".cdxj")).read_bytes()
        theirs = subprocess.run(
            [str(indexer), "--sort", str(warc)], capture_output=True, check=True
        ).stdout
        assert ours == theirs, warc.name
    cdxj = b"".join(p.read_bytes() for p in sorted((data / "index").glob("*.cdxj")))
    recorded = [line for line in index(data, robots=True).values() if line["warc_file"]]
    assert cdxj.count(b"\n") == len(recorded) == len(seeds) + 1  # robots.txt's too
