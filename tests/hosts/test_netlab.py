"""The lab itself: who can reach whom, what the NATs do to ports, and that nothing is
left behind. Real sockets in real namespaces (root needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from dgpu.cli.devnet.netlab import Host, Lab, LabError, build_topology

# Accepts TCP connections on the given ports; prints "port peer_ip:peer_port" per connection.
_SERVER = textwrap.dedent(
    """
    import selectors, socket, sys
    sel = selectors.DefaultSelector()
    for port in map(int, sys.argv[2:]):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], port)); s.listen(); sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select(timeout=20):
            conn, peer = key.fileobj.accept()
            print(key.fileobj.getsockname()[1], f"{peer[0]}:{peer[1]}", flush=True)
            conn.close()
    """
)
# Connects to HOST:PORT from source port SRC (0: any); exit 0 if it connected.
_CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(3); s.bind(("", int(sys.argv[3])))
    try:
        s.connect((sys.argv[1], int(sys.argv[2])))
    except OSError as exc:
        print(exc); sys.exit(1)
    """
)


def _serve(host: Host, *ports: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", _SERVER, host.ip, *map(str, ports)]
    proc = host.popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _connect(src: Host, dst: Host, port: int, src_port: int = 0) -> bool:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            src.ns,
            sys.executable,
            "-c",
            _CLIENT,
            dst.public_ip,
            str(port),
            str(src_port),
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    return done.returncode == 0


def _seen(server: subprocess.Popen[str], count: int) -> list[str]:
    assert server.stdout is not None
    return [server.stdout.readline().split()[1] for _ in range(count)]


def test_public_hosts_reach_each_other_and_the_test_reaches_them(lab: Lab) -> None:
    topo = build_topology(lab, "public")
    server = _serve(topo.server, 7001)
    assert _connect(topo.provider, topo.server, 7001)
    assert _connect(topo.renter, topo.server, 7001)
    assert _seen(server, 2)[0].startswith(topo.provider.ip + ":")
    # the test process (root namespace) sits on the lab's internet too
    done = subprocess.run(
        [sys.executable, "-c", _CLIENT, topo.server.ip, "7001", "0"], timeout=20, check=False
    )
    assert done.returncode == 0


def test_home_router_maps_endpoint_independently_and_drops_unsolicited(lab: Lab) -> None:
    topo = build_topology(lab, "nat")
    server = _serve(topo.server, 7001, 7002)
    assert _connect(topo.provider, topo.server, 7001, src_port=40000)
    assert _connect(topo.provider, topo.server, 7002, src_port=40000)
    router = topo.provider.router
    assert router is not None
    # the same public address and port towards both destinations, port preserved
    assert _seen(server, 2) == [f"{router.ip}:40000"] * 2
    # nobody outside can open a connection in, to the router or past it
    listener = _serve(topo.provider, 7003)
    assert not _connect(topo.renter, router, 7003)
    assert not _connect(topo.server, router, 40000)
    listener.kill()


def test_symmetric_nat_maps_each_destination_to_a_new_port(lab: Lab) -> None:
    topo = build_topology(lab, "symmetric")
    server = _serve(topo.server, 7001, 7002)
    assert _connect(topo.provider, topo.server, 7001, src_port=40000)
    assert _connect(topo.provider, topo.server, 7002, src_port=40000)
    first, second = _seen(server, 2)
    assert first.split(":")[0] == second.split(":")[0] == topo.provider.public_ip
    assert first != second and "40000" not in (first.split(":")[1], second.split(":")[1])


def test_partition_cuts_and_heals(lab: Lab) -> None:
    topo = build_topology(lab, "nat")
    _serve(topo.server, 7001)
    lab.cut(topo.provider, topo.server)
    assert not _connect(topo.provider, topo.server, 7001)
    lab.heal(topo.provider, topo.server)
    assert _connect(topo.provider, topo.server, 7001)


def test_lossy_link_is_shaped(lab: Lab) -> None:
    topo = build_topology(lab, "lossy")
    if lab.link_shaping == "netem":
        assert "netem" in topo.provider.run("tc", "qdisc", "show", "dev", "wan")
    else:  # kernels without sch_netem: loss only, by iptables
        assert "statistic" in topo.provider.run("iptables", "-S")
    assert _connect(topo.renter, topo.provider, 7009) is False  # nothing listens: refused
    _serve(topo.provider, 7001)
    assert _connect(topo.renter, topo.provider, 7001)


def test_everything_is_removed_also_after_a_failure() -> None:
    lab = Lab()
    namespaces: list[str] = []

    def fail_inside() -> None:
        with lab:
            topo = build_topology(lab, "double-nat")
            namespaces.extend(lab.namespaces)
            topo.provider.popen(["sleep", "60"])
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert len(namespaces) == 6
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not any(ns in listed.stdout for ns in namespaces)
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True, check=True)
    assert f"dgT{lab.id}" not in links.stdout
    with pytest.raises(LabError):
        Host(lab, "gone", namespaces[0], "198.18.0.1").run("true")
