"""HTTP/1.1 request framing as the sites read it: heads, header fields, bodies, keep-alive."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from http import HTTPStatus

_MAX_HEAD = 65536  # bytes of request line + headers before we give up with 431


class RequestReader:
    """Reads request heads and bodies off one socket, keeping what it read ahead."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def head(self) -> tuple[bytes, float] | None:
        """The next request head and when its request line arrived; None at end of stream."""
        line_at: float | None = None
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # stray CRLFs between requests
            if line_at is None and b"\n" in self._buffer:
                line_at = time.monotonic()
            end = _head_end(self._buffer)
            if end is not None and line_at is not None:
                head = bytes(self._buffer[: end[0]])
                del self._buffer[: end[1]]
                return head, line_at
            if len(self._buffer) > _MAX_HEAD:
                self._sock.sendall(b"HTTP/1.1 431 Too Large\r\nConnection: close\r\n\r\n")
                return None
            data = self._sock.recv(65536)
            if not data:
                return None
            self._buffer += data

    def body(self, size: int) -> bytes:
        """The next ``size`` bytes: a request body."""
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        parts = [taken]
        size -= len(taken)
        while size > 0:
            data = self._sock.recv(min(size, 65536))
            if not data:
                raise ConnectionResetError("client closed in the request body")
            parts.append(data)
            size -= len(data)
        return b"".join(parts)


def _head_end(buffer: bytearray) -> tuple[int, int] | None:
    """Where the head ends and the body starts, accepting bare LF line ends."""
    ends = [(i, i + len(sep)) for sep in (b"\n\r\n", b"\n\n") if (i := buffer.find(sep)) >= 0]
    return min(ends) if ends else None


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, target, version and lower-cased header fields; tolerant of junk."""
    lines = head.decode("latin-1").split("\n")
    method, target, version = [*lines[0].split(), "", "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, version, headers


def keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    """Whether the client lets the connection carry another request after this one."""
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if "close" in tokens:
        return False
    return version.upper() == "HTTP/1.1" or "keep-alive" in tokens


def body_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length of a request body (0 without one); None if it cannot be framed.

    Transfer-Encoding is not supported, nor a Content-Length that is not a number: the site
    answers, then ends the connection.
    """
    if "transfer-encoding" in headers:
        return None
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return None


def status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}"
