"""Storage errors through the real CLI: exit 3 and one line naming the path, never a traceback.

A read-only volume is a real read-only bind mount of the test's directory in a private
mount namespace (`unshare`): nothing outside the test's directory is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.crawling import write_seeds

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
