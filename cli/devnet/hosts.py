"""``dgpu devnet --hosts TOPOLOGY``: the devnet spread over the hosts of a network lab
(:mod:`dgpu.cli.devnet.netlab`): chain, coordinator and bootstrap/relay on a public
server host reached by its address (not loopback), the providers on a host behind the
topology's NAT, the demo's renter on a host of its own.

The lab lives exactly as long as the devnet: :func:`open_hosts` removes every namespace,
link and iptables rule (the rules live inside the namespaces) when the devnet stops,
be it by Ctrl-C, SIGTERM, the end of ``--demo`` or a part that failed. The supervisor
stops the parts first, so no process outlives its namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

from dgpu.cli.devnet.netlab import Host, Lab, build_topology, lab_problem
from dgpu.cli.devnet.parts import Placement
from dgpu.cli.devnet.supervisor import DevnetError

HostsTopology = Literal["public", "nat", "double-nat", "symmetric"]
HOSTS_TOPOLOGIES: tuple[HostsTopology, ...] = get_args(HostsTopology)


class HostsUnavailable(DevnetError):
    """``--hosts`` cannot build its network lab on this machine (not root, tools missing)."""


def check_hosts(problem: str | None = None) -> None:
    """Refuse ``--hosts`` in words where no lab can be built (``problem``: for tests,
    an injected answer instead of asking this machine)."""
    problem = problem if problem is not None else lab_problem()
    if problem:
        raise HostsUnavailable(
            f"dgpu devnet --hosts builds hosts from Linux network namespaces and cannot"
            f" here: {problem}. Run it as root (e.g. with sudo), or without --hosts for"
            " a devnet on this machine's loopback."
        )


def _on(host: Host) -> tuple[str, ...]:
    return ("ip", "netns", "exec", host.ns)


@contextmanager
def open_hosts(topology: HostsTopology) -> Iterator[tuple[Lab, Placement]]:
    """Build the lab for ``topology``; where each part runs; everything removed after."""
    check_hosts()
    with Lab() as lab:
        topo = build_topology(lab, topology)
        yield (
            lab,
            Placement(
                server_ip=topo.server.ip,
                provider_ip=topo.provider.ip,
                server=_on(topo.server),
                provider=_on(topo.provider),
                renter=_on(topo.renter),
                topology=topology,
            ),
        )
