-- Claims walk hosts, not one global order: a host with a million queued URLs (or one that
-- is blocked) must never hide the URLs of the others. This index lets a claim step from one
-- host with queued URLs to the next in O(log n) and take each host's earliest ones (the
-- rowid, i.e. the key, ends every index entry: ties go in key order).
CREATE INDEX urls_host_ready ON urls (host, not_before) WHERE state = 'queued';
-- Host health: network failures in a row with no answer between them; past
-- retry.host_max_failures (or on an address the guard refuses) the host is given up
-- until down_until (wall clock), and its URLs fail with down_reason and no request.
-- A Retry-After longer than retry.max_wait gives the host up the same way (not "down").
ALTER TABLE hosts ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN down_until REAL NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN down_reason TEXT;
