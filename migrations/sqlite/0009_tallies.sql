-- URLs by state and reason, kept up to date in the same transaction as every change, so a
-- report (`crawler status`, the start and end of a run, /metrics) reads a few rows instead
-- of grouping every URL: at 5 million URLs that scan took 11 s and 400 MB of sort memory.
-- `reason` is '' where the URL's reason is NULL (a primary key column cannot be NULL).
-- Rows inserted into urls are counted by the frontier itself (they are all 'queued' with no
-- reason, and it knows how many each batch inserted: one statement per batch instead of a
-- trigger per row); every UPDATE of state or reason is counted by the trigger below.
CREATE TABLE tallies (
    state  TEXT NOT NULL,
    reason TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (state, reason)
) WITHOUT ROWID;
INSERT INTO tallies (state, reason, n)
    SELECT state, coalesce(reason, ''), count(*) FROM urls GROUP BY state, coalesce(reason, '');
CREATE TRIGGER urls_tallied AFTER UPDATE OF state, reason ON urls
    WHEN old.state IS NOT new.state OR old.reason IS NOT new.reason
BEGIN
    UPDATE tallies SET n = n - 1 WHERE state = old.state AND reason = coalesce(old.reason, '');
    INSERT INTO tallies (state, reason, n) VALUES (new.state, coalesce(new.reason, ''), 1)
        ON CONFLICT (state, reason) DO UPDATE SET n = n + 1;
END;
