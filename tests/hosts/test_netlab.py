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


# Times TCP handshakes to HOST:PORT (SYN out, SYN-ACK back: one round trip each); prints
# the median in ms (a handshake whose SYN was lost waits a 1 s retransmission: the median
# leaves it out).
_HANDSHAKES = textwrap.dedent(
    """
    import socket, statistics, sys, time
    times = []
    for _ in range(int(sys.argv[3])):
        s = socket.socket(); s.settimeout(20)
        started = time.monotonic()
        s.connect((sys.argv[1], int(sys.argv[2])))
        times.append(time.monotonic() - started)
        s.close()
    print(statistics.median(times) * 1000)
    """
)
# Sends COUNT numbered datagrams to HOST:PORT, one per half millisecond.
_UDP_SEND = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for n in range(int(sys.argv[3])):
        s.sendto(n.to_bytes(4, "big"), (sys.argv[1], int(sys.argv[2])))
        time.sleep(0.0005)
    """
)
# Counts the distinct datagrams that reach ADDR:PORT until 2 s of silence.
_UDP_COUNT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind((sys.argv[1], int(sys.argv[2])))
    print("ready", flush=True)
    seen = set(); s.settimeout(30)
    try:
        while True:
            seen.add(s.recv(16)); s.settimeout(2)
    except TimeoutError:
        print(len(seen), flush=True)
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


def _handshake_ms(src: Host, dst: Host, port: int, tries: int = 15) -> float:
    argv = [sys.executable, "-c", _HANDSHAKES, dst.public_ip, str(port), str(tries)]
    return float(src.run(*argv))


def _udp_delivered(src: Host, dst: Host, count: int) -> int:
    counter = dst.popen([sys.executable, "-c", _UDP_COUNT, dst.ip, "7100"], stdout=subprocess.PIPE)
    assert counter.stdout is not None
    assert counter.stdout.readline().strip() == "ready"
    src.run(sys.executable, "-c", _UDP_SEND, dst.public_ip, "7100", str(count))
    return int(counter.stdout.readline())


def test_lossy_link_delays_and_loses(lab: Lab) -> None:
    """The lab checks itself: the same two hosts, the same handshake, before and after the
    provider's link is shaped — the round trip grows by the delay both ways (2 x 40 ms)
    and datagrams across it get lost. Whatever the kernel offers (netem, else iptables
    loss and the NFQUEUE delayer), the link must really be slower and lossy."""
    provider, renter = lab.public("prov"), lab.public("rent")
    _serve(provider, 7001)
    before = _handshake_ms(renter, provider, 7001)
    lab.link_shaping = lab.netem(provider, delay_ms=40, loss_pct=1.0)
    assert lab.link_shaping in ("netem", "loss+nfqueue-delay")
    after = _handshake_ms(renter, provider, 7001)
    sent = 2000
    delivered = _udp_delivered(provider, renter, sent)
    print(f"{lab.link_shaping}: TCP handshake median {before:.1f} ms -> {after:.1f} ms;"
          f" {sent - delivered} of {sent} datagrams lost one way")  # fmt: skip
    assert after - before >= 60
    # 1 % each way: about 20 lost; none lost would mean no loss applied (p = e^-20)
    assert 0 < sent - delivered <= sent // 20
    if lab.link_shaping == "loss+nfqueue-delay":
        # fail closed: without its delayer the link carries nothing (not an undelayed link)
        (delayer,) = lab.shapers
        delayer.kill()
        delayer.wait()
        assert not _connect(renter, provider, 7001)


def test_the_lossy_topology_shapes_only_the_provider_link(lab: Lab) -> None:
    topo = build_topology(lab, "lossy")
    _serve(topo.provider, 7001)
    _serve(topo.server, 7002)
    assert lab.link_shaping in ("netem", "loss+nfqueue-delay")
    to_provider = _handshake_ms(topo.renter, topo.provider, 7001, tries=9)
    to_server = _handshake_ms(topo.renter, topo.server, 7002, tries=9)
    print(f"renter -> provider {to_provider:.1f} ms, renter -> server {to_server:.1f} ms")
    assert to_provider - to_server >= 60


def test_a_second_delayer_on_a_taken_queue_says_why_it_stops(lab: Lab) -> None:
    topo = build_topology(lab, "lossy")
    if lab.link_shaping == "netem":
        pytest.skip("the kernel has netem: no delayer runs")
    inet = Host(lab, "inet", lab.inet, "")
    argv = [sys.executable, "-m", "dgpu.cli.devnet.delayer", "--queue", "0", "--delay-ms", "5"]
    with pytest.raises(LabError) as refused:
        inet.run(*argv)
    assert "queue 0 has another reader here" in str(refused.value)
    assert "Traceback" not in str(refused.value)
    # the first one still delays the provider's link
    _serve(topo.provider, 7001)
    assert _handshake_ms(topo.renter, topo.provider, 7001, tries=3) >= 60


def test_the_delayer_goes_with_the_lab() -> None:
    lab = Lab()
    namespaces: list[str] = []

    def fail_inside() -> None:
        with lab:
            build_topology(lab, "lossy")
            namespaces.extend(lab.namespaces)
            delayers.extend(lab.shapers)
            raise ZeroDivisionError

    delayers: list[subprocess.Popen[str]] = []
    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert delayers or lab.link_shaping == "netem"
    assert all(proc.poll() is not None for proc in delayers)
    assert not lab.shapers
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not any(ns in listed.stdout for ns in namespaces)
    # its iptables rules lived in the lab's internet namespace, never in the root one
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True)
    assert not [r for r in rules.stdout.splitlines() if "NFQUEUE" in r and "p-prov" in r]


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
