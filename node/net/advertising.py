"""Keep an offer advertised: re-sign and re-publish it well before it expires."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import trio
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import Network
from dgpu.protocol.messages import Offer

if TYPE_CHECKING:  # trio_typing's stubs shadow trio's own annotations for mypy
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


async def keep_advertising(
    network: Network,
    make_offer: Callable[[int], Offer],
    *,
    refresh_fraction: float = 0.5,
    retry_s: float = 10.0,
    task_status: TaskStatus[Offer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Advertise ``make_offer(now)`` and re-advertise a fresh one each time
    ``refresh_fraction`` of its lifetime has passed, forever (cancel to stop).

    ``make_offer`` gets :meth:`Network.now` and returns a signed offer (typically
    :func:`dgpu.protocol.offers.make_offer` with ``multiaddrs=network.listen_addrs``).
    Started with ``await nursery.start(keep_advertising, net, make)``, it returns the
    first offer once it has been advertised. A network error is logged and retried after
    ``retry_s``; an invalid offer (a bug of the caller) raises.
    """
    if not 0 < refresh_fraction < 1:
        raise ValueError("refresh_fraction must be between 0 and 1")
    started = False
    while True:
        now = network.now()
        offer = make_offer(now)
        try:
            await network.advertise(offer)
        except NetError:
            log.warning(
                "advertising %s failed; retrying in %gs", offer.gpu_model, retry_s, exc_info=True
            )
            await trio.sleep(retry_s)
            continue
        if not started:
            task_status.started(offer)
            started = True
        lifetime = offer.expires_at - network.now()
        await trio.sleep(max(1.0, lifetime * refresh_fraction))
