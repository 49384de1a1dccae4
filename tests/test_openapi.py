"""The API as described (issue 15): `GET /openapi.json` against a live `crawler serve`,
exercised by schemathesis (every operation, generated inputs, every check: status codes,
content types, bodies against their schemas, 5xx never)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service import Service

pytestmark = pytest.mark.slow

# Generated seeds must not send a lookup to the machine's resolver (no test touches the
# internet): names resolve against a loopback port where nothing answers.
NO_DNS = 'network.dns_servers=["127.0.0.1:9"]'
TOKEN = "s3cret-token"


def test_schemathesis_finds_the_api_as_described(tmp_path: Path, services: list[Service]) -> None:
    svc = Service(tmp_path / "crawl", NO_DNS, "network.dns_timeout=0.5", f'service.token="{TOKEN}"')
    services.append(svc)
    document = svc.json("GET", "/openapi.json")
    assert document["openapi"].startswith("3.1")
    report = tmp_path / "report.ndjson"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{svc.base}/openapi.json",
            "--checks", "all",
            "--exclude-path", "/events",  # a stream without end: tests/test_console_page.py
            "--header", f"Authorization: Bearer {TOKEN}",
            "--max-examples", "60",
            "--seed", "15",
            "--generation-deterministic",  # the same cases at every run: CI never flickers
            "--request-timeout", "10",
            "--no-color",
            "--report", "ndjson",
            "--report-ndjson-path", str(report),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the checkout
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    events = [json.loads(line) for line in report.read_text().splitlines()]
    assert events  # it ran
