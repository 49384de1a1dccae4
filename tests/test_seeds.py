"""Tests for crawler/seeds.py: reading seed lists, reporting bad lines, batching."""

from __future__ import annotations

import gzip
import io
import sys
import warnings
from collections.abc import Generator
from pathlib import Path

import pytest

from crawler.models import NewURL
from crawler.seeds import (
    MAX_REPORTED,
    BadLine,
    SeedReport,
    parse_line,
    parse_lines,
    read_seeds,
    seed_files_exist,
)
from crawler.urls import canonical, url_key


def _write(path: Path, lines: list[str] | bytes) -> str:
    data = lines if isinstance(lines, bytes) else "".join(f"{line}\n" for line in lines).encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return str(path)


def _read(paths: list[str], batch_size: int = 10_000) -> tuple[list[list[NewURL]], SeedReport]:
    report = SeedReport()
    return list(read_seeds(paths, report, batch_size=batch_size)), report


def parse_text(
    text: str, sort_query: bool = False, source: str = "<request>"
) -> tuple[list[NewURL], SeedReport]:
    """Newline-separated seed URLs, as the API's body is (its BOM gone), through parse_lines."""
    return parse_lines(text.removeprefix("\ufeff").split("\n"), sort_query, source)


def _urls(batches: list[list[NewURL]]) -> list[str]:
    return [u.url for batch in batches for u in batch]


def test_parse_line_builds_a_frontier_entry() -> None:
    entry = parse_line("HTTP://Example.com:8080/a?b=1#x")
    assert entry.url == "HTTP://Example.com:8080/a?b=1#x"  # the URL as given is fetched
    assert entry.key == url_key(canonical(entry.url))
    assert entry.host == "example.com:8080"
    assert entry.depth == 0
    assert entry.discovered_from is None


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "seeds.txt",
        [
            "# a comment",
            "",
            "http://a.example/",
            "   ",
            "  # an indented comment",
            "\thttps://b.example/x  ",
            "http://c.example/\r",
        ],
    )
    batches, report = _read([path])
    assert _urls(batches) == ["http://a.example/", "https://b.example/x", "http://c.example/"]
    assert report.read == 3
    assert report.invalid == 0
    assert report.examples == []


def test_gzip_file(tmp_path: Path) -> None:
    lines = [f"http://host{i}.example/page" for i in range(100)]
    path = _write(tmp_path / "seeds.txt.gz", ["# header", *lines, "ftp://bad.example/"])
    batches, report = _read([path])
    assert _urls(batches) == lines
    assert report.read == 101
    assert report.invalid == 1
    assert report.examples[0].line == 102


def test_bad_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    long_url = "http://example.com/" + "a" * 9000
    data = b"".join(
        [
            b"http://good.example/1\n",
            b"ftp://files.example/x\n",  # line 2
            b"http:///no-host\n",  # line 3
            b"http://ctrl.example/a\x01b\n",  # line 4
            long_url.encode() + b"\n",  # line 5
            b"http://bad.example/\xff\xfe\n",  # line 6: not UTF-8
            b"http://good.example/2\n",
            b"http://[::1\n",  # line 8
            b"http://a b.example/\n",  # line 9
        ]
    )
    path = _write(tmp_path / "seeds.txt", data)
    batches, report = _read([path])
    assert _urls(batches) == ["http://good.example/1", "http://good.example/2"]
    assert report.invalid == 7
    assert [(b.source, b.line) for b in report.examples] == [
        (path, 2),
        (path, 3),
        (path, 4),
        (path, 5),
        (path, 6),
        (path, 8),
        (path, 9),
    ]
    reasons = [b.reason for b in report.examples]
    assert "ftp" in reasons[0]
    assert "no host" in reasons[1]
    assert "control" in reasons[2]
    assert "longer than" in reasons[3]
    assert len(reasons[3]) < 300  # the offending text is shortened in the message
    assert "UTF-8" in reasons[4]
    assert "unparsable" in reasons[5]
    assert str(report.examples[0]).startswith(f"{path}:2: ")


def test_only_the_first_ten_bad_lines_are_kept(tmp_path: Path) -> None:
    lines = []
    for i in range(30):
        lines.append(f"gopher://bad.example/{i}")
        lines.append(f"http://good.example/{i}")
    path = _write(tmp_path / "seeds.txt", lines)
    batches, report = _read([path])
    assert len(_urls(batches)) == 30
    assert report.invalid == 30
    assert MAX_REPORTED == 10
    assert len(report.examples) == 10
    assert [b.line for b in report.examples] == list(range(1, 20, 2))
    assert report.read == 60


def test_batches_of_batch_size(tmp_path: Path) -> None:
    lines = [f"http://h{i % 3}.example/{i}" for i in range(25)]
    path = _write(tmp_path / "seeds.txt", lines)
    batches, _ = _read([path], batch_size=10)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert _urls(batches) == lines
    batches, _ = _read([path], batch_size=5)
    assert [len(b) for b in batches] == [5] * 5


def test_batches_span_files_and_bad_lines_do_not_count(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.txt", [f"http://a.example/{i}" for i in range(3)] + ["bad"])
    second = _write(tmp_path / "b.txt.gz", [f"http://b.example/{i}" for i in range(4)])
    batches, report = _read([first, second], batch_size=4)
    assert [len(b) for b in batches] == [4, 3]
    assert _urls(batches)[3] == "http://b.example/0"
    assert report.invalid == 1
    assert report.examples[0] == BadLine(first, 4, report.examples[0].reason)


def test_empty_input_yields_no_batches(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.txt", b"")
    batches, report = _read([path])
    assert batches == []
    assert report == SeedReport()


def test_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.txt", ["http://a.example/"])
    missing = str(tmp_path / "missing.txt")
    batches, report = _read([missing, good, str(tmp_path / "missing.gz")])
    assert _urls(batches) == ["http://a.example/"]
    assert report.invalid == 2
    assert report.examples[0].source == missing
    assert report.examples[0].line == 0
    assert "cannot open" in report.examples[0].reason
    assert seed_files_exist([missing, good, "-"]) == [missing]


def test_directory_is_reported_not_raised(tmp_path: Path) -> None:
    batches, report = _read([str(tmp_path)])
    assert batches == []
    assert report.invalid == 1
    assert "cannot open" in report.examples[0].reason


def test_corrupt_gzip_is_reported_and_earlier_lines_kept(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(f"http://g.example/{i}\n".encode() for i in range(2000)))
    truncated = tmp_path / "cut.txt.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"http://plain.example/\n")
    batches, report = _read([str(truncated), str(not_gzip)])
    urls = _urls(batches)
    assert 0 < len(urls) < 2000
    assert urls[0] == "http://g.example/0"
    assert report.invalid == 2
    assert all("cannot read further" in b.reason for b in report.examples)
    assert [b.source for b in report.examples] == [str(truncated), str(not_gzip)]


class _FakeStdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeStdin(b"# from a pipe\nhttp://a.example/\nnot a url\nhttps://b.example/\n")
    monkeypatch.setattr(sys, "stdin", fake)
    batches, report = _read(["-"])
    assert _urls(batches) == ["http://a.example/", "https://b.example/"]
    assert report.invalid == 1
    assert report.examples[0].source == "<stdin>"
    assert report.examples[0].line == 3
    assert not fake.buffer.closed  # stdin is not ours to close


def test_files_are_closed(tmp_path: Path) -> None:
    path = _write(tmp_path / "seeds.txt", [f"http://a.example/{i}" for i in range(10)])
    generator = read_seeds([path], SeedReport(), batch_size=3)
    assert isinstance(generator, Generator)
    next(generator)
    generator.close()  # abandoning the generator closes the file (no ResourceWarning)
    batches, _ = _read([path])
    assert len(_urls(batches)) == 10


def test_utf8_bom_first_line_is_accepted(tmp_path: Path) -> None:
    # regression: a file saved with a byte-order mark lost its first URL
    path = _write(tmp_path / "bom.txt", b"\xef\xbb\xbfhttp://a.example/\nhttp://b.example/\n")
    batches, report = _read([path])
    assert report.invalid == 0
    assert _urls(batches) == ["http://a.example/", "http://b.example/"]


def test_gz_seed_file_is_closed(tmp_path: Path) -> None:
    # regression: GzipFile(fileobj=raw).close() left the raw file open
    path = _write(tmp_path / "seeds.txt.gz", ["http://a.example/"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches, _ = _read([path])
    assert _urls(batches) == ["http://a.example/"]
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_parse_text_reads_a_request_body() -> None:
    body = (
        "\ufeff# from the API\r\nhttp://a.example/?b=2&a=1\r\n\r\n  not a url\nhttps://b.example/\n"
    )
    urls, report = parse_text(body)
    assert [u.url for u in urls] == ["http://a.example/?b=2&a=1", "https://b.example/"]
    assert urls[0] == parse_line("http://a.example/?b=2&a=1")
    assert (report.read, report.added, report.invalid) == (3, 0, 1)
    assert report.examples == [BadLine("<request>", 4, report.examples[0].reason)]
    assert report.examples[0].reason.endswith(": 'not a url'")
    assert parse_text("") == ([], SeedReport())


def test_parse_text_sort_query_and_source() -> None:
    [plain], _ = parse_text("http://a.example/?b=2&a=1")
    [other], _ = parse_text("http://a.example/?a=1&b=2")
    assert plain.key != other.key
    [plain], _ = parse_text("http://a.example/?b=2&a=1", sort_query=True)
    [other], _ = parse_text("http://a.example/?a=1&b=2", sort_query=True)
    assert plain.key == other.key
    _, report = parse_text("bad", source="POST /seeds")
    assert str(report.examples[0]) == f"POST /seeds:1: {report.examples[0].reason}"


def test_on_bad_sees_every_bad_line(tmp_path: Path) -> None:
    lines = [f"gopher://bad.example/{i}" for i in range(25)] + ["http://good.example/"]
    path = _write(tmp_path / "seeds.txt", lines)
    seen: list[BadLine] = []
    report = SeedReport(on_bad=seen.append)
    batches = list(read_seeds([path], report))
    assert _urls(batches) == ["http://good.example/"]
    assert len(report.examples) == MAX_REPORTED
    assert [b.line for b in seen] == list(range(1, 26))
    assert report == SeedReport(read=26, invalid=25, examples=seen[:MAX_REPORTED])


def test_undecodable_lines_count_as_read_and_are_quoted(tmp_path: Path) -> None:
    path = _write(tmp_path / "seeds.txt", b"http://a.example/\n\xff\xfe oops\n")
    batches, report = _read([path])
    assert _urls(batches) == ["http://a.example/"]
    assert (report.read, report.invalid) == (2, 1)
    assert report.examples[0].reason == r"not valid UTF-8: b'\xff\xfe oops'"


@pytest.mark.parametrize(
    ("line", "fetched", "host"),
    [
        ("http://0177.0.0.1:8080/a?b#c", "http://127.0.0.1:8080/a?b#c", "127.0.0.1:8080"),
        ("http://0x7f.1/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://2130706433/x", "http://127.0.0.1/x", "127.0.0.1"),
        ("http://127.1:80/", "http://127.0.0.1:80/", "127.0.0.1"),
        ("https://0xa9.0376.43518/", "https://169.254.169.254/", "169.254.169.254"),
        ("http://10.0.0.1./", "http://10.0.0.1/", "10.0.0.1"),
    ],
)
def test_an_ipv4_seed_is_stored_as_the_dotted_quad_that_is_fetched(
    line: str, fetched: str, host: str
) -> None:
    entry = parse_line(line)
    assert (entry.url, entry.host) == (fetched, host)
    assert entry == parse_line(fetched)  # one URL, one key, one politeness host


def test_bad_hosts_and_userinfo_are_bad_lines_with_their_reason(tmp_path: Path) -> None:
    lines = [
        "http://good.example/",
        "http://user:pass@good.example/",  # 2
        "https://token@good.example/x",  # 3
        "http://☃.invalid/",  # 4
        "http://xn--/x",  # 5
        "http://1.2.3.999/",  # 6
        "http://4294967296/",  # 7
        "http://example.123/",  # 8
        "http://0x7f.1/",
    ]
    batches, report = _read([_write(tmp_path / "seeds.txt", lines)])
    assert _urls(batches) == ["http://good.example/", "http://127.0.0.1/"]
    assert [b.line for b in report.examples] == [2, 3, 4, 5, 6, 7, 8]
    reasons = [b.reason for b in report.examples]
    assert all("credentials belong in a profile" in r for r in reasons[:2])
    assert reasons[0].endswith(": 'http://good.example/'")  # never quoted with them
    assert "token" not in reasons[1]
    assert all("not valid IDNA" in r for r in reasons[2:4])
    assert all("not an IPv4 address" in r for r in reasons[4:])


def test_the_api_body_reports_userinfo_and_bad_hosts_as_invalid() -> None:
    urls, report = parse_text("http://u:p@a.example/\nhttp://☃.invalid/\nhttp://127.1/\n")
    assert [u.url for u in urls] == ["http://127.0.0.1/"]
    assert report.invalid == 2
    assert "credentials belong in a profile" in report.examples[0].reason
