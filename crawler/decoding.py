"""Streaming Content-Encoding decoder that counts decoded bytes and never inflates past a cap."""

from __future__ import annotations

import zlib

from crawler.errors import BadContentEncoding

_CHUNK = 64 * 1024


class BodyDecoder:
    """Feed raw (content-encoded) bytes; learn how many bytes they decode to.

    Decoded bytes are counted and dropped: memory stays at one chunk whatever the
    compression ratio. `feed` returns False once the decoded size passes `cap`.
    A corrupt stream raises BadContentEncoding at once, a truncated one at `finish`.
    """

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self.cap = cap
        self.decoded = 0
        self._coding = codings[0] if len(codings) == 1 else ("" if not codings else "multi")
        self._zlib: zlib._Decompress | None = None
        self._first = True
        self._fed = False
        if self._coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._coding == "deflate":
            self._zlib = zlib.decompressobj()

    @property
    def verifiable(self) -> bool:
        """Whether the encoding is one this decoder understands (else bytes count as-is)."""
        return self._zlib is not None or self._coding == ""

    def feed(self, data: bytes) -> bool:
        self._fed = self._fed or bool(data)
        if self._zlib is None:
            self.decoded += len(data)
            return self.decoded <= self.cap
        while data:
            try:
                out = self._zlib.decompress(data, _CHUNK)
            except zlib.error as exc:
                if self._first and self._coding == "deflate":
                    # Some servers send raw deflate without the zlib header.
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise BadContentEncoding(f"corrupt {self._coding} stream: {exc}") from None
            self._first = False
            self.decoded += len(out)
            if self.decoded > self.cap:
                return False
            if self._zlib.eof:
                data = self._zlib.unused_data
                if data and self._coding != "deflate":
                    self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)  # next gzip member
                    continue
                return True
            data = self._zlib.unconsumed_tail
        return True

    def finish(self) -> None:
        """Call when the body is complete: a compressed stream must have ended properly."""
        if self._zlib is not None and self._fed and not self._zlib.eof:
            raise BadContentEncoding(f"truncated {self._coding} stream")
