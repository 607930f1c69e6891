"""What a node tells others about where to reach it (identify, DHT records, offers).

py-libp2p 0.8.1 announces its listen addresses as they are: a wildcard listener
(``/ip4/0.0.0.0/tcp/N``) is announced as such and peers dial their own localhost (LIBP2P.md
hazard 17); and it adds "confirmed" observed addresses from identify that, behind a NAT,
nobody can dial. :class:`AddressBook` is the host's ``addrs_factory`` instead:

* a wildcard listener becomes one address per local IPv4 interface; loopback addresses are
  announced only when the node has nothing else (or listens on loopback explicitly);
* observed addresses (identify) are announced only once the node knows it is reachable
  from outside (:attr:`reachable`, set from a real dial-back, never from AutoNAT);
* relay circuit addresses (``.../p2p/<relay>/p2p-circuit``) the node holds reservations
  for are announced after the direct ones; a node known to be unreachable announces its
  circuits only (its private addresses would cost every dialer a timeout).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable

import multiaddr

_SIOCGIFADDR = 0x8915


def local_ipv4_addresses() -> list[str]:
    """IPv4 addresses of this host's interfaces (of its network namespace)."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):  # an interface without an IPv4 address
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                found.append(socket.inet_ntoa(reply[20:24]))
    return found


def _ip4(addr: multiaddr.Multiaddr) -> str | None:
    try:
        return str(addr.value_for_protocol("ip4"))
    except Exception:  # multiaddr raises its own lookup errors for a missing protocol
        return None


def is_private(addr: str) -> bool:
    """Whether a multiaddr's IPv4 address is loopback, private, link-local or carrier-grade
    NAT space (py-libp2p does not count 100.64.0.0/10 as private: hazard 22)."""
    ip = _ip4(multiaddr.Multiaddr(addr))
    if ip is None:
        return False
    parsed = ipaddress.ip_address(ip)
    cgnat = ipaddress.ip_network("100.64.0.0/10")
    return parsed.is_private or parsed.is_loopback or parsed.is_link_local or parsed in cgnat


class AddressBook:
    """The addresses a node announces; see the module docstring."""

    def __init__(self, interfaces: Callable[[], list[str]] = local_ipv4_addresses) -> None:
        self._interfaces = interfaces
        self.transport: Callable[[], list[multiaddr.Multiaddr]] = list
        """The transport addresses the host really listens on (the host's
        ``get_transport_addrs``, set when the host is built)."""
        self.reachable: bool | None = None
        """None: not known yet; True: a peer dialled us back on a fresh connection."""
        self.circuits: list[multiaddr.Multiaddr] = []
        self.observed: list[multiaddr.Multiaddr] = []
        """Public addresses confirmed by a dial-back."""

    def direct(self) -> list[multiaddr.Multiaddr]:
        """The listen addresses, wildcards expanded to the interfaces' addresses."""
        out: list[multiaddr.Multiaddr] = []
        for addr in self.transport():
            ip = _ip4(addr)
            if ip != "0.0.0.0":  # noqa: S104 (a comparison, not a bind)
                out.append(addr)
                continue
            rest = str(addr).removeprefix("/ip4/0.0.0.0")
            ips = self._interfaces()
            outside = [i for i in ips if not ipaddress.ip_address(i).is_loopback]
            for each in outside or ips:
                out.append(multiaddr.Multiaddr(f"/ip4/{each}{rest}"))
        return _unique(out)

    def __call__(self, candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
        """The host's ``addrs_factory``: ``candidates`` are py-libp2p's (listen addresses
        as they are, plus observed ones)."""
        if self.reachable is False and self.circuits:
            # a dial-back failed: our own addresses are of no use outside our LAN, and
            # peers behind other NATs would spend their dial timeouts on them first
            return list(self.circuits)
        direct = self.direct()
        known = {str(a) for a in self.transport()}
        observed = [
            a
            for a in candidates
            if str(a) not in known and _ip4(a) not in (None, "0.0.0.0")  # noqa: S104
        ]
        out = list(direct)
        if self.reachable:
            out += self.observed + observed
        return _unique(out + self.circuits)


def _unique(addrs: Iterable[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
    seen: set[str] = set()
    out = []
    for addr in addrs:
        if str(addr) not in seen:
            seen.add(str(addr))
            out.append(addr)
    return out
