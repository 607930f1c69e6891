"""Behind a reverse proxy: per-client limits count the client the trusted proxy names in
``X-Forwarded-For``, never the proxy itself; an untrusted peer's header is ignored."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from dgpu.coordinator.config import RateLimit
from dgpu.coordinator.proxy import TrustedProxies

from tests.coordinator.conftest import make_config, running_server

TIGHT = RateLimit(per_second=0.001, burst=2)


def _statuses(url: str, forwarded_for: str, n: int) -> list[int]:
    with httpx.Client(base_url=url, timeout=30) as http:
        return [
            http.get("/api/v1/prices", headers={"X-Forwarded-For": forwarded_for}).status_code
            for _ in range(n)
        ]


def test_a_trusted_proxy_is_seen_through(
    tmp_path_factory: pytest.TempPathFactory, fresh_store: Path | str
) -> None:
    database_url = fresh_store if isinstance(fresh_store, str) else None
    config = make_config(
        tmp_path_factory.mktemp("proxy"),
        per_ip_limit=TIGHT,
        trusted_proxies=("127.0.0.0/8",),
        database_url=database_url,
    )
    # running_server's own start-up check spent one token of 127.0.0.1's bucket
    with running_server(config) as server:
        assert _statuses(server.url, "198.51.100.7", 3) == [200, 200, 429]
        # another client behind the same proxy has its own allowance; a spoofed left part
        # of the chain is not believed (the proxy appended the real client on the right)
        assert _statuses(server.url, "203.0.113.9, 198.51.100.8", 2) == [200, 200]
        assert _statuses(server.url, "203.0.113.9, 198.51.100.7", 1) == [429]


def test_an_untrusted_peer_cannot_choose_its_address(
    tmp_path_factory: pytest.TempPathFactory, fresh_store: Path | str
) -> None:
    database_url = fresh_store if isinstance(fresh_store, str) else None
    config = make_config(
        tmp_path_factory.mktemp("noproxy"), per_ip_limit=TIGHT, database_url=database_url
    )
    with running_server(config) as server:  # the start-up check took one of two tokens
        assert _statuses(server.url, "198.51.100.1", 1) == [200]
        assert _statuses(server.url, "198.51.100.2", 1) == [429]  # same peer, same bucket


def test_proxy_chain_parsing() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "::1"])
    scope = {"client": ("10.1.2.3", 5000), "headers": [(b"x-forwarded-for", b"1.2.3.4, 10.9.9.9")]}
    assert proxies.client_of(scope) == "1.2.3.4"
    assert proxies.client_of({"client": ("192.0.2.1", 1), "headers": scope["headers"]}) == (
        "192.0.2.1"
    )
    assert proxies.client_of({"client": ("::1", 1), "headers": []}) == "::1"
    with pytest.raises(ValueError, match="does not appear"):
        TrustedProxies(["not-an-address"])
