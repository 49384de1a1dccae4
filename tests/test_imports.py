"""Import direction (STYLE.md house rule 2), read from the code with `ast`, never imported.

Imports point one way: cli -> composition root -> worker/scheduler -> services -> adapters
-> pure leaf modules; each third-party library is imported by the one module that owns it;
no asyncio. The tables below are what the code does today: a new module, a new library or
a new import against the direction fails here until the table says where it belongs. Where
today's code breaks a rule, the exception is written down with why; an exception that no
longer happens fails too, so the table never claims more than the code does.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "crawler"

# Layers, lowest first; a module imports only modules of its own layer or below. Names are
# relative to `crawler` ("crawler" is the package itself, which holds only __version__).
LAYERS: list[tuple[str, set[str]]] = [
    # frontier.values: the value objects the frontier contract trades in (issue 11), public.
    # urls reads hosts with hosts (joiner joins a page's links); settings checks its keys
    # with constraints (addresses: allowed networks, listen, DNS servers) and reads the
    # [[profile]] tables with profiles (specs, credentials, config_keys).
    (
        "pure leaf",
        {
            "crawler",
            "errors",
            "models",
            "urls",
            "hosts",
            "joiner",
            "settings",
            "constraints",
            "addresses",
            "profiles",
            "specs",
            "credentials",
            "config_keys",
            "frontier.values",
            "recrawl",
            "openapi",
        },
    ),
    ("pure helper", {"decoding", "guard", "seeds", "seen", "sitemaps"}),
    (
        "adapter",
        {
            "dns",
            "domains",
            "fetcher",
            "fetcher.auth",
            "fetcher.body",
            "fetcher.clients",
            "fetcher.http11",
            "fetcher.http11_pool",
            "fetcher.network",
            "fetcher.pool",
            "fetcher.transport",
            "frontier",
            "frontier.postgres",
            "frontier.postgres_counts",
            "frontier.postgres_schema",
            "frontier.reports",
            "frontier.rules",
            "frontier.sqlite",
            "frontier.sqlite_claim",
            "frontier.sqlite_errors",
            "frontier.sqlite_fencing",
            "frontier.sqlite_insert",
            "frontier.sqlite_recrawl",
            "frontier.sqlite_schema",
            "links",
            "logs",
            "output.cdxj",
            "output.dedup",
            "output.jsonl",
            "output.warc",
        },
    ),
    (
        "service",
        {
            "claimer",
            "hostqueue",
            "inbox",
            "judge",
            "metrics",
            "politeness",
            "progress",
            "retry",
            "robots",
            "scope",
            "api",
            "status",
            "console",
            "output",
            "output.process",
        },
    ),
    ("worker/scheduler", {"committer", "scheduler", "worker"}),
    ("composition root", {"crawl", "datadir"}),
    ("cli", {"__main__", "cli", "serve", "export"}),
]
LEAF = LAYERS[0][1]
ROOT = LAYERS[-2][1]  # the composition root picks the implementations

# Imports against the direction in today's code: none since issue 11 (settings once imported
# the guard and profiles; what it needs of them is now in leaf modules).
UPWARD: dict[tuple[str, str], str] = {}

# A subpackage is one interface with several implementations: an implementation module is
# imported by its own package and by the composition root only.
PRIVATE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("status", "output.jsonl"): "status formats its times with the index's rfc3339()",
    ("console", "output.jsonl"): "the console formats its times with the index's rfc3339()",
}

# Modules of a subpackage that are its public face, not an implementation.
PUBLIC = {"frontier.values"}

# Each third-party library and the module (or package) that owns it.
OWNERS: dict[str, str] = {
    "aiodns": "dns",
    "aiosqlite": "frontier.sqlite",  # and its helpers frontier.sqlite_*
    "asyncpg": "frontier.postgres",  # and frontier.postgres_schema
    "httpcore2": "fetcher",  # the package crawler/fetcher/
    "httpx2": "fetcher",
    "httptools": "fetcher.http11",
    "hypercorn": "api",
    "idna": "hosts",
    "isal": "output.warc",
    "prometheus_client": "metrics",
    "protego": "robots",
    "publicsuffixlist": "domains",
    "pycares": "dns",
    "rich": "progress",
    "surt": "output.cdxj",
    "selectolax": "links",
    "tenacity": "retry",
    "w3lib": "urls",
    "warcio": "output.warc",
}
# The runtime and the logger every module may use (logging is configured in logs.py only).
SHARED = {"anyio", "structlog"}
FORBIDDEN = {"asyncio": "use anyio (STYLE.md house rule 2)"}
# The exceptions to house rule 2, each with its reason (and a ruff per-file-ignore).
ASYNCIO_ALLOWED = {
    "fetcher.http11": "an asyncio.Protocol per connection: over anyio's streams (a cancel "
    "scope per read and write, reading resumed and paused per read) a 304 recrawl ran "
    "at 18.5 s against 14.5 s (bench/recrawl.py's corpus, 20,000 URLs)",
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "crawler"


MODULES = {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _ours(dotted: str, within: str = "crawler") -> str:
    """`crawler.x.y` -> `x.y`; a name that is no module (`crawler.frontier.Counts`) -> the
    module it is in (`within`)."""
    for name in (dotted, within):
        relative = name.removeprefix("crawler").removeprefix(".") or "crawler"
        if relative in MODULES:
            return relative
    raise AssertionError(f"no module {dotted} nor {within} in {PACKAGE}")


def _imported(module: str) -> Iterator[tuple[str, bool]]:
    """Every module `module` imports, with True for ours (named `x.y`, as in LAYERS) and
    False for the others (dotted names), at any depth of the file: in functions and under
    TYPE_CHECKING too."""
    path = MODULES[module]
    parts = [] if module == "crawler" else module.split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                ours = _is_ours(alias.name)
                yield (_ours(alias.name) if ours else alias.name), ours
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                dotted = ".".join(["crawler", *base, *([node.module] if node.module else [])])
            else:
                dotted = node.module or ""
            if not _is_ours(dotted):
                yield dotted, False
                continue
            for alias in node.names:  # `from crawler import errors` imports a module
                yield _ours(f"{dotted}.{alias.name}", within=dotted), True


def _is_ours(dotted: str) -> bool:
    return dotted == "crawler" or dotted.startswith("crawler.")


def _edges() -> set[tuple[str, str]]:
    """(importer, imported) for each import of a module of ours."""
    return {(m, target) for m in MODULES for target, ours in _imported(m) if ours}


def _foreign() -> set[tuple[str, str]]:
    """(importer, top-level name) for each import of anything not ours."""
    return {(m, target.split(".")[0]) for m in MODULES for target, ours in _imported(m) if not ours}


def _libraries() -> set[tuple[str, str]]:
    """(importer, top-level name) for each import of a third-party library."""
    return {(m, top) for m, top in _foreign() if top not in sys.stdlib_module_names}


def _layer(module: str) -> int:
    return next(i for i, (_, members) in enumerate(LAYERS) if module in members)


def _owns(owner: str, module: str) -> bool:
    """The owner itself, a module of the owner package, or a helper module named after the
    owner (`frontier.sqlite_claim` is part of the SQLite frontier `frontier.sqlite`)."""
    return module == owner or module.startswith((owner + ".", owner + "_"))


def test_the_scan_sees_the_package() -> None:
    """A guard on the scanner itself: known imports of today are found."""
    edges = _edges()
    assert ("cli", "crawl") in edges  # from crawler.crawl import ...
    assert ("worker", "links") in edges  # from crawler import links, sitemaps
    assert ("output.warc", "crawler") in edges  # from crawler import __version__
    assert ("links", "selectolax") in _libraries()
    assert len(MODULES) > 30


def test_every_module_has_one_layer() -> None:
    placed = [module for _, members in LAYERS for module in members]
    assert len(placed) == len(set(placed)), "a module in two layers"
    assert sorted(set(MODULES) - set(placed)) == [], "modules with no layer: add them"
    assert sorted(set(placed) - set(MODULES)) == [], "layers name modules that are gone"


def test_imports_point_down_the_layers() -> None:
    edges = _edges()
    upward = {(a, b) for a, b in edges if _layer(b) > _layer(a)}
    unexplained = [
        f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
        for a, b in sorted(upward - set(UPWARD))
    ]
    assert unexplained == []
    assert sorted(set(UPWARD) - upward) == [], "exceptions that no longer happen: remove them"


def test_leaf_modules_import_no_higher_layer() -> None:
    """errors, models, urls and settings (and the modules they are made of) are what every
    layer builds on: they import nothing of ours but each other."""
    climbing = {(a, b) for a, b in _edges() if a in LEAF and b not in LEAF} - set(UPWARD)
    assert sorted(climbing) == []


def test_implementation_modules_are_private_to_their_package() -> None:
    subpackages = {m for m in MODULES if any(o.startswith(m + ".") for o in MODULES)}
    offending = set()
    for a, b in _edges():
        package = b.rpartition(".")[0]
        if package not in subpackages or b in PUBLIC:
            continue
        if a == package or a.startswith(package + ".") or a in ROOT:
            continue
        offending.add((a, b))
    assert sorted(offending - set(PRIVATE_EXCEPTIONS)) == []
    assert sorted(set(PRIVATE_EXCEPTIONS) - offending) == [], "stale exceptions: remove them"


def test_each_third_party_library_is_imported_by_its_owner_only() -> None:
    used: dict[str, set[str]] = {}
    for module, library in _libraries():
        used.setdefault(library, set()).add(module)
    unowned = set(used) - set(OWNERS) - SHARED - set(FORBIDDEN)
    assert sorted(unowned) == [], "libraries with no owner: add them to OWNERS"
    trespassing = sorted(
        f"{module} imports {library}, owned by {OWNERS[library]}"
        for library, modules in used.items()
        if library in OWNERS
        for module in modules
        if not _owns(OWNERS[library], module)
    )
    assert trespassing == []
    assert sorted(set(OWNERS) - set(used)) == [], "owners of libraries nobody imports"


def test_no_asyncio() -> None:
    offending = sorted(
        f"{module} imports {library}: {FORBIDDEN[library]}"
        for module, library in _foreign()
        if library in FORBIDDEN and not (library == "asyncio" and module in ASYNCIO_ALLOWED)
    )
    assert offending == []
    assert set(ASYNCIO_ALLOWED) <= {m for m, library in _foreign() if library == "asyncio"}
