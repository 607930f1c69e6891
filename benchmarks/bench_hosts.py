"""Issue 13's figures across hosts and NATs, side by side with loopback, in one run.

    sudo .venv/bin/python benchmarks/bench_hosts.py [--tries 20] [--output-mib 64]

Needs root (network namespaces, ``dgpu.cli.devnet.netlab``) and Docker. Per row, a fresh
lab: ``dgpu chain serve`` and ``dgpu bootstrap serve`` (the relay) on the public server
host, ``dgpu provider start`` and one ``dgpu run --p2p`` on their hosts — real processes,
real Docker, the escrow in LiteSVM. Rows: ``loopback`` (all three on one host, talking
over its own addresses: the baseline), topologies 1-4 (``public``, ``nat``,
``double-nat``, ``symmetric``) and 5 (``lossy``: all public, the provider's link losing
1 % each way and delaying 40 ms each way, 80 ms round trip; netem, or on kernels without
it iptables loss and an NFQUEUE delayer, as ``Lab.netem`` says). Per row:

* **first container**: from starting ``dgpu run`` (discovery, negotiation, funding
  included) to Docker's ``start`` event of the job's container (label ``dgpu.job``);
* **output**: one job output of ``--output-mib`` MiB, the renter's own transfer time
  and the kind of connection it moved on (direct / hole-punched / relayed);
* **relay**: the relay process's CPU time (``/proc``) and the bytes its host received
  (``wan`` counter) during the job; CPU per active circuit = relay CPU-seconds over the
  output's transfer time, for rows whose output went through the relay (one circuit);
* **punches** (``double-nat``, ``symmetric``): ``--tries`` fresh renter identities, each
  a new libp2p node on a new port (new NAT mappings), connect to the provider through the
  relay and let the hole punch run; how many ended on a direct connection, and when.

Figures only, no pass/fail. Caveats: every host shares this machine's two cores and one
kernel, so links other than ``lossy``'s are loopback-fast and their figures are mostly
Python's costs; the NATs are Linux's (MASQUERADE: port-preserving, endpoint-independent
mapping; ``--random-fully`` for the symmetric one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the lab's swarm helpers

TICKS = os.sysconf("SC_CLK_TCK")
ROWS = ("loopback", "public", "nat", "double-nat", "symmetric", "lossy")
PUNCH_ROWS = ("double-nat", "symmetric")
# the renter's summary line (the console may wrap it)
_OUTPUTS = re.compile(
    r"outputs:.*?\sin\s+([0-9.]+)s\s+\(([0-9.]+)\s+MB/s.*?;\s+([\w-]+)\s+connection\)", re.S
)


@dataclass
class Row:
    name: str
    first_container_s: float = float("nan")
    job_s: float = float("nan")
    output_s: float = float("nan")
    output_mb_s: float = float("nan")
    connection: str = "?"
    relay_cpu_s: float = float("nan")
    relay_rx_mib: float = float("nan")
    punches: list[dict[str, Any]] = field(default_factory=list)
    shaping: str = ""
    error: str = ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def run_row(name: str, tries: int, output_mib: int) -> Row:
    import docker
    from dgpu.cli.devnet.netlab import Lab, Topology, build_topology
    from dgpu.protocol.identity import Identity

    from tests.hosts.swarm import START_TIMEOUT_S, open_swarm, read_json_line

    row = Row(name)
    with Lab() as lab, tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp_dir:
        tmp = Path(tmp_dir)
        if name == "loopback":
            host = lab.public("srv")
            topo = Topology("public", lab, host, host, host)
            extra: tuple[str, ...] = ("--listen", f"/ip4/{host.ip}/tcp/4002")
        else:
            topo = build_topology(lab, name)  # type: ignore[arg-type]
            extra = ()
        row.shaping = lab.link_shaping
        swarm = await open_swarm(topo, tmp)
        relay_pid = next(p.pid for p in lab.processes if "bootstrap" in list(p.args))  # type: ignore[arg-type]
        provider_id, renter_id = Identity.generate(), Identity.generate()
        await swarm.world.fund(provider_id)
        await swarm.world.fund(renter_id, tokens=10**13)
        provider = swarm.start_provider(provider_id, *extra)
        ready = read_json_line(provider, tmp / "provider.log", START_TIMEOUT_S)

        rx_before = int(topo.server.run("cat", "/sys/class/net/wan/statistics/rx_bytes"))
        cpu_before = cpu_seconds(relay_pid)
        since = datetime.datetime.now(datetime.UTC)
        started = time.time()
        code, result, stderr = await swarm.run_job(
            renter_id,
            f"head -c {output_mib << 20} /dev/urandom > /out/blob.bin",
            *("--max-output-mb", str(output_mib)),
        )
        row.job_s = time.time() - started
        row.relay_cpu_s = cpu_seconds(relay_pid) - cpu_before
        rx = int(topo.server.run("cat", "/sys/class/net/wan/statistics/rx_bytes")) - rx_before
        row.relay_rx_mib = rx / 2**20
        if code != 0 or result.get("state") != "succeeded":
            row.error = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}"
            return row
        client = docker.from_env()
        events = client.events(
            since=since,
            until=datetime.datetime.now(datetime.UTC),
            decode=True,
            filters={
                "type": "container",
                "event": "start",
                "label": f"dgpu.job={result['job_id']}",
            },
        )
        starts = [int(e["timeNano"]) / 1e9 for e in events]
        if starts:
            row.first_container_s = min(starts) - started
        if found := _OUTPUTS.search(stderr):
            row.output_s, row.output_mb_s = float(found[1]), float(found[2])
            row.connection = found[3]
        row.connection = result.get("connection", row.connection)

        if name in PUNCH_ROWS:
            circuits = [a for a in ready["multiaddrs"] if "/p2p-circuit" in a]
            row.punches = await punch_tries(topo.renter, swarm.bootstrap, ready, circuits, tries)
        provider.terminate()
        provider.wait(timeout=60)
        await swarm.world.chain.aclose()
    return row


async def punch_tries(
    renter: Any, bootstrap: str, ready: dict[str, Any], circuits: list[str], tries: int
) -> list[dict[str, Any]]:
    """``tries`` fresh renter nodes (one process, one after another) connect to the
    provider through the relay and let the hole punch settle; one JSON line each."""
    peer = ready["peer_id"]
    argv = [sys.executable, __file__, "--probe", bootstrap, peer, ",".join(circuits)]
    done = await trio.run_process(
        ["ip", "netns", "exec", renter.ns, *argv, "--tries", str(tries)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
    )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    if done.returncode != 0 and not lines:
        print(done.stderr.decode()[-2000:], file=sys.stderr)
    return lines


async def probe(bootstrap: str, peer: str, circuits: list[str], tries: int) -> None:
    """(inside the renter's namespace) one fresh node per try."""
    from dgpu.node.net.errors import PeerUnreachable
    from dgpu.node.net.interface import PeerRef
    from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
    from dgpu.protocol.identity import Identity

    config = Libp2pConfig(listen=("/ip4/0.0.0.0/tcp/0",), bootstrap=(bootstrap,))
    for n in range(tries):
        async with open_libp2p_network(Identity.generate(), config) as net:
            started = trio.current_time()
            try:
                kind = await net.settle_connection(PeerRef(peer, tuple(circuits)))
            except PeerUnreachable as exc:
                kind = f"unreachable: {exc}"
            seconds = trio.current_time() - started
            print(
                json.dumps({"try": n, "connection": kind, "seconds": round(seconds, 3)}), flush=True
            )


def report(rows: list[Row], tries: int, output_mib: int) -> None:
    base = next((r for r in rows if r.name == "loopback"), None)
    print(f"\n== jobs across hosts: first container, and a {output_mib} MiB output ==")
    print(
        f"{'row':<11}{'first container':>16}{'x loopback':>11}{'job':>8}"
        f"{'output':>9}{'MB/s':>8}  {'connection':<13}{'relay CPU':>10}{'relay rx':>10}"
    )
    for r in rows:
        if r.error:
            print(f"{r.name:<11} FAILED: {r.error}")
            continue
        ratio = r.first_container_s / base.first_container_s if base else float("nan")
        print(
            f"{r.name:<11}{r.first_container_s:>15.2f}s{ratio:>10.2f}x{r.job_s:>7.1f}s"
            f"{r.output_s:>8.2f}s{r.output_mb_s:>8.1f}  {r.connection:<13}"
            f"{r.relay_cpu_s:>9.2f}s{r.relay_rx_mib:>7.1f}MiB"
        )
    for r in rows:
        if r.connection == "relayed" and r.output_s > 0:
            print(
                f"relay CPU per active circuit ({r.name}):"
                f" {100 * r.relay_cpu_s / r.output_s:.0f} %"
                f" of a core while carrying {r.output_mb_s:.1f} MB/s"
                f" ({r.relay_cpu_s / (r.relay_rx_mib or 1) * 1000:.1f} ms CPU per MiB)"
            )
    for r in rows:
        if r.shaping:
            print(
                f"{r.name}: the provider's link shaped by {r.shaping}"
                " (80 ms round trip, 1 % loss each way)"
            )
    goal = [r for r in rows if r.name in ("nat", "double-nat", "symmetric") and not r.error]
    if base and goal:
        worst = max(r.first_container_s for r in goal) / base.first_container_s
        print(f"goal: NAT'd provider first container ≤ 2x loopback — worst NAT row {worst:.2f}x")
    print(f"\n== hole punching: {tries} fresh renter nodes per row ==")
    for r in rows:
        if not r.punches:
            continue
        ok = [p["seconds"] for p in r.punches if p["connection"] == "hole-punched"]
        bad = [p["seconds"] for p in r.punches if p["connection"] != "hole-punched"]
        kinds = sorted({p["connection"] for p in r.punches if p["connection"] != "hole-punched"})
        line = f"{r.name:<11} direct {len(ok)}/{len(r.punches)}"
        if ok:
            line += f"; connect+punch median {statistics.median(ok):.2f}s, max {max(ok):.2f}s"
        if bad:
            line += f"; the others {'/'.join(kinds)} after median {statistics.median(bad):.2f}s"
        print(line)


async def main(args: argparse.Namespace) -> None:
    rows = []
    for name in args.rows.split(","):
        print(f"-- {name} …", file=sys.stderr, flush=True)
        rows.append(await run_row(name, args.tries, args.output_mib))
    report(rows, args.tries, args.output_mib)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=20, help="hole punches per NAT row")
    parser.add_argument("--output-mib", type=int, default=64)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--probe", nargs=3, metavar=("BOOTSTRAP", "PEER", "CIRCUITS"))
    args = parser.parse_args()
    if args.probe:
        boot, peer, circuits = args.probe
        trio.run(probe, boot, peer, circuits.split(","), args.tries)
    else:
        trio.run(main, args)
