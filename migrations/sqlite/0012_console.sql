-- The operator's console (issue 15): per-host controls and live exclude patterns, kept here
-- so that they hold across restarts (and, in PostgreSQL, for every node).
-- A host's controls, by politeness key: paused (no request until unpaused), blocked until a
-- time (wall clock), a delay and a concurrency replacing the configured ones. A row whose
-- controls are all undone is deleted.
CREATE TABLE host_controls (
    host          TEXT PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    blocked_until REAL,
    delay         REAL,
    concurrency   INTEGER,
    updated_at    REAL NOT NULL
);
-- Regexes (Python re.search) a URL must not match: queued ones that do end skipped with
-- reason 'excluded', and so do later ones before they are fetched.
CREATE TABLE excludes (
    pattern  TEXT PRIMARY KEY,
    added_at REAL NOT NULL
);
-- URLs failed or skipped by host and reason (the console's "failed by reason" per host): only
-- those rows are indexed, so a fetch that succeeds costs this index nothing.
CREATE INDEX urls_host_reasons ON urls (host, reason) WHERE state IN ('failed', 'skipped');
-- The host table sorted by each of its columns (GET /hosts?sort=...): the first page of a
-- million hosts in milliseconds instead of a sort of them all (0.2-0.3 s).
CREATE INDEX host_urls_queued ON host_urls (queued DESC, host);
CREATE INDEX host_urls_done ON host_urls (done DESC, host);
CREATE INDEX host_urls_failed ON host_urls (failed DESC, host);
CREATE INDEX host_urls_total ON host_urls (total DESC, host);
