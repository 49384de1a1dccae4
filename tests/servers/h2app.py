"""A tiny ASGI app for HTTP/2 tests, served by hypercorn in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_state = {"in_flight": 0, "max_in_flight": 0, "versions": [], "header_names": []}


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stats":
        body = json.dumps(_state).encode()
    else:
        _state["in_flight"] += 1
        _state["max_in_flight"] = max(_state["max_in_flight"], _state["in_flight"])
        _state["versions"].append(scope["http_version"])
        _state["header_names"].append(sorted({k.decode().lower() for k, _ in scope["headers"]}))
        try:
            await anyio.sleep(0.2)
        finally:
            _state["in_flight"] -= 1
        body = f"<html>{scope['path']} over HTTP/{scope['http_version']}</html>".encode()
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
