"""Hosts as the HTTP client reads them, and the form of a URL that is fetched.

The fetched form of a URL has its host as browsers read it (an IPv4 address in any numeric
spelling the WHATWG URL standard accepts, `0177.0.0.1`, `0x7f.1`, `2130706433`, `127.1`, as
its dotted quad) and no userinfo. A host the HTTP client refuses (invalid IDNA, a bad IPv4
address) raises BadURL here, so it is refused before it is queued.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlunsplit

import idna

DEFAULT_PORTS = {"http": 80, "https": 443}

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
DOTTED_QUAD = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")  # as serialised
_NUMBER = {10: re.compile("[0-9]+"), 16: re.compile("[0-9A-Fa-f]+"), 8: re.compile("[0-7]+")}


class BadURL(ValueError):
    """The text is not a URL the crawler can fetch; str(exc) says why."""


def fetch_form(url: str, parts: SplitResult) -> str:
    """`url` (split into `parts`, with a host) as it is fetched: no userinfo, its host as the
    HTTP client reads it. BadURL when the client would refuse the host."""
    hostname = parts.hostname or ""
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        # urlsplit lets [v1.x] (IPvFuture) and [::1]junk through; the client does not
        if ":" not in hostname or hostport[hostport.find("]") + 1 :][:1] not in ("", ":"):
            raise BadURL(f"{hostport!r} is not an IPv6 address with an optional port")
    elif (host := client_host(hostname)) != hostname:
        _, colon, port = hostport.partition(":")
        hostport = host + colon + port  # the port as written
    elif "@" not in parts.netloc:
        return url
    return _with_netloc(url, parts, hostport)


def _with_netloc(url: str, parts: SplitResult, netloc: str) -> str:
    """`url` with another authority, every other character as written."""
    start = len(parts.scheme) + 3  # "http://"
    if url[start : start + len(parts.netloc)] != parts.netloc:  # urlsplit dropped some \t\n
        return urlunsplit(parts._replace(netloc=netloc))
    return url[:start] + netloc + url[start + len(parts.netloc) :]


def ascii_host(hostname: str) -> str:
    """A host name as ASCII: a non-ASCII name as its IDNA A-label (UnicodeError if it has
    none), any other as it is."""
    return hostname if hostname.isascii() else idna.encode(hostname).decode("ascii")


def client_host(hostname: str) -> str:
    """A host name (lower-case, as urlsplit gives it) as the HTTP client reads it.

    An IPv4 address in any spelling the WHATWG URL standard accepts becomes its dotted quad
    (a host whose last label is a number is an IPv4 address or invalid); any other host is
    kept as written. BadURL for what the client refuses: a bad IPv4 address, a name that is
    not valid IDNA 2008 (the client encodes non-ASCII names with `idna.encode`).
    """
    if ":" in hostname or DOTTED_QUAD.fullmatch(hostname):
        return hostname  # IPv6 (urlsplit checked it) or already a dotted quad
    name = hostname
    try:
        if not hostname.isascii():
            name = idna.encode(hostname).decode("ascii")
        elif "xn--" in hostname:  # an A-label must decode, as its U-label must encode
            for label in hostname.split("."):
                if label.startswith("xn--"):
                    idna.decode(label)
    except UnicodeError as exc:  # idna.IDNAError included
        raise BadURL(f"host {hostname[:100]!r} is not valid IDNA: {exc}") from None
    return _ipv4(name) if _ends_in_number(name) else hostname


def _ends_in_number(host: str) -> bool:
    """The WHATWG "ends in a number checker": is the last label (a final "." aside) a number?"""
    labels = host.split(".")
    if labels[-1] == "":
        if len(labels) == 1:
            return False
        labels.pop()
    last = labels[-1]
    return (last.isascii() and last.isdigit()) or _number(last) is not None


def _number(text: str) -> int | None:
    """The WHATWG "IPv4 number parser": `0x` hexadecimal, `0` octal, else decimal; None when
    `text` is none of them."""
    if not text:
        return None
    radix = 10
    if text[:2] in ("0x", "0X"):
        text, radix = text[2:], 16
    elif len(text) > 1 and text[0] == "0":
        text, radix = text[1:], 8
    if not text:
        return 0  # "0x" is 0
    if _NUMBER[radix].fullmatch(text) is None:
        return None
    digits = text.lstrip("0") or "0"
    return int(digits, radix) if len(digits) <= 16 else 1 << 64  # out of range either way


def _ipv4(host: str) -> str:
    """The WHATWG "IPv4 parser" for a host that ends in a number: its dotted quad, or BadURL.

    One to four parts, each decimal, octal (`0177`) or hexadecimal (`0x7f`); the last part
    fills the bytes the others leave (`127.1` is 127.0.0.1, `2130706433` is 127.0.0.1)."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    numbers: list[int] = []
    for label in labels[:5]:
        number = _number(label)
        if number is None:
            break
        numbers.append(number)
    last = numbers[-1] if numbers else 0
    if (
        len(numbers) != len(labels)
        or len(numbers) > 4
        or any(n > 255 for n in numbers[:-1])
        or last >= 256 ** (5 - len(numbers))
    ):
        raise BadURL(f"host {host[:100]!r} ends in a number but is not an IPv4 address")
    for index, number in enumerate(numbers[:-1]):
        last += number << (8 * (3 - index))
    return str(ipaddress.IPv4Address(last))


def is_plain(host: str) -> bool:
    """Whether `host` (ASCII letters, digits, "." and "-") is not an IPv4 address spelt
    otherwise than as a dotted quad: the fast paths' test, exact when the last label does
    not start with a digit (only then can it be a number)."""
    start = host.rfind(".", 0, len(host) - 1) + 1  # a final "." belongs to the last label
    return not host[start : start + 1].isdigit() or DOTTED_QUAD.fullmatch(host) is not None
