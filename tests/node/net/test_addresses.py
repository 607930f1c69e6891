"""What a node announces: wildcards expanded to interface addresses, loopback only when
there is nothing else, observed addresses only once reachable, circuits last."""

from __future__ import annotations

import multiaddr
from dgpu.node.net.libp2p.addresses import AddressBook, is_private, local_ipv4_addresses

M = multiaddr.Multiaddr


def _book(listen: list[str], interfaces: list[str]) -> AddressBook:
    book = AddressBook(lambda: interfaces)
    book.transport = lambda: [M(a) for a in listen]
    return book


def test_wildcard_becomes_the_interfaces_without_loopback() -> None:
    book = _book(["/ip4/0.0.0.0/tcp/4001"], ["127.0.0.1", "198.18.7.2", "10.0.0.5"])
    assert [str(a) for a in book([])] == ["/ip4/198.18.7.2/tcp/4001", "/ip4/10.0.0.5/tcp/4001"]


def test_loopback_only_host_and_explicit_loopback_keep_loopback() -> None:
    assert [str(a) for a in _book(["/ip4/0.0.0.0/tcp/1"], ["127.0.0.1"])([])] == [
        "/ip4/127.0.0.1/tcp/1"
    ]
    assert [str(a) for a in _book(["/ip4/127.0.0.1/tcp/2"], ["198.18.7.2"])([])] == [
        "/ip4/127.0.0.1/tcp/2"
    ]


def test_observed_addresses_only_once_reachable_and_circuits_last() -> None:
    book = _book(["/ip4/10.0.0.5/tcp/4001"], ["10.0.0.5"])
    observed = M("/ip4/198.18.7.11/tcp/4001")
    circuit = M(
        "/ip4/198.18.7.2/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N/p2p-circuit"
    )
    book.circuits = [circuit]
    candidates = [M("/ip4/10.0.0.5/tcp/4001"), observed]
    assert book(candidates) == [M("/ip4/10.0.0.5/tcp/4001"), circuit]
    book.reachable = True
    assert book(candidates) == [M("/ip4/10.0.0.5/tcp/4001"), observed, circuit]
    book.reachable = False  # a dial-back failed: only the circuits are of use
    assert book(candidates) == [circuit]


def test_private_ranges_include_carrier_grade_nat() -> None:
    assert is_private("/ip4/10.1.2.3/tcp/1") and is_private("/ip4/100.64.0.9/tcp/1")
    assert is_private("/ip4/127.0.0.1/tcp/1")
    assert not is_private("/ip4/8.8.8.8/tcp/1")


def test_local_interfaces_include_loopback() -> None:
    assert "127.0.0.1" in local_ipv4_addresses()
