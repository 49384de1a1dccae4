-- What a URL is: NULL for a page, 'sitemap' for a sitemap to read for more URLs.
ALTER TABLE urls ADD COLUMN kind TEXT;
