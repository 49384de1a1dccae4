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
