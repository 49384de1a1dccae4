-- Cookie jars of fetch profiles with `cookies = true` (JSON list), so a login survives a restart.
CREATE TABLE cookies (
    profile TEXT PRIMARY KEY,
    jar     TEXT NOT NULL
);
