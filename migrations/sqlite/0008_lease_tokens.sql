-- Fencing (DESIGN.md invariant 8): each claim takes the next lease token and stamps it on the
-- rows it leases; a completion (finish, defer) or a release carries the token and applies only
-- to a row still leased with that same token, so a holder whose lease was lost (released, or
-- taken over after lease_until) cannot overwrite the new holder's result.
-- The token of the claim that last leased the row; it means something only while the row is
-- 'leased' (kept afterwards: which lease finished it). NULL on rows leased before this
-- migration, so no completion matches them: release_all at start gives them back.
ALTER TABLE urls ADD COLUMN lease_token INTEGER;
-- The last token handed out (one row). Tokens only grow and are never reused, even when the
-- rows that held them are released or finished.
CREATE TABLE lease_tokens (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO lease_tokens (id, last) VALUES (1, 0);
