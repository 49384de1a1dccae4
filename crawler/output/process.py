"""Output process: WARC + JSONL writing in a child process, so it never competes for the GIL.

Building WARC records (warcio) and compressing them costs about as much CPU per page as the
HTTP client itself; on the event loop's interpreter that halves throughput. The child owns
`Outputs`; the committer, in the parent, sends it batches of outcomes through a socket and
gets back the new committed length of each file, which it then commits to the frontier. The
protocol is the same as in-process: nothing counts until the committer's commit.

A small body travels as bytes in the pickled batch. A body spooled to a temporary file (over
SPOOL_BYTES) travels as its file descriptor (SCM_RIGHTS), one after the batch per such body
in batch order, and the child reads it from the file: neither process holds it in memory.

The child holds `writer.lock` in the data directory while it lives, and takes it before
recovering the files: a new crawl never truncates files an old child is still finishing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

from crawler import logs
from crawler.errors import StorageError, storage_error
from crawler.models import SPOOL_BYTES, Outcome
from crawler.output import Outputs, WriteResult
from crawler.settings import Settings

# Named before the output package was; kept, so a crawl still sees an older version's child.
LOCK_NAME = "writer.lock"


class Passed(io.BytesIO):
    """Stands in for a body in the pickled batch: the body follows as a file descriptor."""


def _portable(outcome: Outcome, fds: list[int]) -> Outcome:
    """The outcome as it can be pickled: a small body read into memory, a spooled one's
    file descriptor added to `fds`; without the URLs it discovered (the child writes only
    their count; pickling them cost ~5% CPU)."""
    response = outcome.response
    if response is not None and not isinstance(response.body, io.BytesIO):
        fd = response.body.fileno() if response.wire_bytes > SPOOL_BYTES else -1
        if fd >= 0:  # the parent closes its body once the child has written it
            fds.append(fd)
            outcome = dataclasses.replace(
                outcome, response=dataclasses.replace(response, body=Passed())
            )
        else:
            response.body.seek(0)
            data = response.body.read()
            response.close()
            response.body = io.BytesIO(data)
    if outcome.new_urls:
        outcome = dataclasses.replace(outcome, new_urls=())
    return outcome


def _os_error(exc: OSError) -> tuple[str, tuple[int | None, str, str | None]]:
    """The reply for an OS error: errno, reason and path (the parent words the message)."""
    filename = None if exc.filename is None else str(exc.filename)
    return "oserror", (exc.errno, exc.strerror or str(exc), filename)


def _receive_bodies(sock: socket.socket, outcomes: Sequence[Outcome]) -> list[BinaryIO]:
    """Open the file of each body that follows the batch as a descriptor (see `Passed`)."""
    opened: list[BinaryIO] = []
    try:
        for outcome in outcomes:
            response = outcome.response
            if response is not None and isinstance(response.body, Passed):
                _, fds, _, _ = socket.recv_fds(sock, 1, 1)
                if len(fds) != 1:
                    raise EOFError("a body's file descriptor did not arrive")
                response.body = open(fds[0], "rb")  # noqa: SIM115 - closed by the caller
                opened.append(response.body)
    except BaseException:
        for body in opened:
            body.close()
        raise
    return opened


def _serve(conn: Connection, sock: socket.socket, data_dir: Path, settings: Settings) -> None:
    """The child's loop: one request, one reply, until the parent hangs up."""
    # Ctrl-C and `docker stop` reach the whole process group: the parent decides when we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        lock = open(data_dir / LOCK_NAME, "a+b")  # noqa: SIM115 - closed by the with below
    except OSError as exc:  # the parent's first request gets the error
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
            conn.send(_os_error(exc))
        return
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        outputs = Outputs(data_dir, settings)
        try:
            while _answer(conn, sock, outputs):
                pass
        finally:
            outputs.close()


def _answer(conn: Connection, sock: socket.socket, outputs: Outputs) -> bool:
    """Answer the parent's next request; False once it hangs up or sends a verb other than
    `recover` and `write` (`close`, when it is done)."""
    try:
        verb, argument = conn.recv()
    except EOFError:
        return False
    if verb not in ("recover", "write"):
        return False
    try:
        reply: WriteResult | None = None
        if verb == "recover":
            outputs.recover(argument)
        else:
            reply = _write(sock, outputs, argument)
    except OSError as exc:
        conn.send(_os_error(exc))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("ok", reply))
    return True


def _write(sock: socket.socket, outputs: Outputs, outcomes: Sequence[Outcome]) -> WriteResult:
    """Write a batch, its spooled bodies read from the descriptors that follow it."""
    bodies = _receive_bodies(sock, outcomes)
    try:
        return outputs.write(outcomes)
    finally:
        for body in bodies:
            body.close()


def main() -> None:
    """Entry point of the child: `python -c ... <fd>`, the fd being its end of a socketpair."""
    conn = Connection(int(sys.argv[1]))
    data_dir, settings = conn.recv()
    logs.configure(settings.log.level, settings.log.format)
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _serve(conn, sock, data_dir, settings)


class OutputProcess:
    """The parent's handle on the output child; every method blocks (call from a thread).

    The child is a fresh interpreter that imports only the output package (not the crawler, as
    multiprocessing's spawn would), started with one end of a socketpair.
    """

    def __init__(self, data_dir: Path, settings: Settings) -> None:
        self._data_dir = data_dir
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-c", _CHILD, str(theirs.fileno()), _ROOT],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        self._conn = Connection(ours.detach())
        self._sock = socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        self._call_no_reply((data_dir, settings))

    def _call_no_reply(self, message: object) -> None:
        try:
            self._conn.send(message)
        except OSError as exc:
            raise StorageError(f"the output process died: {exc!r}") from exc

    def _call(self, verb: str, argument: object, fds: Sequence[int] = ()) -> Any:
        try:
            self._conn.send((verb, argument))
            for fd in fds:
                socket.send_fds(self._sock, [b"F"], [fd])
            status, reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise StorageError(f"the output process died: {exc!r}") from exc
        if status == "oserror":
            number, reason, filename = reply
            raise storage_error(OSError(number, reason, filename), "write output", self._data_dir)
        if status != "ok":
            raise StorageError(f"cannot write output: {reply}")
        return reply

    def recover(self, committed: dict[str, int]) -> None:
        self._call("recover", committed)

    def write(self, outcomes: Sequence[Outcome]) -> WriteResult:
        fds: list[int] = []
        portable = [_portable(o, fds) for o in outcomes]
        result: WriteResult = self._call("write", portable, fds)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("close", None))
        self._conn.close()
        self._sock.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# The child imports the very `crawler` package the parent runs: `-P` keeps the current
# directory off its sys.path (`python -c` would put it first, so a `crawler/` folder there,
# say another version's checkout, would be imported instead), and the parent's package
# root goes first.
_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[2]); from crawler.output.process import main; main()"
)
