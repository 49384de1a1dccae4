"""An OAuth2 client-credentials token endpoint on a Site, and the resource it guards."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from tests.servers.auth import basic
from tests.servers.site import Conn, Handler, Hit, Site

_JSON = {"Content-Type": "application/json"}


@dataclass
class Token:
    value: str
    issued: float  # time.monotonic()
    used: int = 0  # resource requests it was accepted for
    revoked: bool = False  # refused by the resource from the start


class TokenServer:
    """An RFC 6749 client-credentials token endpoint (`POST /token`) on a Site, and its resource.

    The client must authenticate with HTTP Basic `client_id:client_secret` (section 2.3.1)
    and send `grant_type=client_credentials` (and `scope`, when one is expected) as a form.
    Tokens announce `expires_in` but the resource accepts one only for `lifetime` seconds
    after issue and for `uses` requests (None: no such limit): either makes a token expire
    server-side, early if wanted. `fail_status` makes every token request fail with it;
    `delay` holds each token request that long (so concurrent fetches overlap with it).
    The next `revoke` tokens issued are refused by the resource from the start (a test may
    set `revoke` again, e.g. before a restart).
    """

    def __init__(
        self,
        server: Site,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        expires_in: int = 3600,
        lifetime: float | None = None,
        uses: int | None = None,
        fail_status: int | None = None,
        delay: float = 0.0,
        revoke: int = 0,
    ) -> None:
        self.server = server
        self.revoke = revoke
        self._client = basic(client_id, client_secret)
        self._scope = scope
        self._expires_in = expires_in
        self._lifetime = lifetime
        self._uses = uses
        self.fail_status = fail_status
        self._delay = delay
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._refusals: list[str] = []
        self.accepted: list[str] = []  # token value of each resource request let through
        self.rejected: list[str] = []  # Authorization value of each resource request refused
        server.route("/token", self._token)

    @property
    def token_url(self) -> str:
        return self.server.url("/token")

    @property
    def token_requests(self) -> list[Hit]:
        return [hit for hit in self.server.hits if hit.path == "/token"]

    @property
    def issued(self) -> list[Token]:
        with self._lock:
            return list(self._tokens.values())

    @property
    def refusals(self) -> list[str]:
        """Why token requests were refused (a malformed client request shows here)."""
        with self._lock:
            return list(self._refusals)

    def _token(self, conn: Conn, hit: Hit) -> None:
        if self._delay:
            conn.sleep(self._delay)
        if self.fail_status is not None:
            conn.respond(self.fail_status, b'{"error":"down"}', _JSON)
            return
        problem = self._check(hit)
        if problem is not None:
            with self._lock:
                self._refusals.append(problem)
            error = {"error": "invalid_client" if "client" in problem else "invalid_request"}
            conn.respond(400, json.dumps(error).encode(), _JSON)
            return
        value = f"at-{secrets.token_hex(12)}"
        with self._lock:
            self._tokens[value] = Token(value, time.monotonic(), revoked=self.revoke > 0)
            self.revoke = max(0, self.revoke - 1)
        answer = {"access_token": value, "token_type": "Bearer", "expires_in": self._expires_in}
        conn.respond(200, json.dumps(answer).encode(), {**_JSON, "Cache-Control": "no-store"})

    def _check(self, request: Hit) -> str | None:
        if request.method != "POST":
            return f"method {request.method}"
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return f"content type {kind!r}"
        form = parse_qs(request.body.decode("ascii", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return f"grant_type {form.get('grant_type')}"
        if self._scope is not None and form.get("scope") != [self._scope]:
            return f"scope {form.get('scope')}"
        if request.headers.get("authorization") != self._client:
            return "client authentication"
        return None

    def resource(
        self, body: bytes = b"<html>api</html>", seconds: float = 0.0, refusal: bytes = b""
    ) -> Handler:
        """A Site handler: 200 (after `seconds`) for a live token, else 401 invalid_token
        with `refusal` as its body. It may serve beside the token endpoint (same origin)."""

        def handle(conn: Conn, hit: Hit) -> None:
            given = hit.headers.get("authorization", "")
            if not self._accept(given):
                challenge = 'Bearer error="invalid_token"'
                conn.respond(401, refusal, {"WWW-Authenticate": challenge})
                return
            if conn.sleep(seconds):
                conn.respond(200, body, {"Content-Type": "text/html"})
            else:
                conn.close()

        return handle

    def _accept(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        with self._lock:
            token = self._tokens.get(value) if scheme.lower() == "bearer" else None
            live = token is not None and not token.revoked
            if token is not None and self._lifetime is not None:
                live = live and time.monotonic() - token.issued < self._lifetime
            if token is not None and self._uses is not None:
                live = live and token.used < self._uses
            if token is not None and live:
                token.used += 1
                self.accepted.append(token.value)
            else:
                self.rejected.append(authorization)
            return live
