-- Adaptive politeness per host, kept across restarts (see crawler/politeness.py).
CREATE TABLE hosts (
    host          TEXT PRIMARY KEY,
    level         REAL NOT NULL,   -- back-off level: the delay doubles per level
    blocked_until REAL NOT NULL    -- wall clock: no request to the host before this
);
