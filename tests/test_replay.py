"""Replay through pywb (issue 14): what the crawler archives, pywb 2.10 serves back byte
for byte, identical-payload revisits included. pywb runs as a subprocess on loopback over
a collection made of the crawl's WARC files (a recrawl's too), from `.venv-pywb`
(scripts/setup makes it: pywb's wheel installs a top-level `tests` package, which would
hide ours in .venv)."""

from __future__ import annotations

import random
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.output.warc import NOT_MODIFIED
from tests import servers as site
from tests.crawling import crawl, index, index_lines, warc_records, write_seeds
from tests.h2server import TLSServer
from tests.servers import SiteFactory

BIN = Path(__file__).resolve().parents[1] / ".venv-pywb" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def wayback(tmp_path: Path) -> tuple[Path, str]:
    """An empty pywb collection `coll` (the WARC files are added by the test) and the URL
    pywb will answer on once started by `_serve`."""
    if not (BIN / "wayback").exists():
        pytest.skip("pywb is not installed in .venv-pywb: run scripts/setup")
    root = tmp_path / "pywb"
    root.mkdir()
    subprocess.run(
        [str(BIN / "wb-manager"), "init", "coll"], cwd=root, check=True, capture_output=True
    )
    return root, f"http://127.0.0.1:{_free_port()}"


def _serve(root: Path, base: str) -> subprocess.Popen[bytes]:
    port = base.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [str(BIN / "wayback"), "--bind", "127.0.0.1", "-p", port],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("pywb did not start")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _replay(base: str, stamp: str, url: str) -> tuple[int, bytes]:
    """pywb's answer for `url` as archived at `stamp`, in identity mode (`id_`: the
    original bytes, no rewriting), redirects not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(f"{base}/coll/{stamp}id_/{url}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _replayed(wayback: tuple[Path, str], data: Path) -> dict[str, tuple[bool, bool]]:
    """Each response or revisit record of the crawl in `data`, replayed by pywb: whether
    it answered with the record's status, and with the payload's original bytes (a
    revisit's: those of the record holding its payload)."""
    root, base = wayback
    warcs = sorted((data / "warc").glob("*.warc.gz"))
    subprocess.run(
        [str(BIN / "wb-manager"), "add", "coll", *map(str, warcs)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    # pywb answers a server-not-modified revisit (a 304 to a recrawl) with that 304: such
    # records are checked in the WARC and the index instead (test_recrawl.py).
    records = [
        r
        for r in warc_records(data)
        if r["type"] in ("response", "revisit") and r["headers"].get("WARC-Profile") != NOT_MODIFIED
    ]
    full = {r["headers"]["WARC-Payload-Digest"]: r["payload"] for r in records if r["payload"]}
    proc = _serve(root, base)
    try:
        replayed = {}
        for record in records:
            stamp = "".join(c for c in record["headers"]["WARC-Date"][:19] if c.isdigit())
            status, body = _replay(base, stamp, record["url"])
            want = full.get(record["headers"]["WARC-Payload-Digest"], record["payload"])
            replayed[record["url"]] = (str(status) == record["status"], body == want)
    finally:
        proc.kill()
        proc.wait()
    return replayed


def test_pywb_replays_every_archived_page_byte_for_byte(
    tmp_path: Path, make_site: SiteFactory, wayback: tuple[Path, str]
) -> None:
    s = make_site("127.0.0.1")
    twin = b"<html>" + random.Random(3).randbytes(3000) + b"</html>"
    links = ["caf\u00e9.html", "\u65e5\u672c/p.html", "a b.html", "x|y.html", "q?k=\u00e9"]
    links += ["gz", "chunked", "moved", "twin1", "twin2", "gone", "versioned"]
    page = "".join(f'<a href="{h}">{h}</a>' for h in links).encode()
    s.route("/", site.ok(b'<html><head><meta charset="utf-8"></head>' + page + b"</html>"))
    for path in ("/caf%C3%A9.html", "/%E6%97%A5%E6%9C%AC/p.html", "/a%20b.html"):
        s.route(path, site.ok(f"<html>{path}</html>".encode()))
    s.route("/x%7Cy.html", site.ok(b"<html>pipe</html>"))
    s.route("/q?k=%C3%A9", site.ok(b"<html>query</html>"))
    s.route("/gz", site.gzip_body(b"<html>" + b"compressed " * 200 + b"</html>"))
    s.route("/chunked", site.chunked([b"<html>", b"in ", b"chunks</html>"]))
    s.route("/moved", site.redirect("/caf%C3%A9.html"))
    s.route("/twin1", site.ok(twin))
    s.route("/twin2", site.ok(twin))
    s.route("/gone", site.status(404, body=b"<html>not here</html>"))
    s.route("/versioned", site.Versioned(b"<html>versioned</html>", '"v1"'))
    data = tmp_path / "crawl"

    assert crawl(data, [s.url("/")], "crawl.max_depth=1") == 0
    again = write_seeds(tmp_path / "again.txt", [s.url("/versioned"), s.url("/twin1")])
    assert main(["seed", "--data-dir", str(data), "--recrawl", str(again)]) == 0
    assert crawl(data, [s.url("/")]) == 0  # the recrawl: a 304, and the same payload

    lines = index_lines(data)
    assert len(lines) == 1 + len(links) + 2
    revisits = [(line["url"].rsplit("/", 1)[1], line["revisit"]) for line in lines[-2:]]
    assert sorted(revisits) == [("twin1", "identical"), ("versioned", "not_modified")]
    assert [line["revisit"] for line in lines].count("identical") == 2
    assert _replayed(wayback, data) == {line["url"]: (True, True) for line in lines}


def test_pywb_replays_pages_fetched_over_h2(
    tmp_path: Path, h2_server: TLSServer, wayback: tuple[Path, str]
) -> None:
    """HTTP/2 exchanges (over TLS) are archived as HTTP/1.1-style messages with
    WARC-Protocol h2: pywb replays them like any other."""
    urls = [f"{h2_server.base_url}/page{i}" for i in range(3)]
    data = tmp_path / "crawl"
    assert crawl(data, urls, f'fetch.ca_bundle="{h2_server.ca_file}"') == 0
    assert {line["http_version"] for line in index(data).values()} == {"HTTP/2"}
    records = [r for r in warc_records(data) if r["type"] == "response"]
    assert {r["headers"]["WARC-Protocol"] for r in records} == {"h2"}
    assert _replayed(wayback, data) == {url: (True, True) for url in urls}
