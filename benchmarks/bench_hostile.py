"""An honest renter's job under each attack of issue 12, beside the unattacked time.

    python benchmarks/bench_hostile.py [--gpus "4xRTX 4090"]

One run, real processes on loopback: ``dgpu chain serve`` (escrow in LiteSVM), one
``dgpu provider start --executor local`` and, per row, one ``dgpu run --p2p`` of a
one-second job (``sh -c "sleep 1"``) started once the attack is under way. The attacks run
in this process (helpers shared with the hostile tests, ``tests/node/hostilekit.py``):
bad frames on /meshsub, 300 connections from fresh identities, 2,000 silent streams,
a JobRequest flood from one identity, 3 funded keys squatting, 20 fake offers in the DHT
(then the same renter again: it remembers the fakes). Provider CPU (share of one core
over the honest job's time), peak RSS and peak descriptors are read from /proc.

Figures only, no pass/fail. Caveats: the attackers, the renter and the provider share
this machine's cores, and on loopback the renter shares the attackers' IP address (so
per-IP limits hit it too).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared attack helpers

from tests.node.hostilekit import (
    ATTACKS,
    Attack,
    JobRun,
    ProcStats,
    World,
    fake_offers,
    honest_job,
    provider_world,
)

SETTLE_S = 2.0
"""Attack running this long before the honest job starts."""


@dataclass
class Row:
    name: str
    job: JobRun
    cpu_pct: float
    rss_mb: float
    fds: int
    fds_after: int
    attack_count: int


async def sample_peaks(world: World, peaks: list[ProcStats], stop: trio.Event) -> None:
    while not stop.is_set():
        peaks.append(world.stats())
        with trio.move_on_after(0.2):
            await stop.wait()


async def measure(
    world: World, name: str, attack: Attack | None, *, again: str | None = None
) -> list[Row]:
    """One row (two with ``again``: the same renter, data dir and attack, once more)."""
    stop = trio.Event()
    counted: list[int] = []
    async with trio.open_nursery() as nursery:
        if attack is not None:
            ready = trio.Event()

            async def run_attack() -> None:
                if attack is fake_offers:
                    counted.append(await fake_offers(world, stop, ready=ready))
                else:
                    ready.set()
                    counted.append(await attack(world, stop))

            nursery.start_soon(run_attack)
            with trio.move_on_after(90):
                await ready.wait()
            await trio.sleep(SETTLE_S)
        rows: list[Row] = []
        baseline = world.stats().fds
        for row_name in [name] if again is None else [name, again]:
            before, t0 = world.stats(), time.monotonic()
            peaks: list[ProcStats] = []
            sampled = trio.Event()
            nursery.start_soon(sample_peaks, world, peaks, sampled)
            job = await honest_job(world, label=name.split()[0])
            after, t1 = world.stats(), time.monotonic()
            sampled.set()
            cpu = 100 * (after.cpu_s - before.cpu_s) / max(t1 - t0, 1e-9)
            rss = max(p.rss_mb for p in [*peaks, after])
            rows.append(Row(row_name, job, cpu, rss, max(p.fds for p in [*peaks, after]), 0, 0))
        stop.set()
    fds_after = world.stats().fds
    for _ in range(80):  # let the node recover before the next row (up to 20 s)
        if not world.alive() or world.stats().fds <= baseline + 16:
            break
        await trio.sleep(0.25)
        fds_after = world.stats().fds
    for row in rows:
        row.fds_after = fds_after
        row.attack_count = counted[0] if counted else 0
    return rows


def print_rows(rows: list[Row], base: float) -> None:
    header = (
        f"{'attack':32} {'job s':>7} {'x base':>7} {'ok':>4} {'prov CPU%':>9}"
        f" {'RSS MB':>7} {'fds':>5} {'fds after':>9} {'attack n':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:32} {r.job.seconds:7.2f} {r.job.seconds / base:7.2f}"
            f" {'yes' if r.job.ok else 'NO':>4} {r.cpu_pct:9.0f} {r.rss_mb:7.1f}"
            f" {r.fds:5d} {r.fds_after:9d} {r.attack_count:9d}"
        )
    for r in rows:
        if not r.job.ok:
            print(f"\n{r.name}: {r.job.detail[-300:]}")


async def main(gpus: str) -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the attackers' libp2p noise
    with tempfile.TemporaryDirectory() as tmp:
        async with provider_world(Path(tmp), gpus=gpus) as world:
            idle = world.stats()
            print(
                f"provider pid {world.provider.pid}, {gpus}; idle: RSS {idle.rss_mb:.1f} MB,"
                f" {idle.fds} fds; job: sh -c 'sleep 1' via dgpu run --p2p"
            )
            await honest_job(world, label="warmup")
            rows = await measure(world, "unattacked", None)
            order = [
                "bad frames on /meshsub",
                "connection flood (300)",
                "stream flood (2000)",
                "request flood",
                "fake offers (20)",
                "squatting (3 funded keys)",
            ]
            for name in order:
                again = "fake offers, same renter again" if name.startswith("fake") else None
                rows += await measure(world, name, ATTACKS[name], again=again)
                if not world.alive():
                    print(f"the provider died during {name!r}")
                    break
            print_rows(rows, rows[0].job.seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default="4xRTX 4090")
    trio.run(main, parser.parse_args().gpus)
