"""Site handlers that demand credentials: Basic, Bearer, a cookie, and RFC 7616 Digest."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Mapping

from tests.servers.site import Conn, Handler, Hit


def basic(username: str, password: str) -> str:
    """The Authorization (or Proxy-Authorization) value of HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def basic_required(username: str, password: str, body: bytes = b"<html>basic ok</html>") -> Handler:
    """200 for the right Basic credentials, else 401 with a Basic challenge."""
    expected = basic(username, password)

    def handle(conn: Conn, hit: Hit) -> None:
        if hit.headers.get("authorization") == expected:
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(401, b"", {"WWW-Authenticate": 'Basic realm="test"'})

    return handle


def bearer_required(token: str, body: bytes = b"<html>bearer ok</html>") -> Handler:
    """200 for `Authorization: Bearer <token>`, else 401 with a Bearer challenge."""

    def handle(conn: Conn, hit: Hit) -> None:
        if hit.headers.get("authorization") == f"Bearer {token}":
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(401, b"", {"WWW-Authenticate": 'Bearer realm="test"'})

    return handle


def cookie_required(name: str, value: str, body: bytes = b"<html>members</html>") -> Handler:
    """200 if the request carries the cookie `name=value`, else 403."""

    def handle(conn: Conn, hit: Hit) -> None:
        pairs = [p.strip() for p in hit.headers.get("cookie", "").split(";")]
        if f"{name}={value}" in pairs:
            conn.respond(200, body, {"Content-Type": "text/html"})
        else:
            conn.respond(403, b"login first", {"Content-Type": "text/plain"})

    return handle


_DIGEST_FIELD = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_digest(value: str) -> dict[str, str] | None:
    """The fields of an `Authorization: Digest ...` value (names lower-cased), or None."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _DIGEST_FIELD.finditer(rest)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestRealm:
    """RFC 7616 Digest with MD5 and qop=auth: challenges, then checks every response hash.

    `verified` lists the request targets whose credentials were proven; `rejected` counts
    requests that carried a Digest header that did not verify (a wrong password shows here).
    """

    def __init__(self, realm: str, username: str, password: str) -> None:
        self.realm = realm
        self._username = username
        self._ha1 = _md5(f"{username}:{realm}:{password}")
        self._opaque = secrets.token_hex(8)
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self.verified: list[str] = []
        self.rejected = 0

    def handler(self, body: bytes = b"<html>digest ok</html>") -> Handler:
        def handle(conn: Conn, hit: Hit) -> None:
            fields = parse_digest(hit.headers.get("authorization", ""))
            if fields is not None and self._verify(fields, hit):
                conn.respond(200, body, {"Content-Type": "text/html"})
                return
            nonce = secrets.token_hex(16)
            with self._lock:
                self._nonces.add(nonce)
                self.rejected += fields is not None
            challenge = (
                f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", '
                f'algorithm=MD5, opaque="{self._opaque}"'
            )
            conn.respond(401, b"", {"WWW-Authenticate": challenge})

        return handle

    def _verify(self, fields: Mapping[str, str], hit: Hit) -> bool:
        with self._lock:
            known = fields.get("nonce") in self._nonces
        if not known or fields.get("algorithm", "MD5").upper() != "MD5":
            return False
        expected = {"username": self._username, "realm": self.realm, "uri": hit.path}
        expected |= {"qop": "auth", "opaque": self._opaque}
        if any(fields.get(k) != v for k, v in expected.items()):
            return False
        ha2 = _md5(f"{hit.method}:{hit.path}")
        parts = [self._ha1, fields["nonce"], fields.get("nc", ""), fields.get("cnonce", "")]
        if _md5(":".join([*parts, "auth", ha2])) != fields.get("response"):
            return False
        with self._lock:
            self.verified.append(hit.path)
        return True
