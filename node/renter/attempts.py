"""Trying providers concurrently until one agrees: no unresponsive provider is waited on.

Offers are tried in rank order, several at once (issue 12, attack 6: a thousand fake
offers ranked first once made ``dgpu run`` spend 94 s timing out on three of them). The
shape is "happy eyeballs":

* the first offer is asked at once; the next one ``stagger_s`` later while none has
  answered, or at once when one fails; never more than ``concurrency`` in flight;
* each attempt is bounded by the renter's short ``attempt_timeout_s`` until its quote;
* the first quote to arrive may sign (the :class:`Race` is the agreement gate); the
  others wait their turn and stop unsigned once one agreement is countersigned — their
  providers see the stream close and release the quote's short hold, nothing else;
* every failure is remembered (:class:`~dgpu.node.renter.peers.PeerMemory`) so the next
  run puts that provider last.

So against F silent fakes ranked first, with concurrency K, timeout T and stagger S, the
honest offer after them is asked within about ``max(S, T / K) * F + T`` — and at once on
the next run, when the fakes are backing off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from dgpu.node.net.errors import NetError
from dgpu.node.renter.errors import JobRefused, Outraced, ProviderMisbehaved
from dgpu.node.renter.events import Declined, EventSink
from dgpu.node.renter.job import RenterJob
from dgpu.node.renter.peers import PeerMemory
from dgpu.protocol.errors import OfferError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptPolicy:
    concurrency: int = 8
    stagger_s: float = 0.5


class Race:
    """The agreement gate of one :func:`negotiate_first` (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = trio.Lock()  # FIFO: quotes sign in the order they arrived
        self.winner: RenterJob | None = None

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        async with self._lock:
            yield self.winner is None

    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        return self._turn()

    def won(self, job: RenterJob) -> None:
        self.winner = job


async def negotiate_first(
    jobs: Sequence[RenterJob],
    *,
    policy: AttemptPolicy,
    memory: PeerMemory,
    events: EventSink,
    cancel: trio.Event,
) -> tuple[RenterJob | None, Exception | None]:
    """The first of ``jobs`` (in rank order) whose provider countersigned an agreement, or
    None and the last error (a refusal when there was one: the most telling)."""
    race = Race()
    errors: list[Exception] = []
    agreed: list[RenterJob] = []  # negotiate() returned: the quote is stored
    changed = trio.Event()

    async def attempt(job: RenterJob, slots: trio.Semaphore, done: Callable[[], None]) -> None:
        provider = job.offer.provider
        try:
            await job.negotiate(race)
        except Outraced:
            return
        except OfferError as exc:
            events(Declined(job.offer, "no_capacity", str(exc)))
            errors.append(JobRefused("no_capacity", str(exc)))
        except JobRefused as exc:
            # an answer, not a failure: the provider is alive and said no
            events(Declined(job.offer, exc.code, exc.reason))
            errors.append(exc)
        except (NetError, ProviderMisbehaved) as exc:
            memory.failed(provider, f"{type(exc).__name__}: {exc}")
            events(Declined(job.offer, "unreachable", str(exc)))
            errors.append(exc)
        else:
            agreed.append(job)
            nursery.cancel_scope.cancel()  # the others stop, unsigned
        finally:
            slots.release()
            done()

    def progressed() -> None:
        nonlocal changed
        changed.set()
        changed = trio.Event()

    async def launch(slots: trio.Semaphore) -> None:
        for job in jobs:
            await slots.acquire()
            if race.winner is not None or cancel.is_set():
                return
            nursery.start_soon(attempt, job, slots, progressed)
            with trio.move_on_after(policy.stagger_s):
                await changed.wait()

    async with trio.open_nursery() as outer:

        async def watch_cancel() -> None:
            await cancel.wait()
            nursery.cancel_scope.cancel()

        outer.start_soon(watch_cancel)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(launch, trio.Semaphore(policy.concurrency))
        outer.cancel_scope.cancel()
    refusals = [e for e in errors if isinstance(e, JobRefused)]
    last = refusals[-1] if refusals else (errors[-1] if errors else None)
    return (agreed[0] if agreed else None), last
