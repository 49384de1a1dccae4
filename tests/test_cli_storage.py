"""Storage errors through the real CLI: exit 3 and one line naming the path, never a traceback.

Read-only volumes are real mounts in a private mount namespace (`unshare`), so no mount is
seen outside the test: a read-only bind mount of the test's directory for a volume that is
read-only at start, and a small ext4 image (a loop device) mounted with
`errors=remount-ro`, whose error trigger makes the kernel remount it read-only under a
running crawl, as it does when a disk fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import servers as site
from tests.crawling import index, sets, warc_records, write_seeds
from tests.servers import SiteFactory
from tests.waiting import eventually

pytestmark = pytest.mark.slow

COMMANDS = ("run", "serve", "seed", "status")
CRAWLER = [sys.executable, "-m", "crawler"]


def _args(command: str, data: Path, seeds: Path, *extra: str) -> list[str]:
    args = [command, "--data-dir", str(data), *extra]
    if command == "seed":
        args.append(str(seeds))
    if command == "serve":
        args += ["--set", "service.listen=127.0.0.1:0"]
    return args


def _crawler(
    args: Sequence[str], prefix: Sequence[str] = (), timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *CRAWLER, *args], capture_output=True, text=True, timeout=timeout
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exit `code` and one line on stderr holding each of `words` (a path, a reason)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.returncode == code, lines[0]
    return lines[0]


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    return write_seeds(tmp_path / "seeds.txt", ["http://127.0.0.1:9/never-fetched"])


@pytest.fixture(scope="module")
def made_crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A crawl directory as `run` leaves it (database, locks, warc/, index/)."""
    data = tmp_path_factory.mktemp("made") / "crawl"
    empty = write_seeds(data.parent / "empty.txt", [])
    result = _crawler(["run", "--data-dir", str(data), "--seeds", str(empty)])
    assert result.returncode == 0, result.stderr
    return data


@pytest.fixture
def new_crawl(made_crawl: Path) -> Callable[[Path], Path]:
    def copy(data: Path) -> Path:
        shutil.copytree(made_crawl, data)
        return data

    return copy


# -- a read-only volume at start: a read-only bind mount in a private mount namespace ------


def _read_only(path: Path) -> list[str]:
    """Prefix that runs a command with `path` mounted read-only (in its own namespace)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "--map-root-user", "--mount", "sh", "-c", script, str(path)]


@pytest.fixture
def read_only(tmp_path: Path) -> Callable[[Path], list[str]]:
    probe = tmp_path / "probe"
    probe.mkdir()
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to make a read-only mount")
    tried = subprocess.run(
        [*_read_only(probe), "touch", str(probe / "x")], capture_output=True, text=True
    )
    if "Read-only file system" not in tried.stderr:
        pytest.skip(f"cannot make a read-only bind mount here: {tried.stderr.strip()}")
    return _read_only


@pytest.mark.parametrize("command", COMMANDS)
def test_a_data_dir_that_is_a_file(tmp_path: Path, seeds: Path, command: str) -> None:
    data = tmp_path / "crawl"
    data.write_text("not a directory", encoding="utf-8")
    result = _crawler(_args(command, data, seeds))
    _assert_one_line(result, 3, str(data), "not a directory")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_new_data_dir_on_a_read_only_volume(
    tmp_path: Path, seeds: Path, command: str, read_only: Callable[[Path], list[str]]
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    data = volume / "crawl"
    extra = ["--create"] if command == "seed" else []
    result = _crawler(_args(command, data, seeds, *extra), read_only(volume))
    if command == "status":  # nothing there to show: a usage error, as anywhere
        _assert_one_line(result, 2, str(data), "no crawl")
    else:
        _assert_one_line(result, 3, str(data), "Read-only file system")
    assert not data.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_crawl_on_a_volume_that_is_read_only_at_start(
    tmp_path: Path,
    seeds: Path,
    command: str,
    read_only: Callable[[Path], list[str]],
    new_crawl: Callable[[Path], Path],
) -> None:
    data = new_crawl(tmp_path / "volume" / "crawl")
    result = _crawler(_args(command, data, seeds), read_only(tmp_path / "volume"))
    _assert_one_line(result, 3, str(data), "Read-only file system")


def _without_dac_override() -> list[str]:
    """Root reads and writes anything: drop the capabilities that allow it."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv(1): permissions cannot be tested")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all"]


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_data_dir(
    tmp_path: Path, seeds: Path, command: str, new_crawl: Callable[[Path], Path]
) -> None:
    data = new_crawl(tmp_path / "crawl")
    (data / "crawl.lock").unlink()  # as if made by `seed --create`: run has to create it
    data.chmod(0o555)
    try:
        result = _crawler(_args(command, data, seeds), _without_dac_override())
    finally:
        data.chmod(0o755)
    _assert_one_line(result, 3, str(data), "Permission denied")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_database_that_is_not_one(tmp_path: Path, seeds: Path, command: str) -> None:
    data = tmp_path / "crawl"
    data.mkdir()
    (data / "crawl.db").write_bytes(os.urandom(8192))
    result = _crawler(_args(command, data, seeds))
    _assert_one_line(result, 3, str(data / "crawl.db"), "not a database")


@pytest.mark.parametrize("name", ["warc", "index", "writer.lock"])
@pytest.mark.parametrize("command", ["run", "serve"])
def test_an_output_path_that_is_a_file(
    tmp_path: Path, seeds: Path, command: str, name: str, new_crawl: Callable[[Path], Path]
) -> None:
    data = new_crawl(tmp_path / "crawl")
    path = data / name
    if path.is_dir():
        shutil.rmtree(path)
        path.write_text("in the way", encoding="utf-8")
    else:  # the output process's lock file: a directory is as much in the way
        path.unlink()
        path.mkdir()
    result = _crawler(_args(command, data, seeds))
    _assert_one_line(result, 3, str(path), "directory")


def test_seed_and_status_do_not_need_the_output_directories(
    tmp_path: Path, seeds: Path, new_crawl: Callable[[Path], Path]
) -> None:
    data = new_crawl(tmp_path / "crawl")
    shutil.rmtree(data / "warc")
    (data / "warc").write_text("in the way", encoding="utf-8")
    assert _crawler(_args("seed", data, seeds)).returncode == 0
    assert _crawler(_args("status", data, seeds)).returncode == 0


def test_seed_refuses_a_directory_without_a_crawl_unless_create(
    tmp_path: Path, seeds: Path
) -> None:
    typo = tmp_path / "crawl-typo"
    result = _crawler(_args("seed", typo, seeds))
    line = _assert_one_line(result, 2, str(typo), "no crawl")
    assert "--create" in line
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line(_crawler(_args("seed", empty, seeds)), 2, str(empty), "no crawl")
    assert list(empty.iterdir()) == []
    created = _crawler(_args("seed", typo, seeds, "--create"))
    assert created.returncode == 0, created.stderr
    assert "added 1" in created.stdout
    again = _crawler(_args("seed", typo, seeds))  # now there is a crawl: no flag needed
    assert again.returncode == 0, again.stderr
    assert "added 0" in again.stdout


# -- a volume remounted read-only under a running crawl: ext4 with errors=remount-ro --------


class Volume:
    """An ext4 image mounted, with `errors=remount-ro`, only in the namespace of the command
    that uses it (the mount goes when that command ends)."""

    def __init__(self, tmp_path: Path) -> None:
        self.image = tmp_path / "volume.img"
        self.mount_point = tmp_path / "volume"
        self.mount_point.mkdir()
        self._device = tmp_path / "device"
        with open(self.image, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)

    def start(
        self, argv: Sequence[str], options: str = "rw", **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Run `argv` with the volume mounted (`options`: rw or ro); exit 99 if it cannot be.
        Read-only is a remount: ext4 replays its journal (after an error) only read-write."""
        script = (
            'mount -o loop,errors=remount-ro "$0" "$2" || exit 99;'
            ' if [ "$1" = ro ]; then mount -o remount,ro "$2" || exit 99; fi;'
            ' findmnt -n -o SOURCE "$2" > "$3"; shift 4; exec "$@"'
        )
        args = [str(self.image), options, str(self.mount_point), str(self._device), "--"]
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, *args, *argv],
            text=True,
            **kwargs,
        )

    def run(self, argv: Sequence[str], options: str = "rw") -> subprocess.CompletedProcess[str]:
        proc = self.start(argv, options, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def fail(self) -> None:
        """What a failing disk does: ext4 records an error and goes read-only."""
        device = Path(self._device.read_text(encoding="utf-8").strip()).name
        Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("test", encoding="utf-8")


@pytest.fixture
def volume(tmp_path: Path) -> Volume:
    if os.geteuid() != 0:
        pytest.skip("mounting an ext4 image needs root")
    for tool in ("unshare", "nsenter", "mkfs.ext4", "findmnt"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}")
    made = Volume(tmp_path)
    trigger = 'test -e "/sys/fs/ext4/$(basename "$(findmnt -n -o SOURCE "$0")")/trigger_fs_error"'
    tried = made.run(["sh", "-c", trigger, str(made.mount_point)])
    if tried.returncode == 99:
        pytest.skip(f"cannot mount an ext4 image here: {tried.stderr.strip()}")
    if tried.returncode != 0:
        pytest.skip("this kernel's ext4 has no trigger_fs_error to fail a volume with")
    return made


def _events(path: Path, name: str) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


_COUNT = """
import sqlite3, sys
with sqlite3.connect(sys.argv[1], timeout=5) as db:
    print(db.execute(f"SELECT count(*) FROM urls WHERE {sys.argv[2]}").fetchone()[0])
"""


def _count(pid: int, database: Path, where: str) -> int:
    """URLs matching `where` in the database on the volume that only process `pid` sees."""
    result = subprocess.run(
        ["nsenter", f"--target={pid}", "--mount", sys.executable, "-c", _COUNT, database, where],
        capture_output=True,
        text=True,
    )
    return int(result.stdout) if result.returncode == 0 else 0


def _assert_held(proc: subprocess.Popen[str], log: Path) -> int:
    """The writer reports the read-only volume and the run waits (as for a full disk) instead
    of ending; nothing is committed meanwhile. Returns the URLs done."""

    def reported() -> bool:
        return bool(_events(log, "storage_full")) or proc.poll() is not None

    eventually(reported, 30, "the writer reports it", interval=0.05)
    assert proc.poll() is None, f"the crawl ended: {proc.communicate()[1]}"
    held = len(_events(log, "progress"))
    eventually(
        lambda: len(_events(log, "progress")),
        30,
        f"3 more progress lines than {held}",
        until=lambda n: n >= held + 3,
        interval=0.05,
    )
    assert proc.poll() is None, "the crawl ended instead of waiting"
    progress = _events(log, "progress")[held:]
    assert len({(event["done"], event["retries"]) for event in progress}) == 1
    return int(progress[-1]["done"])


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=30)


def _stop_held(proc: subprocess.Popen[str], *words: str) -> None:
    """SIGTERM while held: the held batch cannot be saved, so it is a storage error."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    _assert_one_line(subprocess.CompletedProcess(proc.args, proc.returncode, "", err), 3, *words)


def _readyz(log: Path) -> tuple[int, dict[str, Any]]:
    """`serve`'s readiness answer (its address is in its `listening` log line)."""
    address = _events(log, "listening")[0]["addresses"][0]
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_volume_remounted_read_only_holds_the_crawl_until_restarted_on_a_good_one(
    tmp_path: Path, make_site: SiteFactory, volume: Volume, command: str
) -> None:
    s = make_site()
    pages = 300
    for i in range(pages):
        s.route(f"/p{i}", site.slow(0.05, b"<html>page %d</html>" % i))
    urls = [s.url(f"/p{i}") for i in range(pages)]
    seeds = write_seeds(tmp_path / "seeds.txt", urls)
    data = volume.mount_point / "crawl"
    settings = sets('log.level="info"', "log.summary_seconds=0.2", "storage.commit_batch=8")
    run = [*CRAWLER, "run", "--data-dir", str(data), "--seeds", str(seeds), *settings]
    serving = ["--set", "service.listen=127.0.0.1:0", "--set", "service.min_free_bytes=0"]
    first = [*run, *serving] if command == "serve" else [*run]
    first[len(CRAWLER)] = command
    log = tmp_path / "first.log"
    with open(log, "w", encoding="utf-8") as stdout:
        proc = volume.start(first, stdout=stdout, stderr=subprocess.PIPE)
    try:
        database = data / "crawl.db"
        eventually(
            lambda: _count(proc.pid, database, "state = 'done'"),
            30,
            "20 URLs done",
            until=lambda n: n >= 20,
            interval=0.05,
        )
        volume.fail()
        assert _assert_held(proc, log) < pages
        if command == "serve":
            code, checks = _readyz(log)
            assert code == 503
            assert "Read-only file system" in checks["writer"]
        _stop_held(proc, str(data), "Read-only file system")
    finally:
        _reap(proc)

    # At start, on the volume still read-only (now mounted so): refused the same way.
    again = volume.run(run, options="ro")
    _assert_one_line(again, 3, str(data), "Read-only file system")

    # On the repaired volume the crawl resumes and ends: nothing lost or written twice.
    saved = tmp_path / "saved"
    copy_out = 'from=$1 to=$2; shift 2; "$@" && cp -a "$from" "$to"'
    resumed = volume.run(["sh", "-c", copy_out, "sh", str(data), str(saved), *run])
    assert resumed.returncode == 0, resumed.stderr
    lines = index(saved)  # fails on a URL with two lines
    assert sorted(lines) == sorted(urls)
    assert {line["state"] for line in lines.values()} == {"done"}
    responses = [r["url"] for r in warc_records(saved) if r["type"] == "response"]
    assert sorted(responses) == sorted(urls)


def test_a_database_on_a_volume_remounted_read_only_holds_the_crawl(
    tmp_path: Path, make_site: SiteFactory, volume: Volume
) -> None:
    """Only deferrals (503s): no output to write, so the database meets the read-only volume
    first. SQLite calls it a disk I/O error; the OS says why, and it is waited out too."""
    s = make_site()
    s.route("*", site.status(503))
    seeds = write_seeds(tmp_path / "seeds.txt", [s.url(f"/p{i}") for i in range(50)])
    data = volume.mount_point / "crawl"
    settings = sets(
        'log.level="info"',
        "log.summary_seconds=0.2",
        "retry.max_attempts=1000",
        "politeness.max_delay=0.02",  # 503s must not slow the host down
    )
    run = [*CRAWLER, "run", "--data-dir", str(data), "--seeds", str(seeds), *settings]
    log = tmp_path / "run.log"
    with open(log, "w", encoding="utf-8") as stdout:
        proc = volume.start(run, stdout=stdout, stderr=subprocess.PIPE)
    try:
        database = data / "crawl.db"
        eventually(
            lambda: _count(proc.pid, database, "attempts >= 2"),
            30,
            "20 URLs deferred",
            until=lambda n: n >= 20,
            interval=0.05,
        )
        volume.fail()
        assert _assert_held(proc, log) == 0
        assert not _events(log, "output_recover_failed")  # the output was not involved
        _stop_held(proc, str(data / "crawl.db"), "Read-only file system")
    finally:
        _reap(proc)
