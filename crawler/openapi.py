"""The OpenAPI 3.1 description of `crawler serve`'s HTTP API (`GET /openapi.json`).

Written by hand beside crawler/api.py, which routes the same paths; tests/test_openapi.py
runs schemathesis against a live `serve` with it, so a route, a status or a body that
disagrees with this description fails the suite.
"""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_ERROR = {
    "description": "The request was refused; `error` says why.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_STATUS = {
    "type": "object",
    "required": ["total", "states", "reasons", "visits", "hosts", "waiting", "nodes"],
    "properties": {
        "total": {"type": "integer"},
        "states": _COUNTS,
        "reasons": _COUNTS,
        "visits": _COUNTS,
        "hosts": {"type": "array", "items": {"type": "object"}},
        "waiting": {"type": "array", "items": {"type": "object"}},
        "nodes": {"type": "array", "items": {"type": "object"}},
        "rates": {"type": "object"},
        "in_flight": {"type": "integer"},
        "paused": {"type": "array", "items": {"type": "string"}},
        "storage_problem": {"type": ["string", "null"]},
    },
}
_SEEDED = {
    "type": "object",
    "required": ["accepted", "duplicate", "invalid", "errors"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "duplicate": {"type": "integer", "minimum": 0},
        "invalid": {"type": "integer", "minimum": 0},
        "due": {"type": "integer", "minimum": 0},
        "errors": {"type": "array", "items": {"type": "string"}},
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _read(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    operation = {"summary": summary, "responses": {"200": ok, **more}}
    return {"get": operation, "head": {**operation, "summary": f"{summary} (headers only)"}}


def _change(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    responses = {"200": ok, "401": _ERROR, "403": _ERROR, **more}
    return {"summary": summary, "security": [{"bearer": []}], "responses": responses}


def document(version: str) -> dict[str, Any]:
    """The description of the API of this version."""
    paused = _json("Whether the crawl is paused now.", {
        "type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}},
    })  # fmt: skip
    seeds_body = {
        "description": "URLs, one a line (blank lines and # comments skipped), or a JSON list"
        " of them (an item that is not a string counts as an invalid line).",
        "required": False,
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array"}},
        },
    }
    recrawl = {
        "name": "recrawl",
        "in": "query",
        "required": False,
        "description": "true: URLs fetched before are made due again now.",
        "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crawler serve",
            "version": version,
            "description": "A running crawl: its state, its metrics, and what changes it."
            " Changes need `Authorization: Bearer <service.token>` when a token is set.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/healthz": _read(
                "Liveness: the process answers.",
                _json("Alive.", {"type": "object", "required": ["ok"]}),
            ),
            "/readyz": _read(
                "Readiness: database, writer and disk space.",
                _json("Ready.", {"type": "object", "required": ["ready"]}),
                **{"503": _json("Not ready: the failing checks.", {"type": "object"})},
            ),
            "/status": _read("Counts, rates, pause state, busiest hosts.", _json("", _STATUS)),
            "/metrics": _read(
                "Prometheus text exposition format.",
                {
                    "description": "Metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            ),
            "/openapi.json": _read("This description.", _json("OpenAPI 3.1.", {"type": "object"})),
            "/seeds": {
                "post": {
                    **_change(
                        "Add URLs to the crawl.",
                        _json("What became of them.", _SEEDED),
                        **{"400": _ERROR, "413": _ERROR},
                    ),
                    "parameters": [recrawl],
                    "requestBody": seeds_body,
                }
            },
            "/pause": {"post": _change("Stop handing out URLs (in-flight ones finish).", paused)},
            "/resume": {"post": _change("Hand out URLs again.", paused)},
        },
    }
