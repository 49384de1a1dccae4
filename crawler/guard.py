"""Address guard: decide whether the crawler may connect to an IP address and port."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from crawler.addresses import parse_allowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded(addr: IPAddress) -> list[IPAddress]:
    """The addresses that decide: an IPv6 form that is only a wrapper for an IPv4 address
    (IPv4-mapped, NAT64) is judged by that IPv4 address; 6to4 and Teredo by both."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return [addr]
    if addr.ipv4_mapped is not None:
        return [addr.ipv4_mapped]
    if addr in _NAT64:
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    found: list[IPAddress] = [addr]
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    return found


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _is_public(addr: IPAddress) -> bool:
    return (
        addr.is_global
        and not addr.is_multicast
        and not addr.is_reserved
        and not addr.is_loopback
        and not addr.is_link_local
        and not addr.is_unspecified
        and not addr.is_private
        and not (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local)
    )


class AddressGuard:
    """Refuses loopback, private, link-local, CGNAT, multicast and reserved addresses.

    `allowed_networks` (CIDRs, each with the ports it allows, `parse_allowed`) are let
    through even when they fall in those ranges; the check is made on the address and port
    actually connected to, so DNS cannot smuggle a private address past it. Public
    addresses are permitted on every port.
    """

    def __init__(self, allowed_networks: Sequence[str] = ()) -> None:
        self._allowed = [parse_allowed(n) for n in allowed_networks]

    def permits(self, address: str, port: int) -> bool:
        try:
            addr = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        candidates = _embedded(addr)
        networks = [a.network for a in self._allowed if port in a.ports]
        for candidate in (addr, *candidates):
            if any(candidate in net for net in networks if candidate.version == net.version):
                return True
        return all(_is_public(c) for c in candidates)
