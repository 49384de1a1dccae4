"""WARC file (warcio): one gzip member per record, request + response per fetched URL."""

from __future__ import annotations

import io
import os
import socket
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from isal import isal_zlib
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler import __version__
from crawler.models import SPOOL_BYTES, Response

# The body is stored de-chunked, so the header that described the chunking is renamed.
_RENAMED = {"transfer-encoding": "X-Crawler-Transfer-Encoding"}
# Connection-specific headers, which HTTP/2 does not send (RFC 9113, 8.2.2): the client
# lists them among its request's headers, the h2 connection drops them.
_NOT_SENT_OVER_H2 = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


# Revisit profiles (WARC 1.1, 6.7): the payload is that of an earlier record (same digest),
# or the server said it had not changed (a 304 to a conditional request).
IDENTICAL = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


def warc_date(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ISAL_LEVELS = 3  # output.gzip_level up to this compresses with ISA-L


def _gzip(data: bytes, level: int) -> bytes:
    """One gzip member: ISA-L for levels 1-3, zlib for 4-9.

    On the benchmark's HTML, ISA-L's level 1 takes a sixth of zlib level 4's CPU for about
    3% more bytes. zlib sets up its window and hash tables for every stream: sized to the
    record, a small record (request, warcinfo) costs ~7 us instead of ~55 us."""
    if level <= ISAL_LEVELS:
        return isal_zlib.compress(data, level, 16 + zlib.MAX_WBITS)
    bits = min(zlib.MAX_WBITS, max(9, (len(data) - 1).bit_length()))
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + bits, max(1, min(8, bits - 7)))
    return compressor.compress(data) + compressor.flush()


class _GzipMember:
    """A writable stream that compresses what it is given into one gzip member of `out`:
    a large record goes to the file as it is read, never whole in memory."""

    def __init__(self, out: BinaryIO, level: int) -> None:
        self._out = out
        wbits = 16 + zlib.MAX_WBITS
        self._compressor: isal_zlib.Compress | zlib._Compress = (
            isal_zlib.compressobj(level, zlib.DEFLATED, wbits)
            if level <= ISAL_LEVELS
            else zlib.compressobj(level, zlib.DEFLATED, wbits)
        )
        self.written = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self.written += len(data)

    def write(self, data: bytes) -> int:
        self._emit(self._compressor.compress(data))
        return len(data)

    def flush(self) -> None:
        """warcio's flush at the end of a record; the member ends with `finish`."""

    def finish(self) -> None:
        self._emit(self._compressor.flush())


class WarcFile:
    """An open WARC file that records are appended to; `size` is its length in bytes.

    It starts with a warcinfo record (`info`: its fields besides software, format and
    hostname), which every later record names (WARC-Warcinfo-ID)."""

    def __init__(self, path: Path, info: Mapping[str, str], gzip_level: int = 1) -> None:
        self.path = path
        self._level = gzip_level
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._buffer = io.BytesIO()
        self._writer = WARCWriter(self._buffer, gzip=False, warc_version="1.1")
        self.size = self._file.tell()
        self._warcinfo_id = self._write_warcinfo(info) if self.size == 0 else _first_id(path)

    def _member(self, record: object) -> bytes:
        """A record serialised by warcio, as its own gzip member."""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.write_record(record)
        return _gzip(self._buffer.getvalue(), self._level)

    def _append(self, *members: bytes) -> int:
        """Write whole members at the end; returns the offset of the last one."""
        offset = self.size
        for member in members:
            offset = self.size
            self._file.write(member)
            self.size += len(member)
        return offset

    def _write_warcinfo(self, fields: Mapping[str, str]) -> str:
        info = {
            "software": f"crawler/{__version__} (warcio)",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "hostname": socket.gethostname(),
            **fields,
        }
        record = self._writer.create_warcinfo_record(self.path.name, info)
        self._append(self._member(record))
        return str(record.rec_headers.get_header("WARC-Record-ID"))

    def write_exchange(
        self, url: str, response: Response, payload_digest: str, fetched_at: float
    ) -> int:
        """Append the request and response records; returns the response record's offset."""
        date = warc_date(fetched_at)
        response_id = f"<urn:uuid:{uuid.uuid4()}>"
        protocol = "h2" if response.http_version == "HTTP/2" else "http/1.1"
        request = self._request_record(url, response, date, response_id, protocol)
        record = self._response_record(url, response, date, response_id, protocol, payload_digest)
        # Both records are built before either is written: a failure leaves no orphan.
        request_member = self._member(request)
        if response.wire_bytes <= SPOOL_BYTES:
            return self._append(request_member, self._member(record))
        return self._append_streamed(request_member, record)

    def write_revisit(
        self,
        url: str,
        response: Response,
        payload_digest: str,
        fetched_at: float,
        refers_to: tuple[str, str],
        profile: str = IDENTICAL,
    ) -> int:
        """Append the request record and a `revisit` record (the response's status line
        and headers, no payload) referring to `refers_to` (URI, WARC-Date) of the record
        that holds the payload (`payload_digest`); returns the revisit record's offset."""
        date = warc_date(fetched_at)
        revisit_id = f"<urn:uuid:{uuid.uuid4()}>"
        protocol = "h2" if response.http_version == "HTTP/2" else "http/1.1"
        request = self._request_record(url, response, date, revisit_id, protocol)
        headers = self._answer_headers(revisit_id, date, protocol, response)
        record = self._writer.create_revisit_record(
            url,
            payload_digest,
            refers_to[0],
            refers_to[1],
            http_headers=self._status_and_headers(response),
            warc_headers_dict=headers,
        )
        if profile != IDENTICAL:
            record.rec_headers.replace_header("WARC-Profile", profile)
        return self._append(self._member(request), self._member(record))

    def _answer_headers(
        self, record_id: str, date: str, protocol: str, response: Response
    ) -> dict[str, str]:
        """The WARC headers a response or revisit record has in common."""
        headers = {
            "WARC-Record-ID": record_id,
            "WARC-Date": date,
            "WARC-Protocol": protocol,
            "WARC-Warcinfo-ID": self._warcinfo_id,
        }
        if response.peer:
            headers["WARC-IP-Address"] = response.peer
        return headers

    @staticmethod
    def _status_and_headers(response: Response) -> StatusAndHeaders:
        headers = [(_RENAMED.get(k.lower(), k), v) for k, v in response.headers]
        status = f"{response.status} {response.reason_phrase}".strip()
        return StatusAndHeaders(status, headers, protocol="HTTP/1.1")

    def _request_record(
        self, url: str, response: Response, date: str, response_id: str, protocol: str
    ) -> object:
        """The request record: the request line and headers that were sent, no body (over
        h2 too, in HTTP/1.1's form as WARC has it, `WARC-Protocol` saying h2)."""
        sent = response.request_headers
        if protocol == "h2":
            sent = [(k, v) for k, v in sent if k.lower() not in _NOT_SENT_OVER_H2]
        request_headers = StatusAndHeaders(
            f"{response.method} {response.target} HTTP/1.1", sent, is_http_request=True
        )
        return self._writer.create_warc_record(
            url,
            "request",
            payload=io.BytesIO(b""),
            length=0,
            http_headers=request_headers,
            warc_headers_dict={
                "WARC-Date": date,
                "WARC-Concurrent-To": response_id,
                "WARC-Protocol": protocol,
                "WARC-Warcinfo-ID": self._warcinfo_id,
            },
        )

    def _response_record(
        self,
        url: str,
        response: Response,
        date: str,
        response_id: str,
        protocol: str,
        payload_digest: str,
    ) -> object:
        """The response record. Its payload is the body itself, read from the start only
        when the record is serialised: never copied here."""
        warc_headers = self._answer_headers(response_id, date, protocol, response)
        warc_headers["WARC-Payload-Digest"] = payload_digest
        if response.truncated:
            warc_headers["WARC-Truncated"] = "length"
        response.body.seek(0)
        return self._writer.create_warc_record(
            url,
            "response",
            payload=response.body,
            length=response.wire_bytes,
            http_headers=self._status_and_headers(response),
            warc_headers_dict=warc_headers,
        )

    def _append_streamed(self, request_member: bytes, record: object) -> int:
        """Append the request, then the response compressed as it is read from its file;
        a failure cuts the file back to where the request began (no orphan)."""
        start = self._append(request_member)
        offset = self.size
        member = _GzipMember(self._file, self._level)
        try:
            WARCWriter(member, gzip=False, warc_version="1.1").write_record(record)
            member.finish()
        except Exception:
            self._file.flush()
            self._file.truncate(start)
            self.size = start
            raise
        self.size += member.written
        return offset

    def flush(self, fsync: bool) -> None:
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def payload_head(path: Path, offset: int, limit: int) -> bytes:
    """The first `limit` bytes of the payload of the record at `offset` of `path`, with
    its Content-Encoding undone (b"" when it cannot be read)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        for record in ArchiveIterator(handle):
            try:
                return bytes(record.content_stream().read(limit))
            except Exception:  # a payload that does not decode: no title, nothing worse
                return b""
    return b""


def _first_id(path: Path) -> str:
    """The WARC-Record-ID of the first record of `path` (its warcinfo record)."""
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            return str(record.rec_headers.get_header("WARC-Record-ID"))
    raise ValueError(f"{path} holds no WARC record")
