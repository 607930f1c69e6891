"""Hosts, NAT routers and lossy links on one machine, from Linux network namespaces.

A :class:`Lab` owns everything it creates (namespaces, the links inside them, the
processes it started in them) and removes all of it in :meth:`Lab.close`, which the
fixtures call from a ``finally``::

    root ns ── veth "dgT<id>" 198.18.X.254 ──┐   (the test's own seat on the "internet":
                                             │    funding and balance checks over RPC)
    <id>-inet: bridge br0 ───────────────────┤   the "internet" (no uplink, no route out)
      public host  <id>-srv   198.18.X.2  ───┤
      router       <id>-nat1  198.18.X.11 ───┘  MASQUERADE on wan, stateful firewall
         └─ lan 10.X.1.0/24: <id>-prov 10.X.1.2 (default route via the router)

Addresses come from the benchmarking range 198.18.0.0/15, one /24 per lab (X is drawn
per lab and checked against the root namespace's routes, so labs of parallel test runs
do not collide); LANs are private ranges that only exist inside the lab's namespaces.
The root namespace gets one address in the lab's /24 and no other route: nothing it
sends to the lab can be forwarded anywhere else, and the lab has no route out.

Routers drop unsolicited inbound packets like a home router (only conntrack-established
flows come back in). ``kind="eim"`` is Linux's plain MASQUERADE: endpoint-independent,
port-preserving mapping (what DCUtR needs); ``kind="symmetric"`` adds
``--random-fully``: a new random port per connection, hence per destination.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dgpu.protocol.errors import DgpuError

NatKind = Literal["eim", "symmetric"]
_SHAPER_START_S = 20.0
"""How long a packet delayer may take to bind its queue (a Python start on a busy box)."""


class LabError(DgpuError):
    """The lab could not be built here (not root, tools missing, a command failed)."""


def lab_problem() -> str | None:
    """Why this machine cannot build a lab, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / iptables)"
    return None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class Host:
    """A machine of the lab: its own namespace, one address."""

    lab: Lab
    name: str
    ns: str
    ip: str
    """The address of its only interface (public, or on its LAN)."""
    router: Router | None = None

    @property
    def public_ip(self) -> str:
        """Where the internet sees it come from (its router's wan address behind a NAT)."""
        return self.router.ip if self.router is not None else self.ip

    def run(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.ns, *argv)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside this host (``ip netns exec`` execs into it: the Popen's
        pid is the program's own); the lab stops it on close if it still runs."""
        proc: subprocess.Popen[str] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv], text=True, **kwargs
        )
        self.lab.processes.append(proc)
        return proc


@dataclass
class Router(Host):
    kind: NatKind = "eim"
    lan_prefix: str = ""
    lan_hosts: int = 0


@dataclass
class Lab:
    """One lab; build it with the methods below, always :meth:`close` it."""

    id: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    subnet: int = 0
    _hosts: int = 1
    _lans: int = 0
    _root_link: str = ""
    link_shaping: str = ""
    """What :meth:`netem` applied (``"netem"`` or ``"loss+nfqueue-delay"``)."""
    shapers: list[subprocess.Popen[str]] = field(default_factory=list)
    """Packet delayers (:mod:`dgpu.cli.devnet.delayer`), stopped after the processes."""

    def __post_init__(self) -> None:
        problem = lab_problem()
        if problem is not None:
            raise LabError(problem)
        try:
            self._build_internet()
        except BaseException:  # Ctrl-C or a failed command half-way: nothing left
            self.close()
            raise

    def _build_internet(self) -> None:
        self.subnet = self._free_subnet()
        self.inet = self._namespace("inet")
        _run("ip", "netns", "exec", self.inet, "ip", "link", "add", "br0", "type", "bridge")
        _run("ip", "netns", "exec", self.inet, "ip", "link", "set", "br0", "up")
        # the test's own seat: only an address in the lab's /24, no forwarding
        self._root_link = f"dgT{self.id}"
        _run("ip", "link", "add", self._root_link, "type", "veth", "peer", "name", "root",
             "netns", self.inet)  # fmt: skip
        self._attach("root")
        _run("ip", "addr", "add", f"{self.address(254)}/24", "dev", self._root_link)
        _run("ip", "link", "set", self._root_link, "up")

    # -- building ---------------------------------------------------------------------
    def address(self, host: int) -> str:
        return f"198.18.{self.subnet}.{host}"

    def public(self, name: str) -> Host:
        """A host with a public address on the internet bridge."""
        ns = self._namespace(name)
        self._hosts += 1
        ip = self.address(self._hosts)
        self._wan(ns, name, ip)
        return Host(self, name, ns, ip)

    def nat(self, name: str, kind: NatKind = "eim") -> Router:
        """A home/office router: public wan address, a private LAN, MASQUERADE."""
        ns = self._namespace(name)
        self._hosts += 1
        ip = self.address(self._hosts + 9)
        self._wan(ns, name, ip)
        self._lans += 1
        router = Router(self, name, ns, ip, kind=kind, lan_prefix=f"10.{self.subnet}.{self._lans}")
        x = ("ip", "netns", "exec", ns)
        _run(*x, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masq = ["-j", "MASQUERADE"] + (["--random-fully"] if kind == "symmetric" else [])
        _run(*x, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", *masq)
        # stateful firewall: from the wan side only replies come in
        _run(*x, "iptables", "-P", "FORWARD", "DROP")
        _run(*x, "iptables", "-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT")
        _run(*x, "iptables", "-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack",
             "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
        _run(*x, "iptables", "-P", "INPUT", "DROP")
        _run(*x, "iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
        _run(*x, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate",
             "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
        _run(*x, "iptables", "-A", "INPUT", "-i", "lan", "-j", "ACCEPT")
        _run(*x, "ip", "link", "add", "lan", "type", "veth", "peer", "name", "up0")
        _run(*x, "ip", "addr", "add", f"{router.lan_prefix}.1/24", "dev", "lan")
        _run(*x, "ip", "link", "set", "lan", "up")
        return router

    def behind(self, router: Router, name: str) -> Host:
        """A machine on ``router``'s LAN (default route through it)."""
        ns = self._namespace(name)
        router.lan_hosts += 1
        ip = f"{router.lan_prefix}.{router.lan_hosts + 1}"
        # one LAN host per router is all the topologies need; the veth made with the
        # router moves into the first host
        if router.lan_hosts > 1:
            raise LabError("one host per LAN")
        _run("ip", "netns", "exec", router.ns, "ip", "link", "set", "up0", "netns", ns)
        x = ("ip", "netns", "exec", ns)
        _run(*x, "ip", "link", "set", "up0", "name", "eth0")
        _run(*x, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        _run(*x, "ip", "link", "set", "eth0", "up")
        _run(*x, "ip", "route", "add", "default", "via", f"{router.lan_prefix}.1")
        return Host(self, name, ns, ip, router=router)

    def netem(self, host: Host, *, delay_ms: int, loss_pct: float) -> str:
        """Delay and loss on ``host``'s link to the internet, both directions: each packet
        waits ``delay_ms`` and is lost with ``loss_pct`` % probability each way, so a round
        trip over the link gains 2 x ``delay_ms``. Returns what was applied:

        * ``"netem"``: ``tc qdisc netem`` on both ends of the link (the edge's ``wan`` and
          its port on the internet bridge);
        * ``"loss+nfqueue-delay"`` on kernels without ``sch_netem`` (this kind of VM, and
          CI's): the internet bridge passes its traffic through iptables
          (``br_netfilter``), where the link's port loses packets by iptables'
          ``statistic`` match and parks the rest in an NFQUEUE that
          :mod:`dgpu.cli.devnet.delayer` releases ``delay_ms`` later. Shaping on the bridge
          rather than in the host keeps it in the network: the host's sockets see neither
          the drop (iptables on ``OUTPUT`` would fail the send locally) nor the parked
          packets (TCP small queues would throttle a sender whose own packets wait in a
          local queue). What it does not do like netem is in the delayer's docstring.
        """
        edge = host.router or host
        port = f"p-{edge.name}"
        spec = ["delay", f"{delay_ms}ms", "loss", f"{loss_pct}%"]
        try:
            _run("ip", "netns", "exec", edge.ns, "tc", "qdisc", "add", "dev", "wan", "root",
                 "netem", *spec)  # fmt: skip
        except LabError as exc:
            if "unknown" not in str(exc):
                raise
            return self._shape_on_bridge(port, delay_ms=delay_ms, loss_pct=loss_pct)
        _run("ip", "netns", "exec", self.inet, "tc", "qdisc", "add", "dev", port, "root",
             "netem", *spec)  # fmt: skip
        return "netem"

    def _shape_on_bridge(self, port: str, *, delay_ms: int, loss_pct: float) -> str:
        x = ("ip", "netns", "exec", self.inet)
        queue = len(self.shapers)
        try:
            _run(*x, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        except LabError as exc:
            raise LabError(
                f"no netem and no br_netfilter in this kernel: cannot delay ({exc})"
            ) from exc
        argv = [sys.executable, "-m", "dgpu.cli.devnet.delayer", "--queue", str(queue),
                "--delay-ms", str(delay_ms)]  # fmt: skip
        proc: subprocess.Popen[str] = subprocess.Popen(
            [*x, *argv], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.shapers.append(proc)
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], _SHAPER_START_S)
        if not ready or proc.stdout.readline().strip() != "ready":
            proc.kill()
            why = proc.stderr.read().strip() if proc.wait() else ""
            raise LabError(f"the packet delayer did not start: {why or 'no answer'}")
        # order matters: a packet is lost (or not) first, then parked; the queue's
        # NF_ACCEPT ends its trip through this chain
        for way in ("--physdev-in", "--physdev-out"):
            link = ("FORWARD", "-m", "physdev", way, port)
            if loss_pct > 0:
                _run(*x, "iptables", "-A", *link, "-m", "statistic", "--mode", "random",
                     "--probability", str(loss_pct / 100), "-j", "DROP")  # fmt: skip
            _run(*x, "iptables", "-A", *link, "-j", "NFQUEUE", "--queue-num", str(queue))
        return "loss+nfqueue-delay" if loss_pct > 0 else "nfqueue-delay"

    def cut(self, a: Host, b: Host) -> None:
        """Drop every packet between ``a`` and ``b`` (a partition)."""
        self._partition("-I", a, b)

    def heal(self, a: Host, b: Host) -> None:
        self._partition("-D", a, b)

    def reset(self, a: Host, b: Host) -> None:
        """Drop the TCP connections between ``a`` and ``b`` on both sides, as a router
        that lost its state would: each host's sockets to the other's public address
        are aborted (``ss -K``). With a :meth:`cut` in place first, no new connection
        can replace them until :meth:`heal`."""
        a.run("ss", "-K", "dst", b.public_ip)
        b.run("ss", "-K", "dst", a.public_ip)

    # -- teardown ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop the lab's processes, then delete every namespace and link (idempotent)."""
        # the link delayers last: a process shutting down may still talk over the link
        for group in (self.processes, self.shapers):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            group.clear()
        if self._root_link:
            with contextlib.suppress(LabError):
                _run("ip", "link", "del", self._root_link)
            self._root_link = ""
        for ns in reversed(self.namespaces):
            with contextlib.suppress(LabError):
                _run("ip", "netns", "del", ns)
        self.namespaces.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------
    def _namespace(self, name: str) -> str:
        ns = f"dg{self.id}-{name}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        return ns

    def _attach(self, port: str) -> None:
        x = ("ip", "netns", "exec", self.inet)
        _run(*x, "ip", "link", "set", port, "master", "br0")
        _run(*x, "ip", "link", "set", port, "up")

    def _wan(self, ns: str, name: str, ip: str) -> None:
        port = f"p-{name}"
        if len(port) > 15:
            raise LabError(f"host name {name!r} too long for an interface name")
        _run("ip", "link", "add", "wan", "netns", ns, "type", "veth", "peer", "name", port,
             "netns", self.inet)  # fmt: skip
        self._attach(port)
        x = ("ip", "netns", "exec", ns)
        _run(*x, "ip", "addr", "add", f"{ip}/24", "dev", "wan")
        _run(*x, "ip", "link", "set", "wan", "up")

    def _partition(self, op: str, a: Host, b: Host) -> None:
        # on a's edge (itself, or its router): nothing to or from b's public address, be
        # it for the edge itself (INPUT/OUTPUT) or for the LAN behind it (FORWARD)
        edge = a.router or a
        x = ("ip", "netns", "exec", edge.ns, "iptables", op)
        _run(*x, "INPUT", "-s", b.public_ip, "-j", "DROP")
        _run(*x, "OUTPUT", "-d", b.public_ip, "-j", "DROP")
        _run(*x, "FORWARD", "-s", b.public_ip, "-j", "DROP")
        _run(*x, "FORWARD", "-d", b.public_ip, "-j", "DROP")

    def _free_subnet(self) -> int:
        taken = set()
        for line in _run("ip", "-4", "route", "show").splitlines():
            with contextlib.suppress(ValueError):
                net = ipaddress.ip_network(line.split()[0], strict=False)
                if net.overlaps(ipaddress.ip_network("198.18.0.0/16")):
                    taken.add(int(str(net.network_address).split(".")[2]))
        free = [x for x in range(1, 254) if x not in taken]
        return free[secrets.randbelow(len(free))]


TopologyName = Literal["public", "nat", "double-nat", "symmetric", "lossy"]
TOPOLOGIES: tuple[TopologyName, ...] = ("public", "nat", "double-nat", "symmetric", "lossy")


@dataclass
class Topology:
    """The three machines every scenario needs: ``server`` (chain, coordinator,
    bootstrap/relay: always public), ``provider`` and ``renter``."""

    name: TopologyName
    lab: Lab
    server: Host
    provider: Host
    renter: Host


def build_topology(lab: Lab, name: TopologyName) -> Topology:
    """Issue 13's topologies:

    * ``public``: all hosts public;
    * ``nat``: the provider behind a home router (endpoint-independent mapping), renter public;
    * ``double-nat``: provider and renter each behind such a router (needs hole punching);
    * ``symmetric``: the provider behind a symmetric NAT, the renter behind a home router
      (hole punching cannot work: relay only);
    * ``lossy``: all public, the provider's link losing 1 % of packets each way (about
      2 % of round trips) and delaying each packet 40 ms each way (80 ms round trip):
      netem where the kernel has it, else iptables loss and an NFQUEUE delayer
      (``lab.link_shaping`` says which, :meth:`Lab.netem`).
    """
    server = lab.public("srv")
    if name in ("public", "lossy"):
        provider, renter = lab.public("prov"), lab.public("rent")
        if name == "lossy":
            lab.link_shaping = lab.netem(provider, delay_ms=40, loss_pct=1.0)
    elif name == "nat":
        provider, renter = lab.behind(lab.nat("natp"), "prov"), lab.public("rent")
    elif name == "double-nat":
        provider = lab.behind(lab.nat("natp"), "prov")
        renter = lab.behind(lab.nat("natr"), "rent")
    elif name == "symmetric":
        provider = lab.behind(lab.nat("natp", "symmetric"), "prov")
        renter = lab.behind(lab.nat("natr"), "rent")
    else:
        raise LabError(f"unknown topology {name!r}")
    return Topology(name, lab, server, provider, renter)
