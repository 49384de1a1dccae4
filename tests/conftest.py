"""Shared fixtures for the crawler's tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# -- servers, make_site: loopback test servers (tests/servers/) ------------------------------
# tests/ has no __init__.py, so pytest puts tests/ (not the project root) on sys.path; tests
# import `tests.servers` as a package of the root, one name however they are run.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from crawler.frontier.sqlite import SQLiteFrontier  # noqa: E402
from tests.h2server import h2_server  # noqa: E402, F401 - a fixture for any test module
from tests.servers import Servers, SiteFactory  # noqa: E402
from tests.service import Service  # noqa: E402


@pytest.fixture(autouse=True)
def _precise_server_clocks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked `timing` assert gaps between request starts, as loopback servers in
    this process stamp them, to within 5 ms; at the default GIL switch interval (5 ms) a
    server thread can wait that long to stamp a request while an in-process crawl runs, so
    for them the interpreter hands the GIL over every millisecond."""
    if request.node.get_closest_marker("timing") is None:
        yield
        return
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "crawl.db"


@pytest.fixture
async def frontier(db_path: Path) -> AsyncIterator[SQLiteFrontier]:
    """A real SQLite frontier in a fresh file, without fsync."""
    opened = await SQLiteFrontier.open(db_path, fsync=False, busy_timeout=5.0)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Sites, proxies, TLS and token servers on demand; all stop at teardown.

    Teardown fails the test if a handler raised anything but OSError (a bug in the test).
    """
    started = Servers(tmp_path / "servers")
    yield started
    started.close()


@pytest.fixture
def make_site(servers: Servers) -> SiteFactory:
    """Start loopback sites on demand (``make_site("127.0.0.2")``); all stop at teardown."""
    return servers.site


# -- end of servers, make_site ---------------------------------------------------------------


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """`crawler serve` processes a test starts (tests/service.py); all killed at teardown."""
    started: list[Service] = []
    yield started
    for service in started:
        service.close()
