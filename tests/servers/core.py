"""The one server core: a listener on a loopback address, a thread per connection, one stop.

Every server of this package is a :class:`LoopbackServer`: ``start()`` binds port 0 on
127.0.0.x (the OS picks the port), a thread accepts and hands each connection to
``serve()`` in a thread of its own, optionally after a TLS handshake. The core keeps what
every server records the same way (connections accepted, failed handshakes, handler bugs)
and ``stop()`` wakes every blocked socket, so a test's teardown never hangs.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from contextlib import suppress
from typing import Self

IDLE_TIMEOUT = 10.0  # seconds a proxy or TLS server waits on a silent client before giving up
_LINGER = 1.0  # seconds a clean close waits for the client's own FIN
_JOIN = 2.0  # seconds stop() waits for the server's threads


class LoopbackServer:
    """A TCP server on a loopback address and an OS-chosen port; subclasses ``serve()``.

    ``idle_timeout`` bounds every blocking read and write on a connection (None: none, a
    stalled client is only woken by ``stop()``). With ``ssl_context`` each connection is
    wrapped in TLS first; a handshake that fails is counted in ``handshake_failures``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{type(self).__name__} host must be a loopback address, got {host!r}")
        self.host = host
        self.port = 0
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._errors: list[Exception] = []
        self._connections = 0
        self._handshake_failures = 0
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        with self._lock:
            return self._connections

    @property
    def handshake_failures(self) -> int:
        """TLS handshakes that failed (an untrusted certificate, no client certificate)."""
        with self._lock:
            return self._handshake_failures

    @property
    def errors(self) -> list[Exception]:
        """Bugs in a handler (anything but OSError: clients that go away are normal)."""
        with self._lock:
            return list(self._errors)

    def serve(self, sock: socket.socket, serial: int) -> None:
        """Talk to one client (connection ``serial``, from 1) until either side ends it."""
        raise NotImplementedError

    def start(self) -> Self:
        if self._listener is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"server-{self.port}-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open socket; wait briefly for the threads."""
        with self._lock:
            if self._listener is None or self.stopping.is_set():
                return
            self.stopping.set()
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        self._wake_acceptor()
        deadline = time.monotonic() + _JOIN
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def track(self, sock: socket.socket) -> None:
        """Have ``stop()`` shut ``sock`` down too (e.g. a proxy's upstream connection)."""
        with self._lock:
            self._open.add(sock)

    def release(self, sock: socket.socket) -> None:
        """Forget and close a socket (idempotent; stop() only touches open ones)."""
        with self._lock:
            self._open.discard(sock)
            sock.close()

    def failed(self, exc: Exception) -> None:
        """Keep a handler bug for the test's teardown."""
        with self._lock:
            self._errors.append(exc)

    def _wake_acceptor(self) -> None:
        assert self._listener is not None
        assert self._acceptor is not None
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        self._acceptor.join(0.5)
        if self._acceptor.is_alive():  # elsewhere: knock once, the loop sees stopping
            with suppress(OSError), socket.create_connection((self.host, self.port), 0.5):
                pass
            self._acceptor.join(_JOIN)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self.stopping.is_set():
                    sock.close()
                    return
                self._connections += 1
                self._open.add(sock)
                self._threads = [thread for thread in self._threads if thread.is_alive()]
                thread = threading.Thread(
                    target=self._run,
                    args=(sock, self._connections),
                    name=f"server-{self.port}-conn-{self._connections}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _run(self, sock: socket.socket, serial: int) -> None:
        try:
            sock.settimeout(self.idle_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self._handshake(sock, self.ssl_context)
            self.serve(sock, serial)
        except OSError:  # the client went away, or the server is stopping
            pass
        except Exception as exc:
            self.failed(exc)
        finally:
            self._linger_close(sock)

    def _handshake(self, sock: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        """The TLS socket in place of ``sock``; a handshake is bounded even without a timeout."""
        sock.settimeout(self.idle_timeout or IDLE_TIMEOUT)
        try:
            wrapped = context.wrap_socket(sock, server_side=True)  # detaches ``sock``
        except OSError:
            with self._lock:
                self._handshake_failures += 1
            raise
        finally:
            self.release(sock)
        wrapped.settimeout(self.idle_timeout)
        self.track(wrapped)
        return wrapped

    def _linger_close(self, sock: socket.socket) -> None:
        """Send FIN, let the client read and close first, then close (no RST on the data)."""
        with suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # fails harmlessly if close() already did it
        with suppress(OSError):
            sock.settimeout(_LINGER)
            deadline = time.monotonic() + _LINGER
            while time.monotonic() < deadline and sock.recv(65536):
                pass
        self.release(sock)


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
