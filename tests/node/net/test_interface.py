"""One suite, both implementations: what node logic may rely on from any Network."""

from __future__ import annotations

import pytest
import trio
from dgpu.node.net import (
    MessageStream,
    NetError,
    Network,
    NetworkClosed,
    PeerRef,
    ProtocolNotSupported,
    StreamClosed,
)
from dgpu.node.net.framing import encode_frame, encode_uvarint
from dgpu.node.net.libp2p import Libp2pNetwork
from dgpu.node.net.memory import open_memory_network
from dgpu.node.net.records import offer_key
from dgpu.protocol import Identity, OfferError, encode
from dgpu.protocol.messages import JobStatus
from dgpu.protocol.offers import offer_bytes

from tests.node.net.conftest import Cluster
from tests.node.net.helpers import expect_cut_off, forged, offer_of, status

ECHO = "/dgpu/test-echo/1"
BOOM = "/dgpu/test-boom/1"


async def echo(stream: MessageStream, peer: str) -> None:
    """Answers every JobStatus with one naming the caller, until the caller closes."""
    while True:
        try:
            message = await stream.receive_as(JobStatus)
        except StreamClosed:
            return
        await stream.send(status(detail=f"{peer[-6:]}:{message.detail}"))


async def boom(stream: MessageStream, peer: str) -> None:
    await stream.receive()
    raise RuntimeError("handler bug")


async def ask(net: Network, peer: str, detail: str) -> str:
    reply = await net.request(peer, ECHO, status(detail), timeout=10)
    assert isinstance(reply, JobStatus)
    return reply.detail


async def test_advertise_then_find(cluster: Cluster) -> None:
    provider, renter = cluster.net(1), cluster.net(2)
    offer = offer_of(cluster.identities[1], now=provider.now(), addrs=provider.listen_addrs)
    await provider.advertise(offer)
    assert await renter.find_offers("H100", timeout=15) == [offer]
    assert await renter.find_offers("A100", timeout=15) == []


async def test_find_returns_the_newest_offer_once(cluster: Cluster) -> None:
    provider, renter = cluster.net(1), cluster.net(2)
    old = offer_of(cluster.identities[1], now=provider.now() - 10, price=5)
    new = offer_of(cluster.identities[1], now=provider.now(), price=7)
    await provider.advertise(old)
    assert await renter.find_offers("H100", timeout=15) == [old]
    await provider.advertise(new)
    assert await renter.find_offers("H100", timeout=15) == [new]


async def test_advertise_refuses_foreign_or_expired_offers(cluster: Cluster) -> None:
    net = cluster.net(1)
    with pytest.raises(OfferError):
        await net.advertise(offer_of(cluster.identities[2], now=net.now()))
    with pytest.raises(OfferError):
        await net.advertise(offer_of(cluster.identities[1], now=net.now() - 600, ttl_s=300))


@pytest.mark.parametrize("flaw", ["forged", "expired", "oversized", "other key", "other model"])
async def test_find_refuses_bad_records(cluster: Cluster, flaw: str) -> None:
    """Records planted past the servers' validation are still refused by the reader."""
    owner, renter = cluster.identities[1], cluster.net(2)
    now = renter.now()
    good = offer_of(owner, now=now)
    value = {
        "forged": offer_bytes(forged(offer_of(cluster.identities[0], now=now), owner)),
        "expired": offer_bytes(offer_of(owner, now=now - 1000, ttl_s=500)),
        "oversized": offer_bytes(good) + b"\x00" * 5000,
        "other key": offer_bytes(offer_of(cluster.identities[0], now=now)),
        "other model": offer_bytes(offer_of(owner, now=now, model="A100")),
    }[flaw]
    cluster.plant_offer_record(owner.peer_id, value, "H100")
    assert await renter.find_offers("H100", timeout=15) == []


@pytest.mark.parametrize("flaw", ["forged", "expired", "oversized", "other key"])
async def test_dht_servers_refuse_bad_records(cluster: Cluster, flaw: str) -> None:
    owner, now = cluster.identities[1], cluster.net(1).now()
    value = {
        "forged": offer_bytes(forged(offer_of(cluster.identities[0], now=now), owner)),
        "expired": offer_bytes(offer_of(owner, now=now - 1000, ttl_s=500)),
        "oversized": offer_bytes(offer_of(owner, now=now)) + b"\x00" * 5000,
        "other key": offer_bytes(offer_of(cluster.identities[0], now=now)),
    }[flaw]
    key = offer_key(owner.peer_id)
    assert not await cluster.store_record_at(1, 2, key, value)
    # the same path stores a good record
    assert await cluster.store_record_at(1, 2, key, offer_bytes(offer_of(owner, now=now)))


async def test_request_response_and_a_long_stream(cluster: Cluster) -> None:
    server, client = cluster.net(1), cluster.net(2)
    server.serve(ECHO, echo)
    reply = await client.request(server.peer_id, ECHO, status("hello"), timeout=10)
    assert reply == status(f"{client.peer_id[-6:]}:hello")
    async with client.open_stream(PeerRef(server.peer_id, tuple(server.listen_addrs)), ECHO) as s:
        for i in range(20):
            await s.send(status(str(i)))
            assert (await s.receive_as(JobStatus, timeout=10)).detail.endswith(f":{i}")


async def test_unknown_protocol_is_refused(cluster: Cluster) -> None:
    with pytest.raises(ProtocolNotSupported):
        await cluster.net(2).request(
            cluster.net(1).peer_id, "/dgpu/nothing/1", status(), timeout=10
        )


async def test_a_raising_handler_does_not_kill_the_node(cluster: Cluster) -> None:
    server, client = cluster.net(1), cluster.net(2)
    server.serve(BOOM, boom)
    server.serve(ECHO, echo)
    for _ in range(3):
        with pytest.raises(NetError):
            await client.request(server.peer_id, BOOM, status(), timeout=10)
    assert await ask(client, server.peer_id, "ok") == f"{client.peer_id[-6:]}:ok"
    other = cluster.net(0)
    assert await ask(other, server.peer_id, "x") == f"{other.peer_id[-6:]}:x"


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff" * 12, id="endless-varint"),
        pytest.param(encode_uvarint(1 << 30), id="huge-length-prefix"),
        pytest.param(encode_uvarint(65 * 1024) + b"x" * 100, id="over-cap-prefix"),
        pytest.param(encode_frame(b"\xc1not msgpack"), id="undecodable-frame"),
        pytest.param(encode_frame(b"\x80"), id="not-a-message"),
        pytest.param(b"\x00", id="empty-frame"),
    ],
)
async def test_garbage_frames_are_cut_off(cluster: Cluster, garbage: bytes) -> None:
    server = cluster.net(1)
    server.serve(ECHO, echo)
    raw = await cluster.raw_stream(2, 1, ECHO)
    await raw.send_all(garbage)
    await expect_cut_off(raw)
    assert (await ask(cluster.net(0), server.peer_id, "still")).endswith(":still")


async def test_a_half_frame_is_cut_off_at_the_read_timeout(cluster: Cluster) -> None:
    server = cluster.net(1)
    server.serve(ECHO, echo)
    payload = encode(status("half"))
    raw = await cluster.raw_stream(2, 1, ECHO)
    await raw.send_all(encode_uvarint(len(payload)) + payload[:3])
    # While that peer stalls, the server keeps serving the others.
    assert (await ask(cluster.net(0), server.peer_id, "other")).endswith(":other")
    await expect_cut_off(raw)


async def test_gossip_delivers_valid_offers_only(cluster: Cluster) -> None:
    listener, provider = cluster.net(0), cluster.net(1)
    offer = offer_of(cluster.identities[1], now=provider.now())
    bad = forged(
        offer_of(cluster.identities[2], now=provider.now(), price=99), cluster.identities[1]
    )
    async with listener.subscribe_offers() as offers:
        with trio.fail_after(20):
            # the gossip mesh forms within a heartbeat or two: re-publish until it arrives
            async with trio.open_nursery() as nursery:

                async def publish_until_received() -> None:
                    while True:
                        await cluster.gossip_raw(1, offer_bytes(bad))
                        await cluster.gossip_raw(1, b"\x93junk")
                        await provider.advertise(offer)
                        await trio.sleep(0.5)

                nursery.start_soon(publish_until_received)
                received = await offers.__anext__()
                nursery.cancel_scope.cancel()
    assert received == offer


async def test_a_closed_network_refuses_calls(cluster: Cluster) -> None:
    late = Identity.from_label("late")
    if cluster.hub is not None:
        async with open_memory_network(cluster.hub, late) as net:
            pass
    else:
        from dgpu.node.net.libp2p import open_libp2p_network

        async with open_libp2p_network(late) as net:  # type: ignore[assignment]
            pass
    with pytest.raises(NetworkClosed):
        await net.find_offers("H100")
    with pytest.raises(NetworkClosed):
        net.serve(ECHO, echo)


async def test_handlers_see_the_address_a_stream_comes_from(cluster: Cluster) -> None:
    """Per-address limits above the network (unfunded holds) need it: libp2p gives the
    connection's remote IP; the memory network gives what the peer was configured with
    (nothing here)."""
    server, client = cluster.net(1), cluster.net(2)
    seen: list[str] = []

    async def record(stream: MessageStream, peer: str) -> None:
        seen.append(stream.remote_ip)
        await stream.send(await stream.receive())

    server.serve("/dgpu/test-remote-ip/1", record)
    await client.request(server.peer_id, "/dgpu/test-remote-ip/1", status("x"), timeout=10)
    assert seen == (["127.0.0.1"] if isinstance(server, Libp2pNetwork) else [""])
