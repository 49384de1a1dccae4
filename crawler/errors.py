"""The crawler's one exception tree, grouped by what the catcher does.

    CrawlerError
    ├── StopCrawl                 the crawl cannot go on: exit with a code
    │   ├── ConfigError           bad settings or arguments (exit 2)
    │   └── StorageError          database or output files unusable (exit 3)
    │       └── OutOfSpace        disk full or read-only: wait and try again
    └── FetchError                one URL's attempt failed; `reason` is machine-readable
        ├── RetryableFetchError   worth another attempt later (defer to the frontier)
        │   ├── AuthFailed            reason "auth"
        │   ├── DnsError              reason "dns"
        │   ├── ConnectFailed         reason "connect"
        │   ├── FetchTimeout          reason "timeout"
        │   ├── DeadlineExceeded      reason "deadline"
        │   ├── ConnectionLost        reason "connection_reset"
        │   ├── ProtocolError         reason "protocol_error"
        │   └── TLSFailed             reason "tls"
        └── FinalFetchError       retrying cannot help: record as failed
            ├── BlockedAddress        reason "blocked_address"
            ├── BadContentEncoding    reason "bad_encoding"
            └── InvalidURL            reason "invalid_url"

HTTP statuses are results, never exceptions: the retry policy decides what a 503 means.
Foreign exceptions are translated into this tree at one boundary each: the fetcher (httpx2,
network), the SQLite frontier (sqlite3), and `storage_error` for OS errors on the data
directory and the output files.
"""

from __future__ import annotations

import errno


class CrawlerError(Exception):
    """Base of every error the crawler raises on purpose."""


class StopCrawl(CrawlerError):
    """The crawl cannot continue; the CLI exits with `exit_code`."""

    exit_code = 1


class ConfigError(StopCrawl):
    """Invalid settings or command-line arguments; the message names the key and value."""

    exit_code = 2


class StorageError(StopCrawl):
    """The frontier database or the output files cannot be used."""

    exit_code = 3


class OutOfSpace(StorageError):
    """The disk is full (or the volume read-only): nothing was made durable; try again later."""


class DatabaseUnavailable(OutOfSpace):
    """The shared frontier database cannot be reached (restarting, network cut): nothing was
    made durable; like a full disk, the crawl stops claiming and tries again later."""


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def storage_error(exc: OSError, doing: str, path: object) -> StorageError:
    """An OS error as one line naming the path and the OS's reason, e.g. "cannot create
    data directory /data/crawl: Read-only file system"; OutOfSpace if waiting may help."""
    where = exc.filename if exc.filename is not None else path
    kind = OutOfSpace if exc.errno in FULL_ERRNOS else StorageError
    return kind(f"cannot {doing} {where}: {exc.strerror or exc}")


class FetchError(CrawlerError):
    """One attempt at one URL failed.

    `fresh_connection` is False only when the fetcher knows the attempt went over a
    kept-alive connection: a failure there deserves one quick retry in place.
    """

    reason = "error"
    fresh_connection = True


class RetryableFetchError(FetchError):
    """Another attempt later may succeed."""


class AuthFailed(RetryableFetchError):
    """Credentials could not be obtained (e.g. the OAuth2 token endpoint failed)."""

    reason = "auth"


class DnsError(RetryableFetchError):
    reason = "dns"


class ConnectFailed(RetryableFetchError):
    reason = "connect"


class FetchTimeout(RetryableFetchError):
    reason = "timeout"


class DeadlineExceeded(RetryableFetchError):
    reason = "deadline"


class ConnectionLost(RetryableFetchError):
    reason = "connection_reset"


class ProtocolError(RetryableFetchError):
    reason = "protocol_error"


class TLSFailed(RetryableFetchError):
    reason = "tls"


class FinalFetchError(FetchError):
    """Retrying cannot help."""


class BlockedAddress(FinalFetchError):
    reason = "blocked_address"


class BadContentEncoding(FinalFetchError):
    reason = "bad_encoding"


class InvalidURL(FinalFetchError):
    reason = "invalid_url"
