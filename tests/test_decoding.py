"""Tests for crawler/decoding.py: streaming Content-Encoding decoding with a cap."""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Iterator

import pytest

from crawler.decoding import BodyDecoder
from crawler.errors import BadContentEncoding

BODY = random.Random(7).randbytes(50_000) + b"<p>hello</p>" * 20_000  # 290 000 bytes


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _zlib(data: bytes) -> bytes:
    return zlib.compress(data)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _feed_all(decoder: BodyDecoder, data: bytes, chunk: int = 4096) -> None:
    """Feed `data` in chunks, then finish: a bad stream may raise at either step."""
    for piece in _chunks(data, chunk):
        decoder.feed(piece)
    decoder.finish()


def _decode(encoding: str | None, data: bytes, chunk: int, cap: int = 10**9) -> BodyDecoder:
    decoder = BodyDecoder(encoding, cap)
    for piece in _chunks(data, chunk):
        assert decoder.feed(piece) is True
    decoder.finish()
    return decoder


# -- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity ", "identity, identity"])
def test_identity_counts_bytes(encoding: str | None) -> None:
    decoder = _decode(encoding, BODY, 4096)
    assert decoder.decoded == len(BODY)
    assert decoder.verifiable


def test_identity_cap() -> None:
    decoder = BodyDecoder(None, cap=100)
    assert decoder.feed(b"x" * 60) is True
    assert decoder.feed(b"x" * 40) is True  # exactly at the cap is fine
    assert decoder.feed(b"x") is False
    assert decoder.decoded == 100  # never past the cap


def test_empty_feeds_are_harmless() -> None:
    for encoding in (None, "gzip", "deflate"):
        decoder = BodyDecoder(encoding, cap=10)
        assert decoder.feed(b"") is True
        decoder.finish()
        assert decoder.decoded == 0


# -- gzip -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 1000, 65536, 10**9])
@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", " gzip "])
def test_gzip_decodes_to_the_right_length(encoding: str, chunk: int) -> None:
    data = _gzip(BODY)
    if chunk == 1:
        data = _gzip(BODY[:20_000])  # keep the 1-byte case fast
        expected = 20_000
    else:
        expected = len(BODY)
    decoder = _decode(encoding, data, chunk)
    assert decoder.decoded == expected
    assert decoder.verifiable


@pytest.mark.parametrize("chunk", [1, 10, 4096, 10**9])
def test_multi_member_gzip(chunk: int) -> None:
    parts = [b"first member " * 50, b"", b"second " * 300, b"third"]
    data = b"".join(_gzip(part) for part in parts)
    decoder = _decode("gzip", data, chunk)
    assert decoder.decoded == sum(len(part) for part in parts)


def test_multi_member_gzip_with_member_ending_on_a_feed_boundary() -> None:
    first, second = _gzip(b"a" * 1000), _gzip(b"b" * 2000)
    decoder = BodyDecoder("gzip", cap=10**6)
    assert decoder.feed(first)
    assert decoder.feed(second)
    decoder.finish()
    assert decoder.decoded == 3000


def test_empty_body_with_gzip_encoding_is_fine() -> None:
    decoder = BodyDecoder("gzip", cap=1024)
    decoder.finish()
    assert decoder.decoded == 0
    assert decoder.verifiable


def test_gzip_of_nothing_is_fine() -> None:
    decoder = _decode("gzip", _gzip(b""), 5)
    assert decoder.decoded == 0


def test_truncated_gzip_raises_at_finish() -> None:
    data = _gzip(BODY)
    decoder = BodyDecoder("gzip", cap=10**9)
    for piece in _chunks(data[: len(data) // 2], 8192):
        assert decoder.feed(piece)
    with pytest.raises(BadContentEncoding, match="truncated gzip"):
        decoder.finish()


def test_gzip_missing_only_its_trailer_raises_at_finish() -> None:
    data = _gzip(b"hello world" * 100)
    decoder = BodyDecoder("gzip", cap=10**9)
    decoder.feed(data[:-8])  # CRC32 and ISIZE missing
    with pytest.raises(BadContentEncoding):
        decoder.finish()


def test_corrupt_gzip_header_raises_at_feed() -> None:
    decoder = BodyDecoder("gzip", cap=10**9)
    with pytest.raises(BadContentEncoding, match="corrupt gzip"):
        decoder.feed(b"this is not gzip at all, just text" * 10)


def test_corrupt_gzip_payload_raises_at_feed_or_finish() -> None:
    data = bytearray(_gzip(BODY))
    for position in range(40, len(data) - 20, 97):
        data[position] ^= 0xFF
    decoder = BodyDecoder("gzip", cap=10**9)
    with pytest.raises(BadContentEncoding):
        _feed_all(decoder, bytes(data))


def test_gzip_with_wrong_crc_raises() -> None:
    data = bytearray(_gzip(b"payload " * 1000))
    data[-8] ^= 0x01  # first byte of the CRC32 trailer
    decoder = BodyDecoder("gzip", cap=10**9)
    with pytest.raises(BadContentEncoding, match="corrupt gzip"):
        decoder.feed(bytes(data))


def test_garbage_after_a_gzip_member_raises() -> None:
    decoder = BodyDecoder("gzip", cap=10**9)
    with pytest.raises(BadContentEncoding, match="corrupt gzip"):
        decoder.feed(_gzip(b"ok") + b"trailing junk that is not gzip")


# -- the cap (gzip bomb) ----------------------------------------------------------------------


def _zeros_gzip(total: int) -> bytes:
    """`total` zero bytes gzip-compressed, built without holding them in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(total // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _zeros_gzip(200 * 1024 * 1024)


@pytest.mark.parametrize("chunk", [1024, 65536, 10**9])
def test_gzip_bomb_stops_past_the_cap(bomb: bytes, chunk: int) -> None:
    assert len(bomb) < 300_000  # ~1000:1
    cap = 1024 * 1024
    decoder = BodyDecoder("gzip", cap=cap)
    fed = 0
    result = True
    for piece in _chunks(bomb, chunk):
        fed += len(piece)
        result = decoder.feed(piece)
        if not result:
            break
    assert result is False
    assert decoder.decoded == cap  # never past it
    if chunk < len(bomb):
        assert fed < len(bomb)  # stopped early, not after inflating everything


def test_deflate_bomb_stops_past_the_cap() -> None:
    compressor = zlib.compressobj(9)
    data = compressor.compress(bytes(20 * 1024 * 1024)) + compressor.flush()
    decoder = BodyDecoder("deflate", cap=100_000)
    assert decoder.feed(data) is False
    assert decoder.decoded == 100_000


def test_cap_exactly_reached_is_not_exceeded() -> None:
    decoder = BodyDecoder("gzip", cap=5000)
    assert decoder.feed(_gzip(b"z" * 5000)) is True
    decoder.finish()
    assert decoder.decoded == 5000


@pytest.mark.parametrize("chunk", [1, 4096, 10**9])
def test_one_byte_past_the_cap_is_detected_and_not_counted(chunk: int) -> None:
    decoder = BodyDecoder("gzip", cap=5000)
    assert not all(decoder.feed(piece) for piece in _chunks(_gzip(b"z" * 5001), chunk))
    assert decoder.decoded == 5000


@pytest.mark.parametrize("chunk", [7, 65536, 10**9])
def test_keep_holds_only_the_first_bytes_decoded(chunk: int) -> None:
    decoder = BodyDecoder("gzip", cap=10**9, keep=10_000)
    for piece in _chunks(_gzip(BODY), chunk):
        assert decoder.feed(piece)
    decoder.finish()
    assert decoder.decoded == len(BODY)
    assert decoder.kept == BODY[:10_000]


def test_keep_never_holds_more_than_the_cap(bomb: bytes) -> None:
    decoder = BodyDecoder("gzip", cap=1000, keep=10**6)
    assert decoder.feed(bomb) is False
    assert decoder.kept == bytes(1000)


def test_multi_member_cap_counts_all_members() -> None:
    data = b"".join(_gzip(b"m" * 4000) for _ in range(5))
    decoder = BodyDecoder("gzip", cap=10_000)
    assert decoder.feed(data) is False
    assert decoder.decoded == 10_000


# -- deflate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096, 10**9])
def test_deflate_with_zlib_header(chunk: int) -> None:
    body = BODY if chunk > 3 else BODY[:20_000]
    decoder = _decode("deflate", _zlib(body), chunk)
    assert decoder.decoded == len(body)
    assert decoder.verifiable


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096, 10**9])
def test_raw_deflate(chunk: int) -> None:
    body = BODY if chunk > 3 else BODY[:20_000]
    decoder = _decode("deflate", _raw_deflate(body), chunk)
    assert decoder.decoded == len(body)


def test_raw_deflate_fed_one_byte_at_a_time() -> None:
    # regression: the zlib-or-raw decision needs two bytes, the first feed may bring one
    body = b"raw deflate without a zlib header " * 200
    decoder = _decode("deflate", _raw_deflate(body), 1)
    assert decoder.decoded == len(body)


def test_deflate_of_a_single_byte_body_is_truncated() -> None:
    decoder = BodyDecoder("deflate", cap=10**9)
    assert decoder.feed(b"x") is True
    with pytest.raises(BadContentEncoding, match="truncated deflate"):
        decoder.finish()


def test_empty_deflate_body_is_fine() -> None:
    decoder = BodyDecoder("deflate", cap=10)
    assert decoder.verifiable
    decoder.finish()
    assert decoder.decoded == 0


def test_truncated_deflate_raises_at_finish() -> None:
    data = _zlib(BODY)
    decoder = BodyDecoder("deflate", cap=10**9)
    decoder.feed(data[: len(data) // 2])
    with pytest.raises(BadContentEncoding, match="truncated deflate"):
        decoder.finish()


def test_corrupt_deflate_raises() -> None:
    decoder = BodyDecoder("deflate", cap=10**9)
    with pytest.raises(BadContentEncoding, match="corrupt deflate"):
        decoder.feed(b"\xff" * 64)


# -- unknown encodings ------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", "gzip, gzip"])
def test_unknown_encoding_counts_raw_bytes_and_is_not_verifiable(encoding: str) -> None:
    data = b"\x8b\x00 opaque bytes \xff" * 100
    decoder = BodyDecoder(encoding, cap=10**6)
    for piece in _chunks(data, 333):
        assert decoder.feed(piece)
    decoder.finish()  # nothing to verify
    assert decoder.decoded == len(data)
    assert decoder.verifiable is False


def test_unknown_encoding_cap_applies_to_raw_bytes() -> None:
    decoder = BodyDecoder("br", cap=10)
    assert decoder.feed(b"x" * 10) is True
    assert decoder.feed(b"x") is False


def test_identity_around_a_real_coding_is_ignored() -> None:
    decoder = _decode("identity, gzip", _gzip(b"abc" * 100), 17)
    assert decoder.decoded == 300
    assert decoder.verifiable
