"""The coordinator's libp2p prober: a libp2p node on trio in a thread of its own, behind the
coordinator's asyncio :class:`~dgpu.coordinator.admission.Prober` seam (the coordinator may
not import the node; only the CLI wires the two)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import trio
from dgpu.coordinator.admission import ProbeResult
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.net.libp2p.reachability import ReachabilityProber
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0


class ProberStartError(DgpuError):
    """The prober's libp2p node did not start."""


class ThreadedProber:
    """:class:`~dgpu.coordinator.admission.Prober` over a libp2p node run by
    :func:`running_prober` (every probe a task in that node's nursery)."""

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._prober: ReachabilityProber | None = None
        self.peer_id = ""

    async def probe(self, provider: bytes, multiaddrs: Sequence[str]) -> ProbeResult:
        if self._token is None or self._nursery is None:
            return ProbeResult(False, "the prober is not running")
        done: concurrent.futures.Future[ProbeResult] = concurrent.futures.Future()
        try:
            self._token.run_sync_soon(
                self._nursery.start_soon, self._run, provider, tuple(multiaddrs), done
            )
        except trio.RunFinishedError:
            return ProbeResult(False, "the prober has stopped")
        return await asyncio.wrap_future(done)

    async def _run(
        self,
        provider: bytes,
        multiaddrs: tuple[str, ...],
        done: concurrent.futures.Future[ProbeResult],
    ) -> None:
        assert self._prober is not None
        try:
            reach = await self._prober.probe(provider, multiaddrs)
            result = ProbeResult(reach.reachable, reach.detail)
        except Exception as exc:  # a probe's boundary: report it, never end the node
            log.warning("probe of a provider failed", exc_info=True)
            result = ProbeResult(False, f"probe failed: {exc}")
        if done.set_running_or_notify_cancel():  # False: the asking side gave up
            done.set_result(result)


@contextmanager
def running_prober(
    config: Libp2pConfig, *, timeout_s: float, identity: Identity | None = None
) -> Iterator[ThreadedProber]:
    """A prober whose libp2p node (a fresh identity unless given) runs in a thread until
    the block ends."""
    prober = ThreadedProber()
    ready = threading.Event()
    failure: list[BaseException] = []
    stop: list[trio.Event] = []

    async def main() -> None:
        async with (
            open_libp2p_network(identity or Identity.generate(), config) as net,
            trio.open_nursery() as nursery,
        ):
            prober._prober = ReachabilityProber(net, timeout_s=timeout_s)
            prober._nursery = nursery
            prober.peer_id = net.peer_id
            prober._token = trio.lowlevel.current_trio_token()
            stop.append(trio.Event())
            ready.set()
            await stop[0].wait()
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the starting thread
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="libp2p-prober", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S) or failure:
        raise ProberStartError(
            f"the coordinator's libp2p prober did not start: {failure[0] if failure else 'timeout'}"
        )
    try:
        yield prober
    finally:
        token = prober._token
        prober._token = None
        if token is not None and stop:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(stop[0].set)
        thread.join(30)
