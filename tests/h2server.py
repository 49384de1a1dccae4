"""An HTTP/2 server over TLS for tests: hypercorn serving tests/servers/h2app.py with a
private CA (trustme), as the `h2_server` fixture."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TLSServer:
    base_url: str
    ca_file: Path

    def stats(self) -> dict[str, object]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(f"{self.base_url}/stats", context=context) as response:
            result: dict[str, object] = json.loads(response.read())
            return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def h2_server(tmp_path: Path) -> Iterator[TLSServer]:
    """hypercorn serving tests/servers/h2app.py over TLS (HTTP/2 by ALPN) with a private CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "tests.servers.h2app:app",
         "--bind", f"127.0.0.1:{port}", "--certfile", str(cert_file), "--keyfile", str(key_file)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"hypercorn exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    try:
        eventually(listening, 15, f"hypercorn listening on port {port}", interval=0.05)
        yield TLSServer(f"https://127.0.0.1:{port}", ca_file)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
