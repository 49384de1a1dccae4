"""PostgreSQL frontier (asyncpg): one crawl shared by several nodes (`storage.url`).

Each node names itself (`node.name`); its leases carry its name, so `release_all` at its
start takes back only its own, and a node that died loses its leases when they expire: a
claim takes back any lease past its `lease_until` (under a new token, so the dead node's
late completions are refused). Output lengths are kept per node (each writes its own
files). Counts by state and host are kept by the transactions that change them
(postgres_counts.py).

Every method is one short transaction; one that deadlocks with another node's is retried.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import anyio
import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from crawler.errors import DatabaseUnavailable, StorageError
from crawler.frontier import reports, rules
from crawler.frontier.postgres_counts import Moves
from crawler.frontier.postgres_schema import migrate
from crawler.frontier.rules import ELIGIBLE, visit_counts
from crawler.frontier.values import (
    CommitBatch,
    Committed,
    Counts,
    Entry,
    Finished,
    HostControl,
    HostRow,
    HostState,
    NewURL,
    NodeCounts,
    RobotsRecord,
    Visit,
    entry_of,
)
from crawler.recrawl import Schedule

__all__ = ["PostgresFrontier", "redacted"]

T = TypeVar("T")
Conn: TypeAlias = "PoolConnectionProxy[Record]"
_RETRIED = ("40P01", "40001")  # deadlock detected, serialization failure
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
_TRIES = 5
_WALKS = 4  # walks of a claim whose hosts all turn out held by other nodes
_ANALYZE_EVERY = 20_000  # rows added, at least, between two ANALYZE of urls
_RECRAWL_BATCH = 10_000  # URLs made due per transaction
_NO_VISIT = Visit()

_ENTRY = (
    "key, url, host, attempts, depth, redirects, chain, discovered_from, status, origin, kind,"
    " lease_token, etag, last_modified, digest, ref_uri, ref_date, recrawl_interval"
)
_INSERT = (
    "INSERT INTO urls (key, url, host, depth, redirects, chain, discovered_from, origin, kind)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::int[],"
    " $6::text[], $7::text[], $8::text[], $9::text[])"
    " ON CONFLICT (key) DO NOTHING RETURNING host"
)
# Leases past their expiry go back to the queue first: their holder went silent.
# Leases a node holds while it writes their records and commits them (commit_holding) are
# locked, and passed over: their holder is alive, if late.
_EXPIRED = (
    "UPDATE urls SET state = 'queued', lease_until = NULL, lease_token = NULL,"
    " lease_node = NULL WHERE key IN (SELECT key FROM urls WHERE state = 'leased'"
    " AND lease_until < $1 FOR UPDATE SKIP LOCKED) RETURNING host"
)
_WALK = (
    "WITH RECURSIVE walk(host, n) AS ("
    " (SELECT host, 1 FROM urls WHERE state = 'queued' AND host > $1 ORDER BY host LIMIT 1)"
    " UNION ALL SELECT (SELECT u.host FROM urls AS u WHERE u.state = 'queued'"
    " AND u.host > w.host ORDER BY u.host LIMIT 1), w.n + 1 FROM walk AS w"
    " WHERE w.host IS NOT NULL AND w.n < $2)"
    " SELECT host FROM walk WHERE host IS NOT NULL"
)
_PICK = (
    "SELECT h.host, u.key FROM unnest($1::text[]) WITH ORDINALITY AS h(host, ord)"
    " CROSS JOIN LATERAL (SELECT key FROM urls WHERE state = 'queued' AND host = h.host"
    " AND not_before <= $2 ORDER BY not_before, key LIMIT $3) AS u"
    " WHERE NOT EXISTS (SELECT 1 FROM hosts WHERE hosts.host = h.host"
    " AND hosts.blocked_until > $2 AND hosts.down_until <= $2)"
    " ORDER BY h.ord LIMIT $4"
)
# The walked hosts this node may crawl: those free (no owner, or the owner's hold ran out)
# and its own, the host row being the lock between nodes claiming at once. Rows another
# transaction holds are passed over (SKIP LOCKED), not waited for: a claim never queues
# behind another node's claim or commit. Every host has a row from its first URL on
# (postgres_counts.py).
_TAKE = (
    "WITH got AS (SELECT host, owner, owner_until FROM hosts WHERE host = ANY($1::text[])"
    " AND ((owner IS NULL AND (free_at <= $4 OR last_owner = $2))"
    " OR (owner IS NOT NULL AND owner_until <= $4) OR owner = $2)"
    " ORDER BY host FOR UPDATE SKIP LOCKED),"
    " taken AS (UPDATE hosts AS h SET owner = $2, owner_until = $3 FROM got"
    " WHERE h.host = got.host AND (got.owner IS DISTINCT FROM $2 OR got.owner_until < $3 - 60))"
    " SELECT host FROM got"
)
# Hosts of these URLs that this node holds none of its URLs of any more: free for any node
# a delay from now (their last request started before this).
_LET_GO = (
    "UPDATE hosts SET owner = NULL, owner_until = 0, free_at = $2, last_owner = $1"
    " WHERE owner = $1 AND host = ANY($3::text[])"
    " AND coalesce((SELECT leased FROM host_urls WHERE host_urls.host = hosts.host), 0) = 0"
)
# Statements on a batch of URLs find them by key (`key = ANY`, also where they join the
# batch's values), and tell a leased URL by its lease token (set exactly while it is
# leased: a CHECK of migration 0001), not by `state`: a planner sure from its statistics
# that hardly any row is leased (or queued) would otherwise scan a partial index, or join
# the batch's values, once for each row of the batch (20x slower). The URLs picked are
# queued: nobody else leases them before this claim does, which holds their host's row.
_LEASE = (
    "UPDATE urls SET state = 'leased', lease_until = $1, lease_token = $3, lease_node = $4"
    f" WHERE key = ANY($2::bigint[]) AND lease_token IS NULL RETURNING {_ENTRY}"
)
# Listed URLs, those still queued (the operator's exclude sweep).
_LEASE_QUEUED = (
    "UPDATE urls SET state = 'leased', lease_until = $1, lease_token = $3, lease_node = $4"
    f" WHERE key = ANY($2::bigint[]) AND state = 'queued' RETURNING {_ENTRY}"
)
_UNCLAIM = (
    "UPDATE urls SET state = 'queued', lease_until = NULL, lease_token = NULL,"
    " lease_node = NULL WHERE lease_token = $1 AND state = 'leased' RETURNING host"
)
# Completions apply to URLs still leased with their token (fencing); those that do come
# back, the others are refused.
_FINISH = (
    "UPDATE urls AS u SET state = f.state, reason = f.reason, status = f.status,"
    " attempts = f.attempts, finished_at = f.finished_at, etag = f.etag,"
    " last_modified = f.last_modified, digest = f.digest, ref_uri = f.ref_uri,"
    " ref_date = f.ref_date, recrawl_interval = f.recrawl_interval,"
    " recrawl_at = f.recrawl_at, lease_until = NULL, lease_token = NULL, lease_node = NULL"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::int[],"
    " $6::float8[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[],"
    " $12::text[], $13::float8[], $14::float8[]) AS f(key, state, reason, status, attempts,"
    " finished_at, token, etag, last_modified, digest, ref_uri, ref_date, recrawl_interval,"
    " recrawl_at)"
    " WHERE u.key = ANY($1::bigint[]) AND u.key = f.key AND u.lease_token = f.token"
    " RETURNING u.key, f.token, u.host"
)
_VISITS = (
    "INSERT INTO visits (shard, kind, n)"
    " SELECT pg_backend_pid() % 64, * FROM unnest($1::text[], $2::bigint[]) ORDER BY 2"
    " ON CONFLICT (shard, kind) DO UPDATE SET n = visits.n + excluded.n"
)
# Recrawl (crawler/frontier/sqlite_recrawl.py says what each does): rows another
# transaction holds are passed over, the next call takes them.
_DUE = (
    "WITH due AS (SELECT key, state, reason FROM urls WHERE recrawl_at <= $1"
    " ORDER BY recrawl_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE urls AS u SET state = 'queued', not_before = u.recrawl_at, attempts = 0,"
    " reason = NULL, recrawl_at = NULL FROM due WHERE u.key = due.key"
    " RETURNING u.host, due.state, due.reason"
)
_AGAIN = (
    "WITH listed AS (SELECT key, state, reason FROM urls WHERE key = ANY($1::bigint[])"
    " AND state IN ('done', 'failed', 'skipped') ORDER BY key FOR UPDATE)"
    " UPDATE urls AS u SET state = 'queued', not_before = $2, attempts = 0, reason = NULL,"
    " recrawl_at = NULL FROM listed WHERE u.key = listed.key"
    " RETURNING u.host, listed.state, listed.reason"
)
_SOONER = (
    "UPDATE urls SET not_before = $2 WHERE key = ANY($1::bigint[]) AND state = 'queued'"
    " AND not_before > $2"
)
_DEFER = (
    "UPDATE urls AS u SET state = 'queued', attempts = d.attempts, not_before = d.not_before,"
    " reason = d.reason, status = d.status,"
    " lease_until = NULL, lease_token = NULL, lease_node = NULL"
    " FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::text[], $5::int[], $6::bigint[])"
    " AS d(key, attempts, not_before, reason, status, token)"
    " WHERE u.key = ANY($1::bigint[]) AND u.key = d.key AND u.lease_token = d.token"
    " RETURNING u.key, d.token, u.host"
)
_RENEW = (
    "UPDATE urls AS u SET lease_until = $3 FROM unnest($1::bigint[], $2::bigint[])"
    " AS r(key, token) WHERE u.key = ANY($1::bigint[]) AND u.key = r.key"
    " AND u.lease_token = r.token RETURNING u.key, u.host"
)
_RELEASE = (
    "UPDATE urls AS u SET state = 'queued', not_before = greatest(u.not_before, $3),"
    " lease_until = NULL, lease_token = NULL, lease_node = NULL"
    " FROM unnest($1::bigint[], $2::bigint[]) AS r(key, token)"
    " WHERE u.key = ANY($1::bigint[]) AND u.key = r.key AND u.lease_token = r.token"
    " RETURNING u.host"
)
_HOSTS = (
    "INSERT INTO hosts (host, level, blocked_until, failures, down_until, down_reason)"
    " SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::int[], $5::float8[],"
    " $6::text[]) ORDER BY 1"
    " ON CONFLICT (host) DO UPDATE SET level = excluded.level,"
    " blocked_until = excluded.blocked_until, failures = excluded.failures,"
    " down_until = excluded.down_until, down_reason = excluded.down_reason"
)
_OUTPUTS = (
    "INSERT INTO outputs (node, path, committed) SELECT $1, * FROM unnest($2::text[],"
    " $3::bigint[]) ON CONFLICT (node, path) DO UPDATE SET committed = excluded.committed"
)


def _visit_columns(finished: Sequence[Finished]) -> list[list[Any]]:
    """The columns of what the visits of `finished` leave for the next ones."""
    lasts = [f.last or _NO_VISIT for f in finished]
    return [
        [v.etag for v in lasts],
        [v.last_modified for v in lasts],
        [v.digest for v in lasts],
        [v.ref_uri for v in lasts],
        [v.ref_date for v in lasts],
        [v.interval for v in lasts],
        [f.recrawl_at for f in finished],
    ]


def redacted(url: str) -> str:
    """A database URL fit for logs and errors: no password, no user name."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _rows(urls: Sequence[NewURL]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(9)]
    for u in urls:
        for column, value in zip(
            columns,
            (u.key, u.url, u.host, u.depth, u.redirects, u.chain, u.discovered_from, u.origin,
             u.kind),
            strict=True,
        ):  # fmt: skip
            column.append(value)
    return columns


class PostgresFrontier:
    """The frontier in a PostgreSQL database shared by the crawl's nodes."""

    leases_expire = True  # a silent node's leases go to the others

    def __init__(
        self, pool: asyncpg.Pool, url: str, node: str, max_per_host: int, delay: float
    ) -> None:
        self._pool = pool
        self._url = url
        self._node = node
        self._max_per_host = max_per_host
        self._delay = delay  # politeness.delay: a host let go waits this long for a new owner
        # The claimer's clock minus time.time() at the last claim (0 in a crawl; tests pass
        # a clock of their own): hosts are let go on the same clock claims take them on.
        self._skew = 0.0
        # The host where this node's last claim stopped its walk. Nodes start theirs at
        # the host of a URL drawn at random, not all on the first hosts, where they would
        # chase each other (each passing over the hosts the one ahead of it holds).
        self._cursor: str | None = None
        self._known = 0  # rows in urls when its statistics were last renewed (about)
        self._grown = 0  # rows this node added since

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        node: str,
        max_per_host: int = 0,
        delay: float = 1.0,
        timeout: float = 10.0,
    ) -> PostgresFrontier:
        """Connect (a small pool) and apply the migrations not yet applied (once, even when
        several nodes start together). `delay`: politeness.delay, kept between the last
        request of a host's owner and the first of the next."""
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=4, timeout=timeout, reset=_keep_session
            )
        except (*_DB_ERRORS, TimeoutError) as exc:
            raise StorageError(
                f"cannot connect to the frontier database {redacted(url)}: {_why(exc, url)}"
            ) from exc
        frontier = cls(pool, url, node, max_per_host, delay)
        try:
            await frontier._run(migrate)
            frontier._known = max(
                0,
                int(
                    await frontier._run(
                        lambda conn: conn.fetchval(
                            "SELECT reltuples FROM pg_class WHERE oid = 'urls'::regclass"
                        )
                    )
                ),
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pool.close()
            raise
        return frontier

    # -- plumbing -----------------------------------------------------------------------------
    async def _run(self, work: Callable[[Conn], Awaitable[T]], *, lost_again: bool = True) -> T:
        """`work` in one transaction, retried when it deadlocks with another node's or its
        connection is lost (a server restart, a terminated backend: a new one is tried;
        `lost_again` false leaves that to the caller, who may not know whether the lost
        transaction committed)."""
        for attempt in range(_TRIES):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await work(conn)
            except _DB_ERRORS as exc:
                error = self._error(exc)
                again = lost_again and isinstance(error, DatabaseUnavailable)
                again = again or getattr(exc, "sqlstate", None) in _RETRIED
                if again and attempt < _TRIES - 1:
                    await anyio.sleep(0.05 * 2**attempt)
                    continue
                raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: BaseException) -> StorageError:
        """A one-line error; DatabaseUnavailable (try again later) when the connection is
        the trouble, not the statement."""
        message = f"frontier database {redacted(self._url)}: {_why(exc, self._url)}"
        lost = isinstance(
            exc,
            OSError
            | asyncpg.InterfaceError
            | asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | asyncpg.CrashShutdownError
            | asyncpg.InternalClientError,  # a connection cut in the middle of a statement
        )
        return DatabaseUnavailable(message) if lost else StorageError(message)

    # -- the contract -------------------------------------------------------------------------
    async def add(self, urls: Sequence[NewURL]) -> int:
        async def add(conn: Conn) -> int:
            moves = Moves()
            added = await self._insert(conn, moves, urls, 0)
            await moves.write(conn)
            return added

        added = await self._run(add)
        await self._grew(added)
        return added

    async def _grew(self, added: int) -> None:
        """Have the planner's statistics of `urls` renewed once this node has added a
        fifth more rows than they knew of. Autovacuum does it too, but only after up to a
        minute: until then a frontier just seeded looks empty to the planner, whose plans
        for an empty table (the partial indexes scanned whole) made claims 5x slower."""
        self._grown += added
        if self._grown < max(_ANALYZE_EVERY, self._known // 5):
            return
        self._known += self._grown
        self._grown = 0
        with contextlib.suppress(StorageError):  # autovacuum does it later
            await self._run(lambda conn: conn.execute("ANALYZE (SKIP_LOCKED) urls"))

    async def _insert(self, conn: Conn, moves: Moves, urls: Sequence[NewURL], cap: int) -> int:
        fresh: dict[int, NewURL] = {}
        for u in sorted(urls, key=lambda u: u.key):
            fresh.setdefault(u.key, u)
        if cap and fresh:
            hosts = sorted({u.host for u in fresh.values()})
            rows = await conn.fetch(
                "SELECT host, total FROM host_urls WHERE host = ANY($1::text[])", hosts
            )
            known = await conn.fetch(
                "SELECT key FROM urls WHERE key = ANY($1::bigint[])", list(fresh)
            )
            for r in known:  # not counted against the cap: the insert skips them
                del fresh[int(r["key"])]
            rules.capped(fresh, {str(r["host"]): int(r["total"]) for r in rows}, cap)
        if not fresh:
            return 0
        rows = await conn.fetch(_INSERT, *_rows(list(fresh.values())))
        for row in rows:
            moves.added(row[0])
        return len(rows)

    async def claim(
        self,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int = 0,
        room: Mapping[str, int] | None = None,
    ) -> list[Entry]:
        # The token first: a claim whose connection is lost may have committed or not, and
        # its leases (if any) are found by their token and given back at once, not left to
        # expire (a crawl would wait a whole lease for them).
        token = int(await self._run(lambda conn: conn.fetchval("SELECT nextval('lease_tokens')")))
        try:
            return await self._run(
                lambda conn: self._claim(
                    conn, limit, now, lease_until, per_host or limit, room or {}, token
                ),
                lost_again=False,
            )
        except DatabaseUnavailable:

            async def unclaim(conn: Conn) -> None:
                moves = Moves()
                for row in await conn.fetch(_UNCLAIM, token):
                    moves.moved(row[0], "leased", "queued")
                await moves.write(conn)

            await self._run(unclaim)
            return []

    async def _claim(
        self,
        conn: Conn,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int,
        room: Mapping[str, int],
        token: int,
    ) -> list[Entry]:
        self._skew = now - time.time()
        moves = Moves()
        for row in await conn.fetch(_EXPIRED, now):
            moves.moved(row[0], "leased", "queued")
        entries = await self._lease(conn, moves, limit, now, lease_until, per_host, room, token)
        await moves.write(conn)
        return entries

    async def _lease(
        self,
        conn: Conn,
        moves: Moves,
        limit: int,
        now: float,
        lease_until: float,
        per_host: int,
        room: Mapping[str, int],
        token: int,
    ) -> list[Entry]:
        if self._cursor is None:
            self._cursor = str(
                await conn.fetchval(
                    "SELECT host FROM urls WHERE key >= $1 ORDER BY key LIMIT 1",
                    random.randint(-(2**63), 2**63 - 1),
                )
                or ""
            )
        no_room = sum(1 for free in room.values() if free <= 0)
        hosts: list[str] = []
        for _ in range(_WALKS):  # on past hosts other nodes hold, up to a few times
            walked = await self._walk(conn, limit + no_room)
            if not walked:
                return []
            self._cursor = walked[-1]
            free = [host for host in walked if room.get(host, per_host) > 0]
            if free:
                rows = await conn.fetch(_TAKE, free, self._node, lease_until, now)
                mine = {str(r[0]) for r in rows}
                hosts = [host for host in free if host in mine]
                if hosts:
                    break
        if not hosts:
            return []

        async def pick(chosen: list[str], each: int, most: int) -> list[tuple[str, int]]:
            rows = await conn.fetch(_PICK, chosen, now, each, most)
            return [(str(r[0]), int(r[1])) for r in rows]

        keys, filled_at = await rules.choose(pick, hosts, per_host, room, limit)
        if filled_at is not None:
            self._cursor = filled_at
        if not keys:
            return []
        entries = []
        for row in await conn.fetch(_LEASE, lease_until, sorted(keys), token, self._node):
            entry = entry_of(tuple(row))
            moves.moved(entry.host, "queued", "leased")
            entries.append(entry)
        return entries

    async def _walk(self, conn: Conn, limit: int) -> list[str]:
        assert self._cursor is not None
        hosts = [str(r[0]) for r in await conn.fetch(_WALK, self._cursor, limit)]
        if len(hosts) < limit and self._cursor:
            seen = set(hosts)
            more = await conn.fetch(_WALK, "", limit - len(hosts))
            hosts += [str(r[0]) for r in more if str(r[0]) not in seen]
        return hosts

    async def commit(self, batch: CommitBatch) -> Committed:
        committed = await self._run(lambda conn: self._commit(conn, batch))
        await self._grew(committed.added)
        return committed

    async def commit_holding(
        self,
        entries: Sequence[Entry],
        lease_until: float,
        write: Callable[[set[int]], Awaitable[CommitBatch]],
    ) -> Committed:
        ordered = sorted(entries, key=lambda e: e.key)
        written: list[CommitBatch] = []

        async def hold(conn: Conn) -> Committed:
            # The leases still held are renewed, which locks their rows to the end of this
            # transaction: a claim passes them over, however long the write takes. (Not
            # their hosts' rows: claims of this node go on meanwhile.)
            if not written:
                held = await self._renew(conn, ordered, lease_until, hosts=False)
                written.append(await write(set(held)))
            # A retry (a deadlock, a lost connection) commits what was written, fenced.
            return await self._commit(conn, written[0])

        committed = await self._run(hold)
        await self._grew(committed.added)
        return committed

    async def _commit(self, conn: Conn, batch: CommitBatch) -> Committed:
        moves = Moves()
        kept: set[tuple[int, int]] = set()  # (key, token) of the completions applied
        hosts: set[str] = set()
        if batch.finished:
            finished = sorted(batch.finished, key=lambda f: f.key)
            rows = await conn.fetch(
                _FINISH,
                [f.key for f in finished],
                [f.state.value for f in finished],
                [f.reason for f in finished],
                [f.status for f in finished],
                [f.attempts for f in finished],
                [f.finished_at for f in finished],
                [f.token for f in finished],
                *_visit_columns(finished),
            )
            done = {(int(key), int(token)): str(host) for key, token, host in rows}
            for f in finished:
                host = done.get((f.key, f.token))
                if host is not None:
                    moves.moved(host, "leased", f.state.value, f.reason)
            kept |= done.keys()
            visits = visit_counts(f for f in finished if (f.key, f.token) in done)
            if visits:
                kinds = sorted(visits)
                await conn.execute(_VISITS, kinds, [visits[k] for k in kinds])
            hosts |= set(done.values())
        if batch.deferred:
            deferred = sorted(batch.deferred, key=lambda d: d.key)
            rows = await conn.fetch(
                _DEFER,
                [d.key for d in deferred],
                [d.attempts for d in deferred],
                [d.not_before for d in deferred],
                [d.reason for d in deferred],
                [d.status for d in deferred],
                [d.token for d in deferred],
            )
            for key, token, host in rows:
                moves.moved(host, "leased", "queued")
                kept.add((int(key), int(token)))
                hosts.add(str(host))
        added = 0
        if batch.discovered:
            added = await self._insert(conn, moves, batch.discovered, self._max_per_host)
        if batch.outputs:
            paths = sorted(batch.outputs)
            await conn.execute(_OUTPUTS, self._node, paths, [batch.outputs[p] for p in paths])
        if batch.hosts:
            states = sorted(batch.hosts, key=lambda h: h.host)
            await conn.execute(
                _HOSTS,
                [h.host for h in states],
                [h.level for h in states],
                [h.blocked_until for h in states],
                [h.failures for h in states],
                [h.down_until for h in states],
                [h.down_reason for h in states],
            )
        finishing = len(kept) - sum(1 for d in batch.deferred if (d.key, d.token) in kept)
        if finishing:
            await conn.execute(
                "UPDATE nodes SET done = done + $2 WHERE name = $1", self._node, finishing
            )
        await moves.write(conn)  # before _let_go, which reads the hosts' leased counts
        if hosts:
            await self._let_go(conn, sorted(hosts))
        leases = [(f.key, f.token) for f in batch.finished]
        leases += [(d.key, d.token) for d in batch.deferred]
        refused = sorted({key for key, token in leases if (key, token) not in kept})
        return Committed(added, tuple(refused))

    async def _let_go(self, conn: Conn, hosts: list[str]) -> None:
        await conn.execute(_LET_GO, self._node, self._now() + self._delay, hosts)

    def _now(self) -> float:
        return time.time() + self._skew

    async def release(self, entries: Sequence[Entry], not_before: float = 0.0) -> None:
        if entries:
            ordered = sorted(entries, key=lambda e: e.key)
            keys = [e.key for e in ordered]

            async def release(conn: Conn) -> None:
                moves = Moves()
                hosts = set()
                for (host,) in await conn.fetch(
                    _RELEASE, keys, [e.token for e in ordered], not_before
                ):
                    moves.moved(host, "leased", "queued")
                    hosts.add(host)
                await moves.write(conn)
                await self._let_go(conn, sorted(hosts))

            await self._run(release)

    async def renew(self, entries: Sequence[Entry], lease_until: float) -> set[int]:
        if not entries:
            return set()
        ordered = sorted(entries, key=lambda e: e.key)

        async def renew(conn: Conn) -> set[int]:
            return set(await self._renew(conn, ordered, lease_until))

        return await self._run(renew)

    async def _renew(
        self, conn: Conn, ordered: Sequence[Entry], lease_until: float, *, hosts: bool = True
    ) -> dict[int, str]:
        """Extend the leases still held (locking their rows) and (with `hosts`) this node's
        hold on their hosts; their keys, with their hosts."""
        if not ordered:
            return {}
        rows = await conn.fetch(
            _RENEW, [e.key for e in ordered], [e.token for e in ordered], lease_until
        )
        held = {int(key): str(host) for key, host in rows}
        if not hosts:
            return held
        await conn.execute(
            "UPDATE hosts SET owner_until = greatest(owner_until, $3)"
            " WHERE host = ANY($1::text[]) AND owner = $2",
            sorted(set(held.values())),
            self._node,
            lease_until,
        )
        return held

    async def release_all(self) -> int:
        """Release this node's leases and hosts (a node starting again: its last run left
        them)."""

        async def release(conn: Conn) -> int:
            await self._give_up_hosts(conn)
            moves = Moves()
            rows = await conn.fetch(
                "UPDATE urls SET state = 'queued', lease_until = NULL, lease_token = NULL,"
                " lease_node = NULL WHERE state = 'leased' AND lease_node = $1 RETURNING host",
                self._node,
            )
            for row in rows:
                moves.moved(row[0], "leased", "queued")
            await moves.write(conn)
            return len(rows)

        return await self._run(release)

    async def _give_up_hosts(self, conn: Conn) -> None:
        await conn.execute(
            "UPDATE hosts SET owner = NULL, owner_until = 0, free_at = $2, last_owner = $1"
            " WHERE owner = $1",
            self._node,
            self._now() + self._delay,
        )

    async def next_due(self) -> float | None:
        due = await self._run(
            lambda conn: conn.fetchval("SELECT min(not_before) FROM urls WHERE state = 'queued'")
        )
        return None if due is None else float(due)

    async def has_pending(self) -> bool:
        pending = await self._run(
            lambda conn: conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM urls WHERE state = 'queued')"
                " OR EXISTS (SELECT 1 FROM urls WHERE state = 'leased')"
            )
        )
        return bool(pending)

    async def recrawl_due(self, now: float) -> int:
        made = 0
        while True:
            batch = await self._run(lambda conn: self._requeue(conn, _DUE, now, _RECRAWL_BATCH))
            made += batch
            if batch < _RECRAWL_BATCH:
                return made

    async def recrawl(self, keys: Sequence[int], now: float) -> int:
        made = 0
        ordered = sorted(set(keys))
        for start in range(0, len(ordered), _RECRAWL_BATCH):
            chunk = ordered[start : start + _RECRAWL_BATCH]

            async def again(conn: Conn, chunk: list[int] = chunk) -> int:
                queued = await self._requeue(conn, _AGAIN, chunk, now)
                await conn.execute(_SOONER, chunk, now)
                return queued

            made += await self._run(again)
        return made

    async def _requeue(self, conn: Conn, sql: str, *params: Any) -> int:
        """Run a statement that queues finished URLs again, counting their moves."""
        moves = Moves()
        rows = await conn.fetch(sql, *params)
        for host, state, reason in rows:
            moves.moved(host, state, "queued", was=reason)
        await moves.write(conn)
        return len(rows)

    async def next_recrawl(self) -> float | None:
        due = await self._run(
            lambda conn: conn.fetchval(
                "SELECT min(recrawl_at) FROM urls WHERE recrawl_at IS NOT NULL"
            )
        )
        return None if due is None else float(due)

    async def retime(self, schedule: Schedule) -> int | None:
        async def retime(conn: Conn) -> int | None:
            await conn.execute("LOCK TABLE meta IN SHARE ROW EXCLUSIVE MODE")  # one node does it
            signature = schedule.signature()
            was = await conn.fetchval("SELECT value FROM meta WHERE name = 'recrawl'")
            if (was or "off") == signature:
                return None
            if not schedule.on:
                status = await conn.execute(
                    "UPDATE urls SET recrawl_at = NULL WHERE recrawl_at IS NOT NULL"
                )
            elif schedule.adaptive:
                status = await conn.execute(
                    "UPDATE urls SET recrawl_at = finished_at"
                    " + least(greatest(coalesce(recrawl_interval, $1), $2), $3)"
                    f" WHERE {ELIGIBLE}",
                    schedule.after,
                    schedule.low,
                    schedule.high,
                )
            else:
                status = await conn.execute(
                    f"UPDATE urls SET recrawl_at = finished_at + $1 WHERE {ELIGIBLE}",
                    schedule.after,
                )
            await conn.execute(
                "INSERT INTO meta (name, value) VALUES ('recrawl', $1)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                signature,
            )
            return int(status.split()[-1])

        return await self._run(retime)

    async def committed_outputs(self) -> dict[str, int]:
        rows = await self._run(
            lambda conn: conn.fetch(
                "SELECT path, committed FROM outputs WHERE node = $1", self._node
            )
        )
        return {str(r["path"]): int(r["committed"]) for r in rows}

    async def counts(self, top_hosts: int = 10) -> Counts:
        async def report(conn: Conn) -> Counts:
            async def query(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                return list(await conn.fetch(_dollars(sql), *params))

            counts = await reports.counts(query, top_hosts, tallies=_TALLIES)
            counts.nodes = [
                NodeCounts(str(r[0]), float(r[1]), float(r[2]), int(r[3]), int(r[4]))
                for r in await conn.fetch(_NODES)
            ]
            return counts

        return await self._run(report)

    async def robots(self, host: str) -> RobotsRecord | None:
        row = await self._run(
            lambda conn: conn.fetchrow(
                "SELECT host, body, status, expires_at, failing_since FROM robots WHERE host = $1",
                host,
            )
        )
        return None if row is None else RobotsRecord(*row)

    async def save_robots(self, record: RobotsRecord) -> None:
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO robots (host, body, status, expires_at, failing_since)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host) DO UPDATE SET"
                " body = excluded.body, status = excluded.status,"
                " expires_at = excluded.expires_at, failing_since = excluded.failing_since",
                record.host,
                record.body,
                record.status,
                record.expires_at,
                record.failing_since,
            )
        )

    async def beat(self, at: float) -> None:
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO nodes (name, started_at, beat_at) VALUES ($1, $2, $2)"
                " ON CONFLICT (name) DO UPDATE SET beat_at = excluded.beat_at",
                self._node,
                at,
            )
        )

    async def last_beat(self) -> float | None:
        at = await self._run(
            lambda conn: conn.fetchval("SELECT beat_at FROM nodes WHERE name = $1", self._node)
        )
        return None if at is None else float(at)

    async def load_cookies(self, profile: str) -> str | None:
        jar = await self._run(
            lambda conn: conn.fetchval("SELECT jar FROM cookies WHERE profile = $1", profile)
        )
        return None if jar is None else str(jar)

    async def save_cookies(self, profile: str, jar: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO cookies (profile, jar) VALUES ($1, $2)"
                " ON CONFLICT (profile) DO UPDATE SET jar = excluded.jar",
                profile,
                jar,
            )
        )

    async def hosts(
        self,
        *,
        sort: str = "queued",
        q: str = "",
        limit: int = 50,
        offset: int = 0,
        hosts: Sequence[str] | None = None,
    ) -> list[HostRow]:
        async def page(conn: Conn) -> list[HostRow]:
            async def query(sql: str, params: Sequence[Any] = ()) -> list[Any]:
                return list(await conn.fetch(_dollars(sql), *params))

            return await reports.host_rows(
                query, sort=sort, q=q, limit=limit, offset=offset, hosts=hosts, false="false"
            )

        return await self._run(page)

    async def host_controls(self) -> dict[str, HostControl]:
        rows = await self._run(
            lambda conn: conn.fetch(
                "SELECT host, paused, blocked_until, delay, concurrency FROM host_controls"
            )
        )
        return {str(r[0]): HostControl(str(r[0]), bool(r[1]), r[2], r[3], r[4]) for r in rows}

    async def save_host_control(self, control: HostControl, at: float) -> None:
        async def save(conn: Conn) -> None:
            if control.empty:
                await conn.execute("DELETE FROM host_controls WHERE host = $1", control.host)
                return
            await conn.execute(
                "INSERT INTO host_controls VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (host) DO UPDATE SET paused = excluded.paused,"
                " blocked_until = excluded.blocked_until, delay = excluded.delay,"
                " concurrency = excluded.concurrency, updated_at = excluded.updated_at",
                control.host, control.paused, control.blocked_until, control.delay,
                control.concurrency, at,
            )  # fmt: skip

        await self._run(save)

    async def queued_urls(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows = await self._run(
            lambda conn: conn.fetch(
                "SELECT key, url FROM urls WHERE key > $1 AND state = 'queued'"
                " ORDER BY key LIMIT $2",
                after,
                limit,
            )
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def lease(self, keys: Sequence[int], lease_until: float) -> list[Entry]:
        if not keys:
            return []

        async def lease(conn: Conn) -> list[Entry]:
            token = int(await conn.fetchval("SELECT nextval('lease_tokens')"))
            moves = Moves()
            entries = []
            for row in await conn.fetch(
                _LEASE_QUEUED, lease_until, sorted(set(keys)), token, self._node
            ):
                entry = entry_of(tuple(row))
                moves.moved(entry.host, "queued", "leased")
                entries.append(entry)
            await moves.write(conn)
            return entries

        return await self._run(lease)

    async def excludes(self) -> list[str]:
        rows = await self._run(
            lambda conn: conn.fetch("SELECT pattern FROM excludes ORDER BY added_at, pattern")
        )
        return [str(r[0]) for r in rows]

    async def save_excludes(self, add: Sequence[str], remove: Sequence[str], at: float) -> None:
        async def save(conn: Conn) -> None:
            await conn.execute("DELETE FROM excludes WHERE pattern = ANY($1::text[])", list(remove))
            await conn.execute(
                "INSERT INTO excludes SELECT p, $2 FROM unnest($1::text[]) AS p"
                " ON CONFLICT (pattern) DO NOTHING",
                list(add),
                at,
            )

        await self._run(save)

    async def host_states(self, hosts: Sequence[str]) -> dict[str, HostState]:
        if not hosts:
            return {}
        rows = await self._run(
            lambda conn: conn.fetch(
                "SELECT host, level, blocked_until, failures, down_until, down_reason"
                " FROM hosts WHERE host = ANY($1::text[])",
                list(dict.fromkeys(hosts)),
            )
        )
        return {str(r[0]): HostState(*r) for r in rows}

    async def aclose(self) -> None:
        """Give up this node's hosts (another node may crawl them now) and disconnect."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(StorageError):  # else their holds run out by themselves
                await self._run(self._give_up_hosts)
            try:
                await self._pool.close()
            except _DB_ERRORS:  # a connection the server has just dropped: nothing to say
                self._pool.terminate()


# The nodes, with the URLs each holds (the index of leased rows: only those are read).
_NODES = (
    "SELECT n.name, n.started_at, n.beat_at, coalesce(l.n, 0), n.done FROM nodes AS n"
    " LEFT JOIN (SELECT lease_node, count(*) AS n FROM urls WHERE state = 'leased'"
    " GROUP BY lease_node) AS l ON l.lease_node = n.name ORDER BY n.name"
)
# The tallies are kept in shards: the report sums them.
_TALLIES = (
    "SELECT state, reason, sum(n) AS n FROM tallies GROUP BY state, reason HAVING sum(n) != 0"
)


async def _keep_session(conn: object) -> None:
    """A connection goes back to the pool as it is: the frontier leaves nothing in its
    session (no settings, listeners, cursors or session locks), so the default reset (one
    more round trip per transaction) has nothing to undo."""


def _dollars(sql: str) -> str:
    """SQLite's `?` placeholders as PostgreSQL's `$1, $2, ...`."""
    numbers = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql)


def _why(exc: BaseException, url: str) -> str:
    """The reason in `exc`, with any password of `url` taken out."""
    text = str(exc) or type(exc).__name__
    password = urlsplit(url).password if "://" in url else None
    if password:
        text = text.replace(password, "***")
    return json.dumps(text)[1:-1]
