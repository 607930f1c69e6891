"""py-libp2p's noise in real node processes (``quiet``), where it comes from: peers that
vanish. Node processes log as ``dgpu`` does at default verbosity; two of them are killed
(no goodbye: as a crash or a pulled cable); the others then search the DHT, which names
the dead ones, and dial them. A control node with the library's own log settings shows
that this provokes the library's records; the quiet nodes show none of them."""

from __future__ import annotations

import os
import re
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO

import pytest
import trio
from dgpu.node.net.libp2p.probe import ProbeProcess

pytestmark = pytest.mark.slow

MODEL = "QUIET"
OURS = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) dgpu\.")


async def test_peers_that_vanish_leave_no_library_lines_in_a_quiet_node_log(
    tmp_path: Path,
) -> None:
    def log_file(name: str) -> IO[bytes]:
        return stack.enter_context((tmp_path / f"{name}.log").open("wb"))

    async with AsyncExitStack() as stack:
        boot = await stack.enter_async_context(
            ProbeProcess.spawn("qs-boot", stderr=log_file("boot"), offer_book=False)
        )
        nodes: dict[str, ProbeProcess] = {}
        for name in ("quiet-0", "quiet-1", "quiet-2", "loud", "dead-0", "dead-1"):
            nodes[name] = await stack.enter_async_context(
                ProbeProcess.spawn(
                    f"qs-{name}-{os.getpid()}",
                    bootstrap=(boot.multiaddr,),
                    stderr=log_file(name),
                    offer_book=False,  # the DHT names the dead providers
                    quiet=name != "loud",
                )
            )
        async with trio.open_nursery() as nursery:
            for node in nodes.values():
                nursery.start_soon(lambda n=node: n.command("advertise", model=MODEL))
        for name in ("dead-0", "dead-1"):
            nodes[name].process.send_signal(signal.SIGKILL)
            await nodes[name].process.wait()
        for name in ("quiet-0", "quiet-1", "quiet-2", "loud"):
            answer = await nodes[name].command("find", model=MODEL, limit=10, timeout=20)
            assert nodes["quiet-0"].peer_id in answer["peers"]
        for name in ("quiet-0", "quiet-1", "quiet-2", "loud"):
            await nodes[name].stop()
        await boot.stop()

    loud = (tmp_path / "loud.log").read_text()
    assert loud.strip(), "the library logged nothing: the test provoked nothing"
    for name in ("boot", "quiet-0", "quiet-1", "quiet-2"):
        text = (tmp_path / f"{name}.log").read_text()
        # only our own records (none are expected here), no library line, no traceback
        other = [line for line in text.splitlines() if not OURS.match(line)]
        assert not other, f"{name} logged {other[:3]}"
