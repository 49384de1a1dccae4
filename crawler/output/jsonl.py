"""JSONL index file: one JSON object per line, one line per URL that reached a final state."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO


def rfc3339(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class IndexFile:
    """An open JSONL index file; `size` is its length in bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        self.size = self._file.tell()

    def write(self, line: dict[str, Any]) -> None:
        data = json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"
        self._file.write(data)
        self.size += len(data)

    def flush(self, fsync: bool) -> None:
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
