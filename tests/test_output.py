"""Tests for crawler/output/: WARC + JSONL output, rotation and crash recovery."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.errors import StorageError
from crawler.models import SPOOL_BYTES, Entry, Outcome, Response, State
from crawler.output import Outputs
from crawler.output.jsonl import IndexFile, rfc3339
from crawler.output.process import OutputProcess
from crawler.output.warc import WarcFile
from crawler.settings import Settings
from crawler.urls import canonical, host_of, url_key
from tests.overrides import with_overrides

FETCHED_AT = 1_700_000_000.25
DESIGN_KEYS = {
    "url",
    "state",
    "reason",
    "status",
    "content_type",
    "length",
    "truncated",
    "payload_digest",
    "fetched_at",
    "elapsed_ms",
    "attempts",
    "depth",
    "discovered_from",
    "redirect_to",
    "http_version",
    "warc_file",
    "warc_offset",
}


def _settings(warc_max_bytes: int = 1024**3) -> Settings:
    settings = with_overrides(Settings(), "output", warc_max_bytes=warc_max_bytes)
    return with_overrides(settings, "storage", fsync=False)


def _digest(body: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode("ascii")


def _body(data: bytes, spooled: bool) -> BinaryIO:
    if not spooled:
        return io.BytesIO(data)
    spool = tempfile.SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - closed by the test
    spool.write(data)
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _response(
    body: bytes,
    *,
    status: int = 200,
    http_version: str = "HTTP/1.1",
    headers: list[tuple[str, str]] | None = None,
    truncated: bool = False,
    spooled: bool = False,
    peer: str | None = "93.184.216.34",
) -> Response:
    return Response(
        status=status,
        reason_phrase="OK" if status == 200 else "",
        http_version=http_version,
        headers=headers if headers is not None else [("Content-Type", "text/html")],
        request_headers=[("Host", "a.example"), ("User-Agent", "crawler-test")],
        method="GET",
        target="/",
        body=_body(body, spooled),
        wire_bytes=len(body),
        decoded_bytes=len(body),
        truncated=truncated,
        peer=peer,
    )


def _outcome(url: str, response: Response | None = None, **fields: Any) -> Outcome:
    entry = Entry(key=url_key(canonical(url)), url=url, host=host_of(url), depth=1)
    entry.discovered_from = "http://a.example/"
    values: dict[str, Any] = {
        "state": State.DONE,
        "attempts": 1,
        "fetched_at": FETCHED_AT,
        "elapsed_ms": 12,
    }
    if response is not None:
        values["status"] = response.status
        response.body.seek(0)
        values["payload_digest"] = _digest(response.body.read())
    values.update(fields)
    return Outcome(entry=entry, response=response, **values)


def _records(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as handle:
        return _records_in(handle)


def _records_in(stream: BinaryIO) -> list[dict[str, Any]]:
    found = []
    iterator = ArchiveIterator(stream)
    for record in iterator:
        found.append(
            {
                "type": record.rec_type,
                "version": record.rec_headers.protocol,
                "headers": dict(record.rec_headers.headers),
                "http": dict(record.http_headers.headers) if record.http_headers else {},
                "statusline": _statusline(record),
                "body": record.content_stream().read(),
                "offset": iterator.get_record_offset(),
            }
        )
    return found


def _statusline(record: Any) -> str | None:
    """The HTTP start line as written (warcio splits a request line after the method)."""
    if not record.http_headers:
        return None
    if record.rec_type == "request":
        return f"{record.http_headers.protocol} {record.http_headers.statusline}"
    return str(record.http_headers.statusline)


def _members(data: bytes) -> list[int]:
    """Offsets of the gzip members that make up `data` (each must decompress on its own)."""
    offsets, position = [], 0
    while position < len(data):
        offsets.append(position)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflater.decompress(data[position:])
        assert inflater.eof, f"gzip member at {position} does not end"
        position = len(data) - len(inflater.unused_data)
    return offsets


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _outputs(tmp_path: Path, settings: Settings | None = None) -> Outputs:
    outputs = Outputs(tmp_path, settings or _settings())
    outputs.recover({})
    return outputs


def _only(directory: Path, pattern: str) -> Path:
    [path] = sorted(directory.glob(pattern))
    return path


# -- writing and reading back -----------------------------------------------------------------


def test_records_read_back_with_warcio(tmp_path: Path) -> None:
    page = b"<html><a href='/b'>b</a></html>" * 100
    big = random.Random(1).randbytes(300_000)  # spills the spooled file to disk
    first = _outcome(
        "http://a.example/page",
        _response(page, headers=[("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")]),
    )
    second = _outcome(
        "https://b.example/big",
        _response(big, http_version="HTTP/2", truncated=True, spooled=True, peer=None),
    )
    outputs = _outputs(tmp_path)
    outputs.write([first, second])
    outputs.close()

    records = _records(_only(tmp_path / "warc", "*.warc.gz"))
    assert [r["type"] for r in records] == [
        "warcinfo",
        "request",
        "response",
        "request",
        "response",
    ]
    assert {r["version"] for r in records} == {"WARC/1.1"}
    info = records[0]
    assert info["headers"]["WARC-Filename"] == _only(tmp_path / "warc", "*.warc.gz").name
    assert b"http-header-user-agent: " + Settings().fetch.user_agent.encode() in info["body"]

    request, response = records[1], records[2]
    assert request["headers"]["WARC-Target-URI"] == "http://a.example/page"
    assert request["headers"]["WARC-Concurrent-To"] == response["headers"]["WARC-Record-ID"]
    assert request["statusline"] == "GET / HTTP/1.1"
    assert request["http"]["User-Agent"] == "crawler-test"
    assert response["headers"]["WARC-Target-URI"] == "http://a.example/page"
    assert response["headers"]["WARC-Payload-Digest"] == first.payload_digest
    assert response["headers"]["WARC-Date"].startswith("2023-11-14T22:13:20.25")
    assert response["headers"]["WARC-IP-Address"] == "93.184.216.34"
    assert response["headers"]["WARC-Protocol"] == "http/1.1"
    assert "WARC-Truncated" not in response["headers"]
    assert response["statusline"] == "200 OK"
    assert "Transfer-Encoding" not in response["http"]
    assert response["http"]["X-Crawler-Transfer-Encoding"] == "chunked"
    assert response["http"]["Content-Type"] == "text/html"
    assert response["body"] == page

    request, response = records[3], records[4]
    assert response["headers"]["WARC-Target-URI"] == "https://b.example/big"
    assert response["headers"]["WARC-Protocol"] == "h2"
    assert request["headers"]["WARC-Protocol"] == "h2"
    assert response["headers"]["WARC-Truncated"] == "length"
    assert response["headers"]["WARC-Payload-Digest"] == second.payload_digest
    assert "WARC-IP-Address" not in response["headers"]
    assert response["body"] == big
    for outcome in (first, second):
        assert outcome.response is not None
        outcome.response.close()


def test_payload_digest_is_written_as_given(tmp_path: Path) -> None:
    # the digest comes from the fetcher (over the raw bytes); the output does not recompute it
    outcome = _outcome("http://a.example/", _response(b"abc"), payload_digest="sha1:" + "A" * 32)
    outputs = _outputs(tmp_path)
    outputs.write([outcome])
    outputs.close()
    response = _records(_only(tmp_path / "warc", "*.warc.gz"))[2]
    assert response["headers"]["WARC-Payload-Digest"] == "sha1:" + "A" * 32


SIZES = [0, 100, 200, SPOOL_BYTES + 1, 3 * SPOOL_BYTES]  # the last two are streamed


@pytest.mark.parametrize("level", [1, 3, 4, 9])  # ISA-L's levels, then zlib's
def test_every_record_is_its_own_gzip_member(tmp_path: Path, level: int) -> None:
    outcomes = [_outcome(f"http://a.example/{n}", _response(b"x" * n)) for n in SIZES]
    outputs = _outputs(tmp_path, with_overrides(_settings(), "output", gzip_level=level))
    outputs.write(outcomes)
    outputs.close()
    warc = _only(tmp_path / "warc", "*.warc.gz")
    data = warc.read_bytes()
    members = _members(data)
    assert len(members) == 1 + 2 * len(outcomes)
    assert [r["offset"] for r in _records(warc)] == members
    # the file is also one valid multi-member gzip stream
    assert gzip.decompress(data).startswith(b"WARC/1.1\r\n")
    assert [r["body"] for r in _records(warc) if r["type"] == "response"] == [
        b"x" * n for n in SIZES
    ]


def test_index_offset_points_at_a_readable_response_member(tmp_path: Path) -> None:
    urls = [f"http://a.example/{i}" for i in range(5)]
    outputs = _outputs(tmp_path)
    outputs.write([_outcome(u, _response(u.encode() * 50)) for u in urls])
    outputs.close()
    warc = _only(tmp_path / "warc", "*.warc.gz")
    data = warc.read_bytes()
    lines = _lines(_only(tmp_path / "index", "*.jsonl"))
    assert [line["url"] for line in lines] == urls
    for line in lines:
        assert line["warc_file"] == warc.name
        offset = line["warc_offset"]
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflater.decompress(data[offset:])
        member = data[offset : len(data) - len(inflater.unused_data)]
        [record] = _records_in(io.BytesIO(member))  # the member alone
        assert record["type"] == "response"
        assert record["headers"]["WARC-Target-URI"] == line["url"]
        assert record["body"] == line["url"].encode() * 50
        # and by seeking in the file, as a reader of the index would
        with warc.open("rb") as handle:
            handle.seek(offset)
            first = next(iter(ArchiveIterator(handle)))
            assert first.rec_type == "response"
            assert first.rec_headers.get_header("WARC-Target-URI") == line["url"]


# -- the JSONL index --------------------------------------------------------------------------


def test_index_line_has_every_design_key(tmp_path: Path) -> None:
    body = b"<p>hi</p>"
    done = _outcome(
        "http://a.example/p",
        _response(body, http_version="HTTP/2", headers=[("content-type", "text/html; q")]),
    )
    redirect = _outcome(
        "http://a.example/old",
        _response(b"", status=301, headers=[("Location", "/new")]),
        redirect_to="http://a.example/new",
        attempts=2,
    )
    failed = _outcome(
        "http://dead.example/",
        state=State.FAILED,
        reason="dns",
        attempts=3,
        message="cannot resolve dead.example",
    )
    outputs = _outputs(tmp_path)
    touched = outputs.write([done, redirect, failed]).touched
    outputs.close()
    warc = _only(tmp_path / "warc", "*.warc.gz")
    index = _only(tmp_path / "index", "*.jsonl")
    assert index.stem == warc.name[: -len(".warc.gz")]
    assert touched == {
        f"warc/{warc.name}": warc.stat().st_size,
        f"index/{index.name}": index.stat().st_size,
    }
    lines = _lines(index)
    assert len(lines) == 3
    for line in lines:
        assert set(line) >= DESIGN_KEYS

    line = lines[0]
    assert line["url"] == "http://a.example/p"
    assert (line["state"], line["reason"], line["status"]) == ("done", None, 200)
    assert line["content_type"] == "text/html; q"
    assert (line["length"], line["truncated"]) == (len(body), False)
    assert line["payload_digest"] == _digest(body)
    assert line["fetched_at"] == "2023-11-14T22:13:20.250Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["fetched_at"])
    assert (line["elapsed_ms"], line["attempts"], line["depth"]) == (12, 1, 1)
    assert line["discovered_from"] == "http://a.example/"
    assert line["redirect_to"] is None
    assert line["http_version"] == "HTTP/2"
    assert line["warc_file"] == warc.name
    assert isinstance(line["warc_offset"], int)

    line = lines[1]
    assert (line["status"], line["redirect_to"], line["attempts"]) == (
        301,
        "http://a.example/new",
        2,
    )
    assert line["content_type"] is None
    assert line["warc_offset"] > lines[0]["warc_offset"]

    line = lines[2]
    assert (line["state"], line["reason"], line["status"]) == ("failed", "dns", None)
    assert (line["warc_file"], line["warc_offset"]) == (None, None)
    assert (line["length"], line["http_version"], line["payload_digest"]) == (None, None, None)
    assert line["truncated"] is False
    # a URL without a response adds nothing to the WARC
    assert [r["type"] for r in _records(warc)] == ["warcinfo", *["request", "response"] * 2]


def test_index_file_and_rfc3339(tmp_path: Path) -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(FETCHED_AT) == "2023-11-14T22:13:20.250Z"
    index = IndexFile(tmp_path / "x.jsonl")
    index.write({"url": "http://a.example/é", "n": 1})
    index.flush(fsync=True)
    assert index.size == (tmp_path / "x.jsonl").stat().st_size
    index.close()
    assert _lines(tmp_path / "x.jsonl") == [{"url": "http://a.example/é", "n": 1}]


def test_warc_file_reopened_does_not_repeat_warcinfo(tmp_path: Path) -> None:
    path = tmp_path / "a.warc.gz"
    first = WarcFile(path, {"http-header-user-agent": "ua/1"})
    first.flush(fsync=False)
    size = first.size
    assert size == path.stat().st_size > 0
    first.close()
    again = WarcFile(path, {"http-header-user-agent": "ua/1"})
    assert again.size == size
    offset = again.write_exchange("http://a.example/", _response(b"hi"), _digest(b"hi"), 1.0)
    again.flush(fsync=False)
    again.close()
    assert offset > size
    records = _records(path)
    assert [r["type"] for r in records] == ["warcinfo", "request", "response"]
    info_id = records[0]["headers"]["WARC-Record-ID"]  # the reopened file's own
    assert [r["headers"]["WARC-Warcinfo-ID"] for r in records[1:]] == [info_id, info_id]


def test_unwritable_record_fails_only_its_url(tmp_path: Path) -> None:
    good = _outcome("http://a.example/good", _response(b"ok"))
    response = _response(b"bad")
    response.target = "/caf\u00e9"  # a request line must be ASCII: the record cannot be built
    bad = _outcome("http://a.example/bad", response)
    outputs = _outputs(tmp_path)
    result = outputs.write([good, bad])
    outputs.close()
    assert (good.state, good.reason) == (State.DONE, None)
    assert list(result.failed) == [1]  # the committer makes it Outcome.unwritten: warc_error
    records = _records(_only(tmp_path / "warc", "*.warc.gz"))
    assert [r["type"] for r in records] == ["warcinfo", "request", "response"]
    lines = _lines(_only(tmp_path / "index", "*.jsonl"))
    assert [(line["url"], line["state"], line["reason"]) for line in lines] == [
        ("http://a.example/good", "done", None),
        ("http://a.example/bad", "failed", "warc_error"),
    ]
    assert (lines[1]["warc_file"], lines[1]["warc_offset"]) == (None, None)
    assert "cannot write WARC record" in lines[1]["message"]


@pytest.mark.parametrize("size", [4, SPOOL_BYTES + 1], ids=["whole", "streamed"])
def test_failed_response_record_leaves_no_orphan_request(tmp_path: Path, size: int) -> None:
    response = _response(b"b" * size, spooled=True)
    response.reason_phrase = "\u00d6K"
    outcome = _outcome("http://a.example/x", response)
    after = _outcome("http://a.example/after", _response(b"after"))
    outputs = _outputs(tmp_path)
    result = outputs.write([outcome, after])
    outputs.close()
    response.close()
    assert list(result.failed) == [0]  # the committer makes it Outcome.unwritten: warc_error
    lines = _lines(_only(tmp_path / "index", "*.jsonl"))
    assert [line["reason"] for line in lines] == ["warc_error", None]
    records = _records(_only(tmp_path / "warc", "*.warc.gz"))
    assert [r["type"] for r in records] == ["warcinfo", "request", "response"]
    assert records[2]["body"] == b"after"


@pytest.mark.parametrize("spooled", [False, True])
def test_output_process_writes_spooled_bodies_from_their_files(
    tmp_path: Path, spooled: bool
) -> None:
    """Bodies past SPOOL_BYTES go to the output child as file descriptors, in batch order."""
    sizes = [10, 3 * SPOOL_BYTES, 20, SPOOL_BYTES + 1, 30]
    bodies = [random.Random(n).randbytes(n) for n in sizes]
    outcomes = [
        _outcome(f"http://a.example/{n}", _response(body, spooled=spooled))
        for n, body in zip(sizes, bodies, strict=True)
    ]
    process = OutputProcess(tmp_path, _settings())
    try:
        process.recover({})
        result = process.write(outcomes)
    finally:
        process.close()
    assert result.failed == {}
    for outcome in outcomes:
        assert outcome.response is not None
        outcome.response.close()
    records = _records(_only(tmp_path / "warc", "*.warc.gz"))
    assert [r["body"] for r in records if r["type"] == "response"] == bodies


# -- rotation ---------------------------------------------------------------------------------


def _random_outcomes(count: int, size: int, start: int = 0) -> list[Outcome]:
    return [
        _outcome(f"http://r.example/{i}", _response(random.Random(i).randbytes(size)))
        for i in range(start, start + count)
    ]


def test_rotation_by_size_rotates_both_files_together(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _settings(warc_max_bytes=64 * 1024))
    touched = outputs.write(_random_outcomes(5, 40_000)).touched
    touched.update(outputs.write(_random_outcomes(3, 40_000, start=5)).touched)
    outputs.close()
    warcs = sorted((tmp_path / "warc").glob("*.warc.gz"))
    indexes = sorted((tmp_path / "index").glob("*.jsonl"))
    assert len(warcs) == 4  # two ~40 KB records per file
    assert [p.name[: -len(".warc.gz")] for p in warcs] == [p.stem for p in indexes]
    serials = [int(re.search(r"-(\d{5,})\.warc\.gz$", p.name).group(1)) for p in warcs]  # type: ignore[union-attr]
    assert serials == sorted(serials) == list(range(serials[0], serials[0] + 4))
    assert all(p.name.startswith("crawler-") for p in warcs)
    # every file is reported with its final length, closed ones included
    assert touched == {f"{p.parent.name}/{p.name}": p.stat().st_size for p in warcs + indexes}
    seen = []
    for warc, index in zip(warcs, indexes, strict=True):
        records = _records(warc)
        assert records[0]["type"] == "warcinfo"
        assert records[0]["headers"]["WARC-Filename"] == warc.name
        lines = _lines(index)
        assert {line["warc_file"] for line in lines} == {warc.name}
        responses = {r["offset"]: r for r in records if r["type"] == "response"}
        for line in lines:
            assert responses[line["warc_offset"]]["headers"]["WARC-Target-URI"] == line["url"]
            seen.append(line["url"])
    assert seen == [f"http://r.example/{i}" for i in range(8)]


def test_no_rotation_below_the_size(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    for i in range(3):
        outputs.write(_random_outcomes(2, 1000, start=2 * i))
    outputs.close()
    assert len(list((tmp_path / "warc").glob("*"))) == 1
    assert len(_lines(_only(tmp_path / "index", "*.jsonl"))) == 6


def test_custom_prefix(tmp_path: Path) -> None:
    settings = with_overrides(_settings(), "output", prefix="site-a")
    outputs = _outputs(tmp_path, settings)
    outputs.write(_random_outcomes(1, 10))
    outputs.close()
    assert _only(tmp_path / "warc", "*.warc.gz").name.startswith("site-a-")
    assert _only(tmp_path / "index", "*.jsonl").name.startswith("site-a-")


# -- recover ----------------------------------------------------------------------------------


def test_recover_truncates_to_committed_lengths_and_starts_a_new_file(tmp_path: Path) -> None:
    """A restart cuts the files back to their committed lengths, makes the CDXJ of the file
    that was open, and writes on in a new pair of files: a file closed is never appended
    to again (it may have been copied or indexed elsewhere already)."""
    outputs = _outputs(tmp_path)
    committed = outputs.write(_random_outcomes(2, 500)).touched
    outputs.write(_random_outcomes(2, 500, start=2))  # written but never committed
    outputs.close()
    warc = _only(tmp_path / "warc", "*.warc.gz")
    index = _only(tmp_path / "index", "*.jsonl")
    assert warc.stat().st_size > committed[f"warc/{warc.name}"]

    restarted = Outputs(tmp_path, _settings())
    restarted.recover(committed)
    assert warc.stat().st_size == committed[f"warc/{warc.name}"]
    assert index.stat().st_size == committed[f"index/{index.name}"]
    assert [line["url"] for line in _lines(index)] == ["http://r.example/0", "http://r.example/1"]
    cdxj = index.with_suffix(".cdxj").read_text()
    assert cdxj.count("\n") == 2  # the kept records only
    size = warc.stat().st_size

    touched = restarted.write(_random_outcomes(1, 500, start=9)).touched
    restarted.close()
    assert warc.stat().st_size == size
    assert index.with_suffix(".cdxj").read_text() == cdxj
    [new_warc] = set((tmp_path / "warc").glob("*.warc.gz")) - {warc}
    [new_index] = set((tmp_path / "index").glob("*.jsonl")) - {index}
    assert set(touched) == {f"warc/{new_warc.name}", f"index/{new_index.name}"}
    serial = [int(w.name.split("-")[-1].split(".")[0]) for w in (warc, new_warc)]
    assert serial[1] == serial[0] + 1
    records = _records(new_warc)
    assert [r["type"] for r in records] == ["warcinfo", "request", "response"]
    assert [line["url"] for line in _lines(new_index)] == ["http://r.example/9"]
    assert [line["warc_offset"] for line in _lines(new_index)] == [records[2]["offset"]]
    assert not list((tmp_path / "index").glob("*.unsorted"))


def test_recover_deletes_files_not_committed(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _settings(warc_max_bytes=64 * 1024))
    committed = outputs.write(_random_outcomes(2, 40_000)).touched
    outputs.write(_random_outcomes(3, 40_000, start=2))  # rotates into new, uncommitted files
    outputs.close()
    assert len(list((tmp_path / "warc").glob("*"))) == 3
    restarted = Outputs(tmp_path, _settings(warc_max_bytes=64 * 1024))
    restarted.recover(committed)
    restarted.close()
    remaining = {
        f"{p.parent.name}/{p.name}" for d in ("warc", "index") for p in (tmp_path / d).iterdir()
    }
    # and the CDXJ of the closed, committed WARC file (derived from it: not committed)
    assert remaining - set(committed) == {"index/" + _stem(committed) + ".cdxj"}
    assert set(committed) <= remaining
    for name, length in committed.items():
        assert (tmp_path / name).stat().st_size == length


def _stem(committed: dict[str, int]) -> str:
    [warc] = [name for name in committed if name.endswith(".warc.gz")]
    return warc.removeprefix("warc/").removesuffix(".warc.gz")


def test_recover_with_nothing_committed_removes_everything(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    outputs.write(_random_outcomes(2, 100))
    outputs.close()
    restarted = Outputs(tmp_path, _settings())
    restarted.recover({})
    assert list((tmp_path / "warc").iterdir()) == []
    assert list((tmp_path / "index").iterdir()) == []
    restarted.write(_random_outcomes(1, 100))
    restarted.close()
    assert [r["type"] for r in _records(_only(tmp_path / "warc", "*.warc.gz"))] == [
        "warcinfo",
        "request",
        "response",
    ]


def test_recover_new_files_get_a_later_serial(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path, _settings(warc_max_bytes=64 * 1024))
    committed = outputs.write(_random_outcomes(2, 40_000)).touched  # the file is now full
    outputs.close()
    old = _only(tmp_path / "warc", "*.warc.gz")
    restarted = Outputs(tmp_path, _settings(warc_max_bytes=64 * 1024))
    restarted.recover(committed)
    restarted.write(_random_outcomes(1, 100, start=5))
    restarted.close()
    warcs = sorted((tmp_path / "warc").glob("*.warc.gz"), key=lambda p: p.name[-14:])
    assert warcs[0] == old
    assert len(warcs) == 2
    assert warcs[1].name[-14:] > old.name[-14:]  # "-NNNNN.warc.gz"
    assert old.stat().st_size == committed[f"warc/{old.name}"]


def test_recover_refuses_a_file_shorter_than_committed(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path)
    committed = outputs.write(_random_outcomes(2, 500)).touched
    outputs.close()
    warc = _only(tmp_path / "warc", "*.warc.gz")
    with warc.open("r+b") as handle:
        handle.truncate(committed[f"warc/{warc.name}"] - 10)
    with pytest.raises(StorageError, match="shorter") as info:
        Outputs(tmp_path, _settings()).recover(committed)
    assert warc.name in str(info.value)
    assert info.value.exit_code == 3


def test_recover_accepts_committed_files_moved_away_and_never_reuses_their_names(
    tmp_path: Path,
) -> None:
    # Operators move finished WARC files off the volume; that must not stop a restart,
    # and a new file must never take the name (and so the committed length) of a moved one.
    outputs = _outputs(tmp_path)
    committed = outputs.write(_random_outcomes(2, 500)).touched
    outputs.close()
    for path in [*(tmp_path / "warc").iterdir(), *(tmp_path / "index").iterdir()]:
        path.unlink()
    again = Outputs(tmp_path, _settings())
    again.recover(committed)
    touched = again.write(_random_outcomes(1, 500)).touched
    again.close()
    assert touched
    assert not set(touched) & set(committed)


def test_the_output_child_imports_the_parents_crawler_not_one_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -c` puts the current directory first on sys.path: a `crawler/` folder there
    (another version's checkout, say) must not be what the output child runs."""
    decoy = tmp_path / "elsewhere"
    (decoy / "crawler").mkdir(parents=True)
    (decoy / "crawler" / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    monkeypatch.chdir(decoy)
    data = tmp_path / "crawl"
    data.mkdir()
    outcome = _outcome("http://a.example/p", _response(b"hello", spooled=False))
    process = OutputProcess(data, _settings())
    try:
        process.recover({})
        result = process.write([outcome])
    finally:
        process.close()
    assert result.failed == {}
    records = _records(_only(data / "warc", "*.warc.gz"))
    assert [r["body"] for r in records if r["type"] == "response"] == [b"hello"]


def test_no_revisit_refers_to_a_record_a_crash_cut_away(tmp_path: Path) -> None:
    """The digest memory is not part of the commit: at start it forgets the records cut
    back to the committed length, so a payload seen only in those is stored in full."""
    kept, lost = b"kept payload" * 50, b"lost payload" * 50
    outputs = _outputs(tmp_path)
    committed = outputs.write([_outcome("http://a.example/1", _response(kept))]).touched
    outputs.write([_outcome("http://a.example/2", _response(lost))])  # never committed
    outputs.close()

    restarted = Outputs(tmp_path, _settings())
    restarted.recover(committed)
    restarted.write(
        [
            _outcome("http://a.example/3", _response(lost)),
            _outcome("http://a.example/4", _response(kept)),
        ]
    )
    restarted.close()
    records = [r for w in sorted((tmp_path / "warc").glob("*.warc.gz")) for r in _records(w)]
    kinds = {
        r["headers"]["WARC-Target-URI"]: r["type"]
        for r in records
        if r["type"] in ("response", "revisit")
    }
    assert kinds == {
        "http://a.example/1": "response",
        "http://a.example/3": "response",  # /2 was cut away: not referred to
        "http://a.example/4": "revisit",
    }
