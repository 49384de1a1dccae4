-- The frontier: one row per canonical URL, keyed by a 64-bit hash of its canonical form.
CREATE TABLE urls (
    key             INTEGER PRIMARY KEY,
    url             TEXT    NOT NULL,          -- the URL as given (what is fetched)
    host            TEXT    NOT NULL,          -- politeness key: host[:port]
    state           TEXT    NOT NULL DEFAULT 'queued',
    not_before      REAL    NOT NULL DEFAULT 0, -- wall-clock seconds; queued rows wait till then
    attempts        INTEGER NOT NULL DEFAULT 0,
    depth           INTEGER NOT NULL DEFAULT 0,
    redirects       INTEGER NOT NULL DEFAULT 0, -- redirect hops followed to reach this URL
    chain           TEXT    NOT NULL DEFAULT '', -- keys of the redirect chain before it
    discovered_from TEXT,
    lease_until     REAL,
    reason          TEXT,                      -- why failed/skipped (or last retryable error)
    status          INTEGER,                   -- last HTTP status seen
    finished_at     REAL
);

-- Claims walk this: only queued rows, earliest first, hash order (hosts interleaved).
CREATE INDEX urls_ready ON urls (not_before, key) WHERE state = 'queued';
CREATE INDEX urls_leased ON urls (lease_until) WHERE state = 'leased';

-- Output files and the length of each known to be committed (the rest is truncated).
CREATE TABLE outputs (
    path      TEXT    PRIMARY KEY,             -- relative to the data directory
    committed INTEGER NOT NULL
);

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
