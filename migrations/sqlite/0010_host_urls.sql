-- URLs per host and state, kept in the same transaction as every change, so the per-host
-- lists of a report (`crawler status`, /status, /metrics: the hosts with most URLs, the ones
-- with most waiting) read one row per host instead of grouping every URL (2.8 s at 2 million
-- URLs, growing with the frontier), and the max_pages_per_host cap reads one row.
-- Inserts are counted by the frontier (crawler/frontier/sqlite_insert.py: one upsert per host
-- and batch; a trigger per row made seeding 30-45% slower), every change of state by the
-- trigger below. The lists read the whole table (one row per host: 0.1-0.3 s at a million
-- hosts); indexes on the counts would cost two index writes per change of state.
CREATE TABLE host_urls (
    host    TEXT PRIMARY KEY,
    total   INTEGER NOT NULL DEFAULT 0,
    queued  INTEGER NOT NULL DEFAULT 0,
    leased  INTEGER NOT NULL DEFAULT 0,
    done    INTEGER NOT NULL DEFAULT 0,
    failed  INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO host_urls (host, total, queued, leased, done, failed, skipped)
    SELECT host, count(*), sum(state = 'queued'), sum(state = 'leased'), sum(state = 'done'),
           sum(state = 'failed'), sum(state = 'skipped')
    FROM urls GROUP BY host;
CREATE TRIGGER urls_host_moved AFTER UPDATE OF state ON urls
    WHEN old.state IS NOT new.state
BEGIN
    UPDATE host_urls SET
        queued = queued + (new.state = 'queued') - (old.state = 'queued'),
        leased = leased + (new.state = 'leased') - (old.state = 'leased'),
        done = done + (new.state = 'done') - (old.state = 'done'),
        failed = failed + (new.state = 'failed') - (old.state = 'failed'),
        skipped = skipped + (new.state = 'skipped') - (old.state = 'skipped')
    WHERE host = new.host;
END;
