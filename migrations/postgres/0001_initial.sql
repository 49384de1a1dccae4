-- The shared frontier of a crawl run by several nodes (issue 13): the SQLite schema as of
-- its migration 0010, for PostgreSQL. Times are wall-clock seconds (double precision).

-- One row per canonical URL, keyed by a 64-bit hash of its canonical form.
CREATE TABLE urls (
    key             BIGINT PRIMARY KEY,
    url             TEXT    NOT NULL,
    host            TEXT    NOT NULL,          -- politeness key: host[:port]
    state           TEXT    NOT NULL DEFAULT 'queued',
    not_before      DOUBLE PRECISION NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    depth           INTEGER NOT NULL DEFAULT 0,
    redirects       INTEGER NOT NULL DEFAULT 0,
    chain           TEXT    NOT NULL DEFAULT '',
    discovered_from TEXT,
    lease_until     DOUBLE PRECISION,
    lease_token     BIGINT,
    lease_node      TEXT,                      -- the node holding the lease
    reason          TEXT,
    status          INTEGER,
    finished_at     DOUBLE PRECISION,
    origin          TEXT,
    kind            TEXT,
    -- Statements tell a batch's leased rows by their token (crawler/frontier/postgres.py).
    CONSTRAINT leased CHECK ((state = 'leased') = (lease_token IS NOT NULL)
                             AND (state = 'leased') = (lease_until IS NOT NULL))
) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02);
-- Only rows that are queued or leased are in the indexes claims use: the long tail of
-- finished URLs costs a claim nothing.
CREATE INDEX urls_host_ready ON urls (host, not_before, key) WHERE state = 'queued';
CREATE INDEX urls_ready ON urls (not_before) WHERE state = 'queued';
CREATE INDEX urls_leased ON urls (lease_until) WHERE state = 'leased';

-- Lease tokens only grow, across nodes and restarts.
CREATE SEQUENCE lease_tokens;

-- URLs by state and reason, in shards (by backend) so that nodes do not queue on one row;
-- reports sum them. Kept by the transactions that move URLs (crawler/frontier/
-- postgres_counts.py), not by triggers: those cost two thirds of the throughput.
CREATE TABLE tallies (
    shard  INTEGER NOT NULL,
    state  TEXT    NOT NULL,
    reason TEXT    NOT NULL,                   -- '' where the URL's reason is NULL
    n      BIGINT  NOT NULL,
    PRIMARY KEY (shard, state, reason)
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0,
        autovacuum_vacuum_threshold = 1000);

-- URLs per host and state (the reports' per-host lists, and the max_pages_per_host cap).
CREATE TABLE host_urls (
    host    TEXT PRIMARY KEY,
    total   BIGINT NOT NULL DEFAULT 0,
    queued  BIGINT NOT NULL DEFAULT 0,
    leased  BIGINT NOT NULL DEFAULT 0,
    done    BIGINT NOT NULL DEFAULT 0,
    failed  BIGINT NOT NULL DEFAULT 0,
    skipped BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05);

-- Output files of each node, and the length of each known to be committed.
CREATE TABLE outputs (
    node      TEXT   NOT NULL,
    path      TEXT   NOT NULL,                 -- relative to the node's data directory
    committed BIGINT NOT NULL,
    PRIMARY KEY (node, path)
);

-- The nodes of the crawl and their heartbeats.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    beat_at    DOUBLE PRECISION NOT NULL,
    done       BIGINT NOT NULL DEFAULT 0        -- URLs it has finished
);

-- Adaptive politeness and health per host (see crawler/politeness.py), and the node that
-- crawls the host: one at a time, so its delay, concurrency and back-off hold crawl-wide.
-- A claim takes a host that is free (from `free_at`: a delay after its last owner let it
-- go, at once for that last owner: its own pace still holds), its own, or one whose owner's
-- hold has run out (the owner died: its hold ends with its leases). An owner lets a host go when it holds none of its URLs any more, and all of
-- them when it stops.
CREATE TABLE hosts (
    host          TEXT PRIMARY KEY,
    level         DOUBLE PRECISION NOT NULL DEFAULT 0,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    down_until    DOUBLE PRECISION NOT NULL DEFAULT 0,
    down_reason   TEXT,
    owner         TEXT,
    owner_until   DOUBLE PRECISION NOT NULL DEFAULT 0,
    free_at       DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_owner    TEXT
) WITH (fillfactor = 70);

CREATE TABLE robots (
    host          TEXT PRIMARY KEY,
    body          TEXT,
    status        INTEGER,
    expires_at    DOUBLE PRECISION NOT NULL,
    failing_since DOUBLE PRECISION
);

CREATE TABLE cookies (
    profile TEXT PRIMARY KEY,
    jar     TEXT NOT NULL
);
