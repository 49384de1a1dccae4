"""Streaming Content-Encoding decoder that counts decoded bytes and never inflates past a cap."""

from __future__ import annotations

import zlib

from crawler.errors import BadContentEncoding

_CHUNK = 64 * 1024


class BodyDecoder:
    """Feed raw (content-encoded) bytes; learn how many bytes they decode to.

    Decoded bytes are counted and dropped: memory stays at one chunk whatever the
    compression ratio. `feed` returns False once the body decodes to more than `cap`
    bytes; `decoded` then stops at `cap` (it never passes it). A corrupt stream raises
    BadContentEncoding at once, a truncated one at `finish`.
    """

    def __init__(self, content_encoding: str | None, cap: int, keep: int = 0) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self.cap = cap
        self.decoded = 0
        # The first `keep` decoded bytes of a compressed body are kept (for link extraction).
        self.keep = min(keep, cap)
        self.kept: bytearray | None = bytearray() if keep else None
        self._coding = codings[0] if len(codings) == 1 else ("" if not codings else "multi")
        self._zlib: zlib._Decompress | None = None
        self._pending: bytes | None = None
        self._fed = False
        if self._coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._coding == "deflate":
            self._pending = b""  # zlib-wrapped or raw deflate: decided on the first 2 bytes

    @property
    def compressed(self) -> bool:
        return self._zlib is not None or self._pending is not None

    @property
    def verifiable(self) -> bool:
        """Whether the encoding is one this decoder understands (else bytes count as-is)."""
        return self._zlib is not None or self._pending is not None or self._coding == ""

    def feed(self, data: bytes) -> bool:
        self._fed = self._fed or bool(data)
        if self._pending is not None:
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return True
            self._pending = None
            # RFC 1950 header: compression method 8 and a check value divisible by 31.
            wrapped = data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if self._zlib is None:
            if self.decoded + len(data) > self.cap:
                self.decoded = self.cap
                return False
            self.decoded += len(data)
            return True
        while data:
            try:  # one byte past the cap is enough to know the body passes it
                out = self._zlib.decompress(data, min(_CHUNK, self.cap + 1 - self.decoded))
            except zlib.error as exc:
                raise BadContentEncoding(f"corrupt {self._coding} stream: {exc}") from None
            kept = self.kept
            if kept is not None and len(kept) < self.keep:
                kept += out[: self.keep - len(kept)]
            if self.decoded + len(out) > self.cap:
                self.decoded = self.cap
                return False
            self.decoded += len(out)
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
        unfinished = self._pending or (self._zlib is not None and not self._zlib.eof)
        if self._fed and unfinished:
            raise BadContentEncoding(f"truncated {self._coding} stream")
