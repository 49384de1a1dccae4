"""Archives the web-archiving world replays (issue 14): one URI form for every URL, however
it was written and wherever it was found."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.datadir import exclusive
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


IDENTICAL = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"


def _revisits(data: Path) -> dict[str, dict[str, str]]:
    return {r["url"]: r["headers"] for r in warc_records(data) if r["type"] == "revisit"}


def test_a_payload_stored_before_is_written_as_a_revisit(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """Identical payloads (by digest) are stored once: later ones are revisit records
    (headers only) naming the record that holds the payload, in this crawl, in the same
    data directory's earlier runs, or in an earlier crawl's CDXJ (output.dedup_index)."""
    s = make_site("127.0.0.1")
    same = b"<html>" + random.Random(7).randbytes(5000) + b"</html>"
    for path in ("/a", "/b", "/later", "/elsewhere"):
        s.route(path, site.ok(same))
    s.route("/c", site.ok(b"<html>different</html>"))
    for path in ("/empty1", "/empty2"):
        s.route(path, site.ok(b""))
    data = tmp_path / "crawl"
    first = [s.url(p) for p in ("/a", "/b", "/c", "/empty1", "/empty2")]

    assert crawl(data, first) == 0

    lines = index(data)
    # whichever of /a and /b came first (claims go in hash order) holds the payload
    first_url, second_url = sorted(
        (s.url("/a"), s.url("/b")), key=lambda u: lines[u]["revisit"] is not None
    )
    assert {u: line["revisit"] for u, line in lines.items()} == {
        first_url: None,
        second_url: "identical",
        s.url("/c"): None,
        s.url("/empty1"): None,  # an empty payload is always written in full
        s.url("/empty2"): None,
    }
    records = warc_records(data)
    original = next(r for r in records if r["type"] == "response" and r["url"] == first_url)
    revisit = _revisits(data)[second_url]
    assert revisit["WARC-Profile"] == IDENTICAL
    assert revisit["WARC-Refers-To-Target-URI"] == first_url
    assert revisit["WARC-Refers-To-Date"] == original["headers"]["WARC-Date"]
    assert revisit["WARC-Payload-Digest"] == original["headers"]["WARC-Payload-Digest"]
    b = next(r for r in records if r["type"] == "revisit")
    assert b["status"] == "200"
    assert b["payload"] == b""  # headers only

    # The same data directory later: its digests are remembered.
    assert crawl(data, [s.url("/later")]) == 0
    assert _revisits(data)[s.url("/later")]["WARC-Refers-To-Target-URI"] == first_url

    # Another crawl, given this one's CDXJ: what it stored is not stored again.
    cdxj = tmp_path / "earlier.cdxj"
    cdxj.write_bytes(b"".join(p.read_bytes() for p in sorted((data / "index").glob("*.cdxj"))))
    other = tmp_path / "other"
    assert crawl(other, [s.url("/elsewhere")], f'output.dedup_index="{cdxj}"') == 0
    assert _revisits(other)[s.url("/elsewhere")]["WARC-Refers-To-Target-URI"] == first_url

    # Off: every payload in full.
    off = tmp_path / "off"
    assert crawl(off, [s.url("/a"), s.url("/b")], 'output.dedup="off"') == 0
    assert _revisits(off) == {}

    # Every file: its CDXJ is cdxj-indexer's, and warcio checks every digest.
    indexer = Path(sys.executable).parent / "cdxj-indexer"
    warcio = Path(sys.executable).parent / "warcio"
    for directory in (data, other, off):
        for warc in sorted((directory / "warc").glob("*.warc.gz")):
            ours = directory / "index" / (warc.name.removesuffix(".warc.gz") + ".cdxj")
            theirs = subprocess.run(
                [str(indexer), "--sort", str(warc)], capture_output=True, check=True
            ).stdout
            assert ours.read_bytes() == theirs, warc
            subprocess.run([str(warcio), "check", str(warc)], capture_output=True, check=True)


def test_a_stopped_crawl_exports_as_a_wacz_that_py_wacz_validates(
    tmp_path: Path, make_site: SiteFactory
) -> None:
    """`crawler export --wacz`: the committed WARC files, their CDXJ merged, the HTML pages
    with titles, a datapackage with sizes and hashes; `wacz validate` passes. A running
    crawl (its directory locked) is refused in one line."""
    wacz_tool = Path(__file__).resolve().parents[1] / ".venv-wacz" / "bin" / "wacz"
    if not wacz_tool.exists():
        pytest.skip("py-wacz is not installed in .venv-wacz: run scripts/setup")
    s = make_site("127.0.0.1")
    s.route("/robots.txt", site.ok(b"User-agent: *\nAllow: /\n", content_type="text/plain"))
    for i in range(4):
        s.route(f"/p{i}", site.ok(f"<html><title> Page  {i} </title>body {i}</html>".encode()))
    s.route("/twin", site.ok(b"<html><title>Page 0</title>body 0</html>"))
    s.route("/data.json", site.ok(b"{}", content_type="application/json"))
    data = tmp_path / "crawl"
    seeds = [s.url(p) for p in ("/p0", "/p1", "/p2", "/p3", "/twin", "/data.json")]
    assert crawl(data, seeds, "robots.obey=true", "output.warc_max_bytes=65536") == 0
    out = tmp_path / "crawl.wacz"

    assert main(["export", "--data-dir", str(data), "--wacz", str(out)]) == 0

    checked = subprocess.run(
        [str(wacz_tool), "validate", "-f", str(out)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Validation succeeded" in checked.stdout
    with zipfile.ZipFile(out) as wacz:
        names = set(wacz.namelist())
        warcs = sorted(p.name for p in (data / "warc").glob("*.warc.gz"))
        assert names == {
            *(f"archive/{w}" for w in warcs),
            "indexes/index.cdx.gz",
            "pages/pages.jsonl",
            "datapackage.json",
            "datapackage-digest.json",
        }
        header, *pages = (json.loads(line) for line in wacz.read("pages/pages.jsonl").splitlines())
        cdx = gzip.decompress(wacz.read("indexes/index.cdx.gz"))
    assert header["format"] == "json-pages-1.0"
    titles = {page["url"]: page.get("title") for page in pages}
    assert titles == {
        s.url("/p0"): "Page 0",
        s.url("/p1"): "Page 1",
        s.url("/p2"): "Page 2",
        s.url("/p3"): "Page 3",
        s.url("/twin"): titles.get(s.url("/twin")),  # a revisit, or the twin stored first
    }
    cdxj = sorted(b"".join(p.read_bytes() for p in (data / "index").glob("*.cdxj")).splitlines())
    assert cdx.splitlines() == cdxj  # every file's CDXJ, merged in order

    with exclusive(data):  # as a running crawl holds it
        refused = subprocess.run(
            [str(Path(sys.executable).parent / "crawler"), "export", "--data-dir", str(data),
             "--wacz", str(tmp_path / "again.wacz")],
            capture_output=True, text=True,
        )  # fmt: skip
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        f"crawler: error: another crawler is running on {data}"
    ]
    assert not (tmp_path / "again.wacz").exists()
