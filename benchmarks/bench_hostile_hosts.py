"""The connection flood of issue 12 (attack 2) with the attacker on a host of its own.

    sudo python benchmarks/bench_hostile_hosts.py [--connections 300]

On loopback (``bench_hostile.py``) the honest renter shares the attackers' IP address, so
the provider's per-IP cap (32 inbound connections) shuts it out with them: the job failed.
Here the lab (``cli/devnet/netlab.py``: network namespaces, needs root) puts the chain and
the bootstrap peer on a server host, the provider and the renter on hosts of their own, and
the attacker in the root namespace (its own address on the lab's "internet"). One row per
case: the honest ``dgpu run --p2p`` of a one-second job (``--executor local``) unattacked,
then while ``--connections`` connections from fresh identities are held, then after.
Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers

from dgpu.cli.devnet.netlab import Lab, build_topology, lab_problem
from dgpu.protocol.identity import Identity

from tests.hosts.swarm import START_TIMEOUT_S, Swarm, open_swarm, read_json_line
from tests.node.hostilekit import RENTER_TOKENS, flood_connections

SETTLE_S = 2.0


async def timed_job(swarm: Swarm, renter: Identity) -> tuple[bool, float, str]:
    (swarm.tmp / "renter.json").unlink(missing_ok=True)  # run_job writes the key each time
    start = time.monotonic()
    code, result, stderr = await swarm.run_job(renter, "sleep 1")
    ok = code == 0 and result.get("state") == "succeeded"
    return ok, time.monotonic() - start, "" if ok else (stderr[-300:] or str(result))


async def main(connections: int) -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the attackers' libp2p noise
    with tempfile.TemporaryDirectory() as tmp, Lab() as lab:
        topo = build_topology(lab, "public")
        swarm = await open_swarm(topo, Path(tmp))
        provider_id, renter_id = Identity.generate(), Identity.generate()
        await swarm.world.fund(provider_id)
        await swarm.world.fund(renter_id, tokens=RENTER_TOKENS)
        proc = swarm.start_provider(provider_id, "--executor", "local")
        ready = read_json_line(proc, Path(tmp) / "provider.log", START_TIMEOUT_S)
        target = next(a for a in ready["multiaddrs"] if f"/ip4/{topo.provider.ip}/" in a)
        print(
            f"provider {topo.provider.ip}, renter {topo.renter.ip}, attacker"
            f" {lab.address(254)} (root namespace); job: sh -c 'sleep 1' via dgpu run --p2p"
        )
        await timed_job(swarm, renter_id)  # warm-up
        rows: list[tuple[str, bool, float, str, int]] = [
            ("unattacked", *await timed_job(swarm, renter_id), 0)
        ]
        stop = trio.Event()
        admitted: list[int] = []
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                admitted.append(await flood_connections(target, stop, count=connections))

            nursery.start_soon(flood)
            await trio.sleep(SETTLE_S + connections / 100)
            flooded = await timed_job(swarm, renter_id)
            stop.set()
        count = admitted[0] if admitted else 0
        rows.append((f"connection flood ({connections})", *flooded, count))
        await trio.sleep(SETTLE_S)
        rows.append(("after the flood", *await timed_job(swarm, renter_id), 0))
        base = rows[0][2]
        print(f"{'case':28} {'job s':>7} {'x base':>7} {'ok':>4} {'admitted':>9}")
        for name, ok, seconds, detail, count in rows:
            print(
                f"{name:28} {seconds:7.2f} {seconds / base:7.2f} {'yes' if ok else 'NO':>4}"
                f" {count:9d}"
            )
            if not ok:
                print(f"  {detail}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    problem = lab_problem()
    if problem is not None:
        sys.exit(f"cannot build the lab here: {problem}")
    trio.run(main, parser.parse_args().connections)
