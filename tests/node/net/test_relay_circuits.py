"""The relay's book of open circuits (``relay._PerCircuit``): py-libp2p stores a
circuit's streams under the peer ID alone, so one circuit's clean-up closed the latest
other circuit to the same peer. Here each relaying task — the CONNECT handler and the
tasks it starts, as trio runs them — sees its own circuit's entry only. (End to end, over
a real relay under a flood: ``tests/hosts/test_relay_flood.py``.)"""

from __future__ import annotations

import trio
import trio.lowlevel
from dgpu.node.net.libp2p.relay import _CIRCUIT, _PerCircuit

PEER = "12D3KooWpeer"


async def test_each_circuit_to_one_peer_cleans_up_only_its_own_streams() -> None:
    book = _PerCircuit()
    first, second = object(), object()
    seen: dict[str, object] = {}
    opened = trio.Event()
    registered: list[str] = []

    async def circuit(name: str, hop: object, end: trio.Event) -> None:
        token = _CIRCUIT.set(hop)  # type: ignore[arg-type]
        try:
            book[PEER] = (hop, None)  # type: ignore[assignment]

            async def relaying() -> None:  # a child task, as the library's relay loops
                await end.wait()
                if PEER in book:
                    seen[name] = book[PEER][0]
                    del book[PEER]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(relaying)
                registered.append(name)
                if len(registered) == 2:
                    opened.set()
        finally:
            _CIRCUIT.reset(token)
            book.forget(hop)  # type: ignore[arg-type]

    first_ends, second_ends = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(circuit, "first", first, first_ends)
        await trio.lowlevel.checkpoint()
        nursery.start_soon(circuit, "second", second, second_ends)
        with trio.fail_after(5):
            await opened.wait()
        assert len(book) == 2  # two entries under one peer ID
        first_ends.set()  # the earlier circuit ends first: the later one must stay
        await trio.sleep(0.01)
        assert len(book) == 1
        second_ends.set()
    assert seen == {"first": first, "second": second}
    assert len(book) == 0


def test_what_a_failed_circuit_left_is_forgotten() -> None:
    book = _PerCircuit()
    hop = object()
    token = _CIRCUIT.set(hop)  # type: ignore[arg-type]
    book[PEER] = (hop, None)  # type: ignore[assignment]
    _CIRCUIT.reset(token)
    assert PEER not in book  # another task does not see it
    book.forget(hop)  # type: ignore[arg-type]
    assert len(book) == 0
