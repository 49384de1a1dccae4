-- The host of the seed a URL descends from (crawl scope "host"/"domain"); NULL: its own host.
ALTER TABLE urls ADD COLUMN origin TEXT;
