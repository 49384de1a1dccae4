"""Addresses written in the settings: allowed networks with their ports, listen and DNS servers."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
EVERY_PORT = range(0, 65536)
_PORTS = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class Allowed:
    """One entry of `network.allowed_networks`: a network, and the ports allowed on it."""

    network: IPNetwork
    ports: range = EVERY_PORT


def parse_allowed(text: str) -> Allowed:
    """`10.0.0.0/8` (every port), `10.0.0.0/8:443`, `127.0.0.1/32:8600-8603`, `::1/128`,
    `[::1]/128:8080` (an IPv6 network with ports is written in brackets); ValueError."""
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        prefix, colon, ports = rest.partition(":")
        if not bracket or (prefix and not prefix.startswith("/")):
            raise ValueError(f"{text!r} is not [IPv6]/LENGTH:PORTS")
        network = ipaddress.ip_network(address + prefix, strict=False)
        if network.version != 6:
            raise ValueError(f"{text!r}: brackets are for IPv6 networks")
    else:
        # IPv6 without brackets has no port; IPv4 may have one after its only ":"
        one = text.count(":") == 1
        network_text, colon, ports = text.partition(":") if one else (text, "", "")
        network = ipaddress.ip_network(network_text, strict=False)
    if not colon:
        return Allowed(network)
    match = _PORTS.fullmatch(ports)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"{text!r}: ports {ports!r} are not PORT or FIRST-LAST within 1-65535")
    return Allowed(network, range(first, last + 1))


def split_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:8080` or `[::1]:8080` -> (host, port); raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(text)
    host = host.removeprefix("[").removesuffix("]")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(text)
    return host, number


def split_dns_server(text: str) -> tuple[str, int]:
    """`192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:5353` -> (IP, port);
    port 53 when none is given; raises ValueError."""
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        host, number = split_listen(text)
    if number == 0:
        raise ValueError(text)
    return host, number
