"""Tests for crawler/guard.py: which IP addresses the crawler may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from crawler.addresses import Allowed, parse_allowed
from crawler.guard import AddressGuard

BLOCKED = [
    # loopback
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    # RFC 1918
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    # link-local
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fe80::1%eth0",
    "fe80::abcd:1%2",
    # CGNAT 100.64.0.0/10
    "100.64.0.1",
    "100.127.255.254",
    # multicast
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff05::1:3",
    # reserved 240.0.0.0/4 and broadcast
    "240.0.0.1",
    "255.255.255.255",
    # unspecified / "this network"
    "0.0.0.0",
    "0.1.2.3",
    "::",
    # IPv4-mapped IPv6 of blocked addresses
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:7f00:1",
    # 6to4 carrying a private IPv4 (10.0.0.1, 127.0.0.1, 192.168.1.1)
    "2002:a00:1::",
    "2002:7f00:1::1",
    "2002:c0a8:101::",
    # NAT64 well-known prefix carrying a private IPv4
    "64:ff9b::a00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::10.0.0.1",
    # IPv4-compatible (deprecated) forms
    "::127.0.0.1",
    "::10.0.0.1",
    # unique local fc00::/7
    "fc00::1",
    "fd12:3456:789a::1",
    # deprecated site-local fec0::/10 (private by intent, though ipaddress calls it global)
    "fec0::1",
    "feff::1",
    # documentation / benchmarking ranges
    "192.0.2.1",
    "198.18.0.1",
    "203.0.113.9",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_by_default(address: str) -> None:
    assert AddressGuard().permits(address, 80) is False


PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above CGNAT
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.1",  # just above 172.16/12
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2002:808:808::",  # 6to4 carrying a public IPv4
    # IPv6 forms that only wrap a public IPv4 address are judged by that address
    "::ffff:8.8.8.8",  # IPv4-mapped (a dual-stack resolver may return it)
    "64:ff9b::808:808",  # NAT64 (DNS64 on an IPv6-only host returns it for every v4 site)
    "64:ff9b::1.1.1.1",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_permitted(address: str) -> None:
    assert AddressGuard().permits(address, 80) is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "example.com",
        "1.2.3",
        "256.1.1.1",
        "127.1",
        "0x7f000001",
        "017700000001",
        "2130706433",
        " 8.8.8.8",
        "8.8.8.8 ",
        "8.8.8.8/32",
        "[::1]",
        "::1::2",
        "%eth0",
    ],
)
def test_garbage_refused(text: str) -> None:
    assert AddressGuard().permits(text, 80) is False


def test_allowed_networks_let_loopback_through() -> None:
    guard = AddressGuard(["127.0.0.0/8"])
    assert guard.permits("127.0.0.1", 80)
    assert guard.permits("127.0.0.2", 80)
    assert guard.permits("127.255.255.254", 80)
    assert guard.permits("::ffff:127.0.0.1", 80)  # the mapped form of an allowed address
    # everything else still blocked
    assert not guard.permits("10.0.0.1", 80)
    assert not guard.permits("::ffff:10.0.0.1", 80)
    assert not guard.permits("192.168.1.1", 80)
    assert not guard.permits("::1", 80)  # IPv6 loopback is not in 127.0.0.0/8
    assert not guard.permits("169.254.169.254", 80)
    # public addresses stay permitted
    assert guard.permits("8.8.8.8", 80)


def test_allowed_networks_apply_to_nat64_and_6to4_forms() -> None:
    guard = AddressGuard(["10.0.0.0/8"])
    assert guard.permits("64:ff9b::a00:1", 80)
    assert guard.permits("::ffff:10.0.0.1", 80)
    assert not guard.permits("64:ff9b::c0a8:101", 80)  # 192.168.1.1


def test_allowed_networks_narrow_and_ipv6() -> None:
    guard = AddressGuard(["10.1.0.0/16", "::1/128", "fd00::/8"])
    assert guard.permits("10.1.2.3", 80)
    assert not guard.permits("10.2.0.1", 80)
    assert guard.permits("::1", 80)
    assert guard.permits("fd12::1", 80)
    assert not guard.permits("fc00::1", 80)
    assert not guard.permits("127.0.0.1", 80)


def test_allowed_networks_accept_host_bits() -> None:
    # a CIDR with host bits set (strict=False) is taken as its network
    guard = AddressGuard(["127.0.0.1/8"])
    assert guard.permits("127.0.0.9", 80)


def test_allowed_network_lists_are_per_instance() -> None:
    open_guard = AddressGuard(["127.0.0.0/8"])
    closed_guard = AddressGuard()
    assert open_guard.permits("127.0.0.1", 80)
    assert not closed_guard.permits("127.0.0.1", 80)


def test_invalid_allowed_network_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="does not appear to be"):
        AddressGuard(["not-a-network"])


# -- allow-list entries with ports -------------------------------------------------------------


def test_an_entry_with_a_port_range_allows_only_those_ports() -> None:
    guard = AddressGuard(["127.0.0.1/32:8600-8603"])
    assert [p for p in range(8590, 8610) if guard.permits("127.0.0.1", p)] == [
        8600,
        8601,
        8602,
        8603,
    ]
    assert not guard.permits("127.0.0.2", 8600)  # outside the network
    assert guard.permits("::ffff:127.0.0.1", 8601)  # the mapped form, same ports
    assert not guard.permits("::ffff:127.0.0.1", 22)
    assert not guard.permits("64:ff9b::7f00:1", 22)  # NAT64 form of 127.0.0.1
    assert guard.permits("8.8.8.8", 22)  # public addresses: every port, as before


def test_entries_with_and_without_ports_combine() -> None:
    guard = AddressGuard(["10.0.0.0/8:443", "10.1.0.0/16", "[::1]/128:8080", "fd00::/8"])
    assert guard.permits("10.9.9.9", 443)
    assert not guard.permits("10.9.9.9", 80)
    assert guard.permits("10.1.2.3", 80)  # a narrower entry without ports: every port
    assert guard.permits("::1", 8080)
    assert not guard.permits("::1", 8081)
    assert guard.permits("fd12::1", 1)
    assert guard.permits("fd12::1", 65535)


@pytest.mark.parametrize(
    ("entry", "network", "ports"),
    [
        ("10.0.0.0/8", "10.0.0.0/8", range(0, 65536)),
        ("10.0.0.0/8:443", "10.0.0.0/8", range(443, 444)),
        ("127.0.0.1/32:8600-8603", "127.0.0.1/32", range(8600, 8604)),
        ("127.0.0.1:1-65535", "127.0.0.1/32", range(1, 65536)),
        ("127.0.0.9/8:80", "127.0.0.0/8", range(80, 81)),  # host bits, as before
        ("::1/128", "::1/128", range(0, 65536)),
        ("fd00::/8", "fd00::/8", range(0, 65536)),
        ("[::1]/128:8080", "::1/128", range(8080, 8081)),
        ("[::1]:8080-8081", "::1/128", range(8080, 8082)),
        ("[fd00::]/8", "fd00::/8", range(0, 65536)),
    ],
)
def test_parse_allowed(entry: str, network: str, ports: range) -> None:
    assert parse_allowed(entry) == Allowed(ipaddress.ip_network(network), ports)


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1/32:",
        "127.0.0.1/32:0",
        "127.0.0.1/32:65536",
        "127.0.0.1/32:99999",
        "127.0.0.1/32:8603-8600",
        "127.0.0.1/32:80-",
        "127.0.0.1/32:-80",
        "127.0.0.1/32:http",
        "127.0.0.1/32: 80",
        "127.0.0.1/32:80:81",
        "127.0.0.1/33:80",
        "::1/128:8080",  # IPv6 with a port needs brackets
        "[::1/128:8080",
        "[::1]128:8080",
        "[127.0.0.1]/32:80",
        "[::1]/128:",
        "not-a-network:80",
        "",
    ],
)
def test_bad_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):  # with a message
        parse_allowed(entry)
    with pytest.raises(ValueError, match=r"\S"):  # with a message
        AddressGuard([entry])
