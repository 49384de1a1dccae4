"""The OpenAPI 3.1 description of `crawler serve`'s HTTP API (`GET /openapi.json`).

Written by hand beside crawler/api.py, which routes the same paths; tests/test_openapi.py
runs schemathesis against a live `serve` with it, so a route, a status or a body that
disagrees with this description fails the suite.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HOST_SORTS", "document"]

HOST_SORTS = ("queued", "inflight", "errors", "done", "total")

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


_HOST = {
    "type": "object",
    "required": ["host", "total", "queued", "leased", "done", "failed", "skipped", "in_flight",
                 "paused", "held", "operator_delay", "per_host_concurrency"],
    "properties": {
        "host": {"type": "string"},
        "key": {"type": "string", "description": "The politeness budget (politeness.key)."},
        "total": {"type": "integer"},
        "queued": {"type": "integer"},
        "leased": {"type": "integer"},
        "done": {"type": "integer"},
        "failed": {"type": "integer"},
        "skipped": {"type": "integer"},
        "reasons": {
            "type": "object",
            "description": "Failed and skipped URLs by state, then reason.",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "in_flight": {"type": "integer"},
        "buffered": {"type": "integer"},
        "delay": {"type": ["number", "null"]},
        "delay_source": {"type": ["string", "null"]},
        "backoff_level": {"type": "number"},
        "retry_after_until": {"type": ["string", "null"]},
        "next_start": {"type": ["string", "null"]},
        "down": {"type": ["object", "null"]},
        "paused": {"type": "boolean"},
        "blocked_until": {"type": ["string", "null"]},
        "held": {"type": "boolean"},
        "operator_delay": {"type": ["number", "null"]},
        "per_host_concurrency": {"type": ["integer", "null"]},
        "last_error": {"type": ["object", "null"]},
        "robots": {"type": ["object", "null"]},
        "events": {"type": "array", "items": {"type": "object"}},
    },
}  # fmt: skip
_CHANGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "paused": {"type": ["boolean", "null"]},
        "blocked_until": {
            "description": "Seconds since the epoch, or RFC 3339 with its offset.",
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": 1e11},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ],
        },
        "delay": {"type": ["number", "null"], "minimum": 0, "maximum": 86400},
        "per_host_concurrency": {  # console.MAX_CONCURRENCY
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 32,
        },
    },
}


_HOSTS = {
    "type": "object",
    "required": ["hosts", "sort", "q", "limit", "offset"],
    "properties": {"hosts": {"type": "array", "items": _HOST}},
}


_HOSTS = {
    "type": "object",
    "required": ["hosts", "sort", "q", "limit", "offset"],
    "properties": {"hosts": {"type": "array", "items": _HOST}},
}


_PATTERNS = {
    "type": "object",
    "required": ["patterns"],
    "properties": {
        "patterns": {"type": "array", "items": {"type": "string"}},
        "skipped": {"type": "integer", "minimum": 0},
    },
}
_PATTERN_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["pattern"],
                "additionalProperties": False,
                "properties": {
                    "pattern": {
                        "type": "string",
                        "minLength": 1,
                        "description": "A Python regex, searched in each URL.",
                    }
                },
            }
        }
    },
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


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
            "/": _read(
                "The operator's console: one HTML page (its script and styles inline).",
                {
                    "description": "The page.",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
            ),
            "/events": {
                "get": {
                    "summary": "Server-Sent Events: the crawl's progress once a second, as long"
                    " as the client stays (what the console plots).",
                    "responses": {
                        "200": {
                            "description": "`data: {...}` events: at, total, states, rates,"
                            " bytes, statuses (final outcomes by status class), in_flight,"
                            " paused, storage_problem.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
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
            "/hosts": {
                "parameters": [
                    _query("sort", {"type": "string", "enum": list(HOST_SORTS)}, "Most first."),
                    _query("q", {"type": "string"}, "Only hosts whose name holds this."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Rows."),
                    _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "Skip."),
                ],
                **_read(
                    "The host table (by politeness key), a page of it.",
                    _json("Hosts.", _HOSTS),
                    **{"400": _ERROR},
                ),
            },
            "/hosts/{host}": {
                "parameters": [
                    {"name": "host", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                **_read(
                    "One host: counts, pace, controls, robots.txt, last fetch events.",
                    _json("The host.", _HOST),
                    **{"404": _ERROR},
                ),
                "patch": {
                    **_change(
                        "Change what the operator sets for the host (null undoes a key).",
                        _json("The host, changed.", _HOST),
                        **{"400": _ERROR, "413": _ERROR},
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _CHANGE}},
                    },
                },
            },
            "/excludes": {
                **_read("The live exclude patterns.", _json("Patterns.", _PATTERNS)),
                "post": {
                    **_change(
                        "Add a pattern: queued URLs it matches end skipped (`excluded`) now,"
                        " later ones before they are fetched.",
                        _json(
                            "The patterns, and how many queued URLs were skipped.",
                            {
                                **_PATTERNS,
                                "required": ["patterns", "skipped"],
                            },
                        ),
                        **{"400": _ERROR, "413": _ERROR},
                    ),
                    "requestBody": _PATTERN_BODY,
                },
                "delete": {
                    **_change(
                        "Remove a pattern (URLs it skipped stay skipped).",
                        _json("The patterns.", _PATTERNS),
                        **{"400": _ERROR, "413": _ERROR},
                    ),
                    "requestBody": _PATTERN_BODY,
                },
            },
            "/pause": {"post": _change("Stop handing out URLs (in-flight ones finish).", paused)},
            "/resume": {"post": _change("Hand out URLs again.", paused)},
        },
    }
