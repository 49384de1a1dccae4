-- Per-host robots.txt cache (RFC 9309), so a restart does not fetch it again.
CREATE TABLE robots (
    host          TEXT    PRIMARY KEY,
    body          TEXT,              -- the rules as fetched (NULL: allow all, e.g. after a 4xx)
    status        INTEGER,           -- HTTP status of the last fetch, NULL on a network error
    expires_at    REAL    NOT NULL,  -- wall clock: fetch again after this
    failing_since REAL               -- first of a run of failed fetches (5xx, network), else NULL
);
