"""The client's address behind trusted reverse proxies (for per-client limits).

``X-Forwarded-For`` is a list each proxy appends the address it heard from to. Walking it
from the right, every address that is a trusted proxy is skipped; the first one that is not
is the client (what the nearest untrusted hop said). A request whose peer is not a trusted
proxy is its own client, whatever it writes in the header: anyone can write one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from starlette.types import Scope

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS: Final = 32  # a longer chain is abuse; its left part is not read


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        """``networks``: addresses or CIDR networks (``10.0.0.0/8``, ``::1``); a bad one
        raises ``ValueError`` (configuration is checked at start)."""
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def client_of(self, scope: Scope) -> str:
        """The client address of an ASGI request (``"unknown"`` without a peer)."""
        peer = scope.get("client")
        address = str(peer[0]) if peer else "unknown"
        if not self._networks or not self.trusts(address):
            return address
        hops: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                hops.extend(h.strip() for h in value.decode("latin-1").split(","))
        for hop in reversed(hops[-MAX_HOPS:]):
            if not hop:
                continue
            if not self.trusts(hop):
                return hop
            address = hop
        return address
