-- Recrawl (issue 14): what a URL's last visit left for the next one (see the SQLite
-- migration 0011): validators, payload digest, the record holding the payload, the adaptive
-- interval, and when a finished URL is due again.
ALTER TABLE urls ADD COLUMN etag TEXT,
    ADD COLUMN last_modified TEXT,
    ADD COLUMN digest TEXT,
    ADD COLUMN ref_uri TEXT,
    ADD COLUMN ref_date TEXT,
    ADD COLUMN recrawl_interval DOUBLE PRECISION,
    ADD COLUMN recrawl_at DOUBLE PRECISION;
CREATE INDEX urls_recrawl ON urls (recrawl_at) WHERE recrawl_at IS NOT NULL;

-- Responses written and the revisits among them, sharded by backend like the tallies.
CREATE TABLE visits (
    shard INTEGER NOT NULL,
    kind  TEXT    NOT NULL,
    n     BIGINT  NOT NULL,
    PRIMARY KEY (shard, kind)
) WITH (fillfactor = 50);
INSERT INTO visits (shard, kind, n)
    SELECT 0, 'visits', count(*) FROM urls WHERE state IN ('done', 'failed') AND status IS NOT NULL;

-- Settings the database must follow (the recrawl schedule it was last timed with).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
