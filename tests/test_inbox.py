"""Tests for crawler/inbox.py against a real SQLite frontier and real files in tmp_path."""

from __future__ import annotations

import gzip
import os
import sqlite3
from pathlib import Path

import anyio
import pytest
import structlog
import structlog.testing

from crawler import inbox as inbox_module
from crawler.frontier.sqlite import SQLiteFrontier
from crawler.inbox import Inbox, Ingested
from tests.waiting import eventually_async

pytestmark = pytest.mark.anyio

LATER = 10.0  # seconds after a file's mtime at which the fake wall clock reads


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tests run the CLI in-process, which configures structlog for the process with
    a level filter and cached loggers; start from structlog's defaults so logs are captured."""
    structlog.reset_defaults()
    monkeypatch.setattr(inbox_module, "log", structlog.get_logger("crawler.inbox"))


@pytest.fixture
def inbox_dir(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


class Wall:
    """A settable wall clock."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _inbox(inbox_dir: Path, frontier: SQLiteFrontier, wall: Wall | None = None) -> Inbox:
    clock = wall or Wall(2_000_000_000.0)  # far after any file's mtime: every file settled
    return Inbox(inbox_dir, frontier, settle_seconds=2.0, wall=clock, batch_size=3)


def _drop(path: Path, lines: list[str] | bytes) -> Path:
    data = lines if isinstance(lines, bytes) else "".join(f"{line}\n" for line in lines).encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _urls(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return sorted(url for (url,) in conn.execute("SELECT url FROM urls"))


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def _scan_twice(inbox: Inbox) -> list[Ingested]:
    """A file is read at the second scan that sees it unchanged."""
    assert await inbox.scan() == []
    return await inbox.scan()


URLS = [f"http://h{i % 2}.example/{i}" for i in range(7)]


async def test_plain_file_is_added_then_moved_to_done(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    _drop(inbox_dir / "seeds.txt", ["# a list", "", *URLS])
    with structlog.testing.capture_logs() as logs:
        ingested = await _scan_twice(_inbox(inbox_dir, frontier))
    done = inbox_dir / "done" / "seeds.txt"
    assert ingested == [Ingested("seeds.txt", read=7, added=7, invalid=0, moved_to=done)]
    assert _urls(db_path) == sorted(URLS)
    assert _names(inbox_dir) == ["done"]
    assert done.read_text().splitlines()[2:] == URLS  # moved, not rewritten
    assert [e for e in logs if e["event"] == "inbox_ingested"] == [
        {
            "event": "inbox_ingested",
            "log_level": "info",
            "name": "seeds.txt",
            "read": 7,
            "added": 7,
            "invalid": 0,
            "moved_to": str(done),
        }
    ]


async def test_gzip_file(inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path) -> None:
    _drop(inbox_dir / "seeds.txt.gz", URLS)
    inbox = _inbox(inbox_dir, frontier)
    [ingested] = await _scan_twice(inbox)
    assert (ingested.read, ingested.added, ingested.invalid) == (7, 7, 0)
    assert ingested.moved_to == inbox_dir / "done" / "seeds.txt.gz"
    assert _urls(db_path) == sorted(URLS)


async def test_part_and_hidden_files_are_ignored_until_renamed(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    part = _drop(inbox_dir / "seeds.txt.part", URLS[:3])
    _drop(inbox_dir / ".seeds.tmp", URLS[3:])
    (inbox_dir / "subdir").mkdir()
    os.mkfifo(inbox_dir / "pipe")  # opening it would block the scan forever
    (inbox_dir / "link.txt").symlink_to(part)
    inbox = _inbox(inbox_dir, frontier)
    for _ in range(3):
        assert await inbox.scan() == []
    assert _urls(db_path) == []
    part.rename(inbox_dir / "seeds.txt")
    [ingested] = await _scan_twice(inbox)
    assert ingested.name == "seeds.txt"
    assert _urls(db_path) == sorted(URLS[:3])
    assert sorted(_names(inbox_dir)) == [".seeds.tmp", "done", "link.txt", "pipe", "subdir"]


async def test_a_growing_file_is_read_only_once_stable(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    path = _drop(inbox_dir / "seeds.txt", URLS[:2])
    inbox = _inbox(inbox_dir, frontier)
    assert await inbox.scan() == []
    with path.open("a") as handle:
        handle.write("http://h0.example/half-wri")  # the writer is not done yet
    assert await inbox.scan() == []  # changed since the last scan
    with path.open("a") as handle:
        handle.write("tten\n")
    assert await inbox.scan() == []  # changed again
    [ingested] = await inbox.scan()  # unchanged since the last scan: read
    assert (ingested.read, ingested.invalid) == (3, 0)
    assert "http://h0.example/half-written" in _urls(db_path)


async def test_a_file_is_read_only_when_settle_seconds_old(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    path = _drop(inbox_dir / "seeds.txt", URLS)
    mtime = 1_800_000_000.0
    os.utime(path, (mtime, mtime))
    wall = Wall(mtime + 1.9)
    inbox = _inbox(inbox_dir, frontier, wall)
    assert await inbox.scan() == []
    assert await inbox.scan() == []  # unchanged, but written less than 2 s ago
    wall.now = mtime + 2.0
    assert len(await inbox.scan()) == 1
    assert _urls(db_path) == sorted(URLS)


async def test_bad_lines_reject_the_file_with_every_error_listed(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    lines = [URLS[0], "ftp://files.example/x", "", "not a url", URLS[1]]
    lines += [f"gopher://h.example/{i}" for i in range(12)]  # more than SeedReport keeps
    data = "".join(f"{line}\n" for line in lines).encode() + b"http://bad.example/\xff\n"
    _drop(inbox_dir / "mixed.txt", data)
    with structlog.testing.capture_logs() as logs:
        [ingested] = await _scan_twice(_inbox(inbox_dir, frontier))
    rejected = inbox_dir / "rejected"
    assert ingested == Ingested("mixed.txt", 17, 2, 15, rejected / "mixed.txt")
    assert _urls(db_path) == sorted(URLS[:2])  # the valid lines are added all the same
    assert _names(rejected) == ["mixed.txt", "mixed.txt.errors.txt"]
    errors = (rejected / "mixed.txt.errors.txt").read_text().splitlines()
    assert len(errors) == 15
    assert errors[0].startswith("line 2: ")
    assert errors[0].endswith(": 'ftp://files.example/x'")
    assert errors[1].startswith("line 4: ")
    assert errors[1].endswith(": 'not a url'")
    assert errors[13].endswith("'gopher://h.example/11'")
    assert errors[14] == r"line 18: not valid UTF-8: b'http://bad.example/\xff'"
    [event] = [e for e in logs if e["event"] == "inbox_ingested"]
    assert event["log_level"] == "warning"
    assert event["errors"] == str(rejected / "mixed.txt.errors.txt")


async def test_userinfo_and_hosts_the_client_refuses_reject_their_lines(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    lines = ["http://user:pw@h0.example/", "http://0x7f.1:8080/x", "http://☃.invalid/"]
    _drop(inbox_dir / "odd.txt", lines)
    [ingested] = await _scan_twice(_inbox(inbox_dir, frontier))
    assert (ingested.read, ingested.added) == (3, 1)
    assert _urls(db_path) == ["http://127.0.0.1:8080/x"]
    errors = (inbox_dir / "rejected" / "odd.txt.errors.txt").read_text().splitlines()
    assert errors[0] == (
        "line 1: userinfo in the URL: credentials belong in a profile: 'http://h0.example/'"
    )
    assert errors[1].startswith("line 3: host '☃.invalid' is not valid IDNA")


async def test_a_url_in_two_files_is_added_once(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    _drop(inbox_dir / "a.txt", URLS[:5])
    os.utime(inbox_dir / "a.txt", (1_000_000_000, 1_000_000_000))  # older: read first
    _drop(inbox_dir / "b.txt.gz", URLS[3:])
    ingested = await _scan_twice(_inbox(inbox_dir, frontier))
    assert [(i.name, i.read, i.added) for i in ingested] == [("a.txt", 5, 5), ("b.txt.gz", 4, 2)]
    assert _urls(db_path) == sorted(URLS)


async def test_a_name_taken_in_done_gets_a_timestamp(
    inbox_dir: Path, frontier: SQLiteFrontier
) -> None:
    wall = Wall(2_000_000_000.0)  # 2033-05-18T03:33:20Z
    inbox = _inbox(inbox_dir, frontier, wall)
    moved = []
    for batch in (URLS[:2], URLS[2:4], URLS[4:]):
        _drop(inbox_dir / "seeds.txt.gz", batch)
        [ingested] = await _scan_twice(inbox)
        moved.append(ingested.moved_to.name)
    assert moved == [
        "seeds.txt.gz",
        "seeds.20330518T033320Z.txt.gz",
        "seeds.20330518T033320Z-2.txt.gz",
    ]
    done = inbox_dir / "done"
    assert [len(gzip.decompress((done / name).read_bytes()).split()) for name in moved] == [2, 2, 3]


async def test_a_name_taken_in_rejected_keeps_both_error_lists(
    inbox_dir: Path, frontier: SQLiteFrontier
) -> None:
    inbox = _inbox(inbox_dir, frontier)
    for bad in ("bad-one", "bad-two"):
        _drop(inbox_dir / "x", [bad])
        await _scan_twice(inbox)
    rejected = inbox_dir / "rejected"
    names = _names(rejected)
    assert len(names) == 4
    assert "x" in names
    assert "x.errors.txt" in names
    other = next(n for n in names if n.startswith("x.") and not n.endswith(".errors.txt"))
    assert "bad-one" in (rejected / "x.errors.txt").read_text()
    assert "bad-two" in (rejected / f"{other}.errors.txt").read_text()


async def test_crash_between_add_and_move_adds_nothing_twice(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    _drop(inbox_dir / "seeds.txt", URLS)
    (inbox_dir / "done").write_text("not a directory: the move fails")
    with structlog.testing.capture_logs() as logs:
        assert await _scan_twice(_inbox(inbox_dir, frontier)) == []
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["inbox_error"]
    assert _urls(db_path) == sorted(URLS)  # committed before the move was tried
    assert (inbox_dir / "seeds.txt").exists()

    (inbox_dir / "done").unlink()  # "restart": a new Inbox on the same directory
    [ingested] = await _scan_twice(_inbox(inbox_dir, frontier))
    assert (ingested.read, ingested.added, ingested.invalid) == (7, 0, 0)
    assert ingested.moved_to == inbox_dir / "done" / "seeds.txt"
    assert _urls(db_path) == sorted(URLS)
    assert _names(inbox_dir) == ["done"]


async def test_crash_after_some_batches_adds_the_rest(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    # A SIGKILL after the first batches were committed: the file is read again from the top.
    first = _inbox(inbox_dir, frontier)
    _drop(inbox_dir / "early.txt", URLS[:4])
    await _scan_twice(first)
    _drop(inbox_dir / "seeds.txt", URLS)
    [ingested] = await _scan_twice(_inbox(inbox_dir, frontier))
    assert (ingested.read, ingested.added) == (7, 3)
    assert _urls(db_path) == sorted(URLS)


async def test_corrupt_gzip_is_rejected_with_its_earlier_lines_added(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    whole = gzip.compress(b"".join(f"http://g.example/{i}\n".encode() for i in range(2000)))
    (inbox_dir / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    (inbox_dir / "plain.gz").write_bytes(b"http://plain.example/\n")
    ingested = await _scan_twice(_inbox(inbox_dir, frontier))
    assert sorted(i.name for i in ingested) == ["cut.txt.gz", "plain.gz"]
    cut = next(i for i in ingested if i.name == "cut.txt.gz")
    assert 0 < cut.added < 2000
    assert cut.invalid == 1
    assert len(_urls(db_path)) == cut.added
    rejected = inbox_dir / "rejected"
    for name in ("cut.txt.gz", "plain.gz"):
        errors = (rejected / f"{name}.errors.txt").read_text().splitlines()
        assert len(errors) == 1
        assert errors[0].startswith("file: cannot read further: ")
    assert _names(inbox_dir) == ["rejected"]


async def test_unreadable_file_is_rejected(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    path = _drop(inbox_dir / "secret.txt", URLS)
    path.chmod(0)
    try:
        path.open("rb").close()
    except PermissionError:
        pass
    else:
        pytest.skip("this user reads files whatever their mode (root)")
    [ingested] = await _scan_twice(_inbox(inbox_dir, frontier))
    assert (ingested.read, ingested.added, ingested.invalid) == (0, 0, 1)
    errors = (inbox_dir / "rejected" / "secret.txt.errors.txt").read_text()
    assert errors == "file: cannot open: Permission denied\n"
    assert _urls(db_path) == []


async def test_a_missing_inbox_is_created_and_a_file_in_its_place_is_logged(
    tmp_path: Path, frontier: SQLiteFrontier
) -> None:
    inbox = _inbox(tmp_path / "data" / "inbox", frontier)
    assert await inbox.scan() == []
    assert (tmp_path / "data" / "inbox").is_dir()
    (tmp_path / "blocked").write_text("a file, not a directory")
    with structlog.testing.capture_logs() as logs:
        assert await _inbox(tmp_path / "blocked", frontier).scan() == []
    assert [e["event"] for e in logs] == ["inbox_error"]


async def test_run_keeps_scanning_until_cancelled(
    inbox_dir: Path, frontier: SQLiteFrontier, db_path: Path
) -> None:
    inbox = _inbox(inbox_dir, frontier)
    _drop(inbox_dir / "seeds.txt", URLS)
    (inbox_dir / "done").write_text("the first attempts to move fail")
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbox.run, 0.01)
        await eventually_async(lambda: _urls(db_path), 5, "the file's URLs in the frontier")
        await anyio.sleep(0.05)  # a few more scans fail to move it: run() goes on
        assert (inbox_dir / "seeds.txt").exists()
        (inbox_dir / "done").unlink()
        await eventually_async(
            (inbox_dir / "done" / "seeds.txt").exists, 5, "the file moved to done/"
        )
        tg.cancel_scope.cancel()
    assert _urls(db_path) == sorted(URLS)
