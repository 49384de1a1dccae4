"""`crawler serve` as a real subprocess for end-to-end tests: its API called, its log read."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.crawling import sets
from tests.waiting import eventually

FINAL = ("done", "failed", "skipped")


class Service:
    """A `crawler serve` process; its log is read (and kept) by a thread."""

    def __init__(self, data_dir: Path, *assignments: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        args = sets("service.listen=127.0.0.1:0", 'log.level="info"', *assignments)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawler", "serve", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.log: list[dict[str, Any]] = []
        self.last_headers: dict[str, str] = {}  # of the last answer to `call`
        self.raw: list[str] = []
        self._listening = threading.Event()
        self.base = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(20):
            self.proc.kill()
            raise AssertionError("serve did not start:\n" + "".join(self.raw))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.log.append(event)
                if event.get("event") == "listening":
                    self.base = f"http://{event['addresses'][0]}"
                    self._listening.set()

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.last_headers = dict(response.headers)
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            self.last_headers = dict(exc.headers)
            return exc.code, exc.read()

    def json(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
        status, data = self.call(method, path, body, headers)
        assert status == 200, (status, data)
        return json.loads(data)

    def wait_final(self, n: int, timeout: float = 20) -> Any:
        """The status once at least `n` URLs are final (done, failed or skipped)."""
        return eventually(
            lambda: self.json("GET", "/status"),
            timeout,
            f"{n} URLs final in /status",
            until=lambda status: sum(status["states"][k] for k in FINAL) >= n,
            interval=0.2,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
