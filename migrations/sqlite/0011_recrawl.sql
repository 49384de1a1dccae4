-- Recrawl (issue 14): what a URL's last visit left for the next one. The validators a
-- conditional request sends (ETag, Last-Modified), the payload digest of the response, and
-- the record that holds that payload (its URI when not the URL's own, and WARC-Date), which
-- a revisit record refers to.
ALTER TABLE urls ADD COLUMN etag TEXT;
ALTER TABLE urls ADD COLUMN last_modified TEXT;
ALTER TABLE urls ADD COLUMN digest TEXT;
ALTER TABLE urls ADD COLUMN ref_uri TEXT;
ALTER TABLE urls ADD COLUMN ref_date TEXT;
-- crawl.recrawl_adaptive: seconds from the last visit to the next (NULL: crawl.recrawl_after).
ALTER TABLE urls ADD COLUMN recrawl_interval REAL;
-- When a finished URL is due again (wall clock; NULL: never). Set only on finished rows, and
-- cleared when it is queued again: the index holds the recrawl schedule and nothing else.
ALTER TABLE urls ADD COLUMN recrawl_at REAL;
CREATE INDEX urls_recrawl ON urls (recrawl_at) WHERE recrawl_at IS NOT NULL;
-- Responses written ('visits', one per fetch that got one, recrawls included) and the
-- revisit records among them ('not_modified': a 304; 'identical': a payload stored before).
CREATE TABLE visits (
    kind TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO visits (kind, n)
    SELECT 'visits', count(*) FROM urls WHERE state IN ('done', 'failed') AND status IS NOT NULL;
