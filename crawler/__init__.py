"""crawler: a resumable, polite bulk fetcher that streams results to WARC + JSONL."""

__version__ = "0.1.0"
