"""Reading a response body: spooled raw to a file, hashed, capped, its head decoded."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx2

from crawler import errors
from crawler.decoding import BodyDecoder


def payload_digest(sha1: Any) -> str:
    return "sha1:" + base64.b32encode(sha1.digest()).decode("ascii")


@dataclass(slots=True)
class Body:
    """What reading a body found: its size on the wire, digest, and decoded head."""

    wire: int
    sha1: Any
    truncated: bool
    decoded_bytes: int
    encoding_error: str | None
    decoded: bytes | None


async def read_body(resp: httpx2.Response, body: Any, cap: int, keep: int) -> Body:
    """Spool the raw body (up to `cap`) into `body`, hashing it, and keep the first `keep`
    decoded bytes when they can be trusted."""
    decoder = BodyDecoder(resp.headers.get("content-encoding"), cap, keep)
    sha1 = hashlib.sha1()
    wire = 0
    truncated = False
    encoding_error = None
    try:
        async for chunk in resp.aiter_raw():
            if wire + len(chunk) > cap:
                chunk = chunk[: cap - wire]
                truncated = True
            body.write(chunk)
            sha1.update(chunk)
            wire += len(chunk)
            if not decoder.feed(chunk):
                truncated = True
            if truncated:
                break
        if not truncated:
            decoder.finish()
    except errors.BadContentEncoding as exc:
        encoding_error = str(exc)
    body.seek(0)
    decoded: bytes | None = None
    if keep and encoding_error is None and decoder.verifiable:
        if decoder.kept is not None and decoder.compressed:
            decoded = bytes(decoder.kept)
        else:
            decoded = body.read(keep)  # never more, even from a spooled file
            body.seek(0)
    return Body(wire, sha1, truncated, decoder.decoded, encoding_error, decoded)
