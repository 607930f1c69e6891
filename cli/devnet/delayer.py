"""A fixed packet delay without ``sch_netem``: the kernel parks packets in an NFQUEUE and
this program hands each one back (``NF_ACCEPT``) ``delay_ms`` after it arrived.

Why: kernels like this VM's (and CI's) build no ``sch_netem``; their qdiscs are fifo, htb,
tbf and ingress, none of which holds an idle link's packets, and no ``fq``/``etf`` honours
eBPF departure times. Netfilter's queue is built in, so the lab (``Lab.netem``) runs this
program in the internet namespace, whose bridge passes traffic through iptables
(``br_netfilter``), and sends the shaped port's packets to the queue both ways
(``FORWARD -m physdev --physdev-in/--physdev-out``): each direction waits ``delay_ms``, a
round trip ``2 x delay_ms``, for every protocol (TCP, UDP, ICMP), in the network and not in
a host, like netem on a router. It differs from netem in ways worth knowing:

* the queue holds at most :data:`QUEUE_MAXLEN` packets for both directions together (netem:
  1,000 per direction); past that the kernel drops, as a full netem queue does;
* packets are GSO bursts as the veth carries them (several segments each), as in netem;
* the delay is as exact as a Python process woken by ``select`` on a loaded 2-core machine:
  a millisecond or so late, never early; no jitter, no reordering;
* it runs in one place only: a packet parked in the sending host itself (iptables
  ``OUTPUT``) would stay charged to its socket, and TCP small queues would then throttle
  the sender to a few segments per delay (netem orphans such packets; a queue cannot).

Only the packet's metadata crosses to userspace (``NFQNL_COPY_META``, GSO packets whole), and
verdicts go out in batches (``NFQNL_MSG_VERDICT_BATCH``: every packet up to an id), since a
constant delay releases packets in the order they came. The netlink messages are built and
parsed here with :mod:`struct` (``include/uapi/linux/netfilter/nfnetlink_queue.h``); if this
process dies, the queue has no reader and the kernel drops the link's packets: a dead
delayer cuts the link rather than silently removing the delay.

Run: ``python -m dgpu.cli.devnet.delayer --queue 0 --delay-ms 40``; prints ``ready`` on
stdout once the queue is bound, runs until SIGTERM/SIGINT, then prints how many packets it
delayed on stderr.
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator

from dgpu.protocol.errors import DgpuError

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 4
NF_ACCEPT = 1

QUEUE_MAXLEN = 2000
"""Packets parked at once, both directions together (netem's default: 1,000 each)."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian, packed below)
_ATTR = struct.Struct("=HH")  # nlattr: len, type


class DelayerError(DgpuError):
    """The kernel refused the queue (no NFQUEUE support, queue taken, not root)."""


def _attr(kind: int, payload: bytes) -> bytes:
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _message(msg_type: int, flags: int, queue: int, attrs: bytes, seq: int = 0) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _HEADER.pack(_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                        NLM_F_REQUEST | flags, seq, 0) + body  # fmt: skip


def config_message(queue: int, maxlen: int = QUEUE_MAXLEN) -> bytes:
    """Bind ``queue``, metadata only, at most ``maxlen`` parked, GSO packets not split."""
    attrs = (
        _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC))
        + _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
        + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
        + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO))
        + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO))
    )
    return _message(NFQNL_MSG_CONFIG, NLM_F_ACK, queue, attrs, seq=1)


def accept_up_to(queue: int, packet_id: int) -> bytes:
    """Accept every packet parked in ``queue`` whose id is at most ``packet_id``."""
    verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
    return _message(NFQNL_MSG_VERDICT_BATCH, 0, queue, verdict)


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        size, msg_type, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if size < _HEADER.size:
            break
        yield msg_type, data[offset + _HEADER.size : offset + size]
        offset += (size + 3) & ~3


def packet_ids(data: bytes) -> Iterator[int]:
    """The ids of the packets announced in one ``recv`` from the queue socket."""
    for msg_type, body in _messages(data):
        if msg_type != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            continue
        offset = _NFGEN.size
        while offset + _ATTR.size <= len(body):
            size, kind = _ATTR.unpack_from(body, offset)
            if size < _ATTR.size:
                break
            if kind & 0x3FFF == NFQA_PACKET_HDR:
                yield struct.unpack_from("!I", body, offset + _ATTR.size)[0]
                break
            offset += (size + 3) & ~3


def _check_ack(data: bytes, queue: int) -> None:
    for msg_type, body in _messages(data):
        if msg_type == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0]
            if code:
                name = errno.errorcode.get(code, str(code))
                why = f"{name} ({os.strerror(code)})"
                if code == errno.EPERM:  # what the kernel answers for a queue bound already
                    why += f": queue {queue} has another reader here, or this is not root"
                raise DelayerError(f"the kernel refused the queue: {why}")


def open_queue(queue: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        # a burst must not overflow the socket: an undelivered packet is a dropped one
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        sock.bind((0, 0))
        sock.send(config_message(queue))
        _check_ack(sock.recv(4096), queue)
    except OSError as exc:
        sock.close()
        raise DelayerError(f"cannot open NFQUEUE {queue}: {exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


def run(queue: int, delay_s: float, stop: socket.socket) -> int:
    """Delay every packet of ``queue`` by ``delay_s`` until ``stop`` is readable (a signal's
    wakeup fd); returns how many packets were delayed."""
    sock = open_queue(queue)
    sock.setblocking(False)
    parked: collections.deque[tuple[float, int]] = collections.deque()
    delayed = 0
    print("ready", flush=True)
    with sock, selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        selector.register(stop, selectors.EVENT_READ)
        while True:
            wait = parked[0][0] - time.monotonic() if parked else None
            events = {
                key.fileobj for key, _ in selector.select(None if wait is None else max(wait, 0.0))
            }
            if stop in events:
                break
            now = time.monotonic()
            while sock in events:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    break
                parked.extend((now + delay_s, packet_id) for packet_id in packet_ids(data))
            last = -1
            while parked and parked[0][0] <= now:
                last = max(last, parked.popleft()[1])
                delayed += 1
            if last >= 0:
                sock.send(accept_up_to(queue, last))
    return delayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgpu.cli.devnet.delayer",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--queue", type=int, default=0, help="NFQUEUE number (default 0)")
    parser.add_argument("--delay-ms", type=int, required=True, help="delay of each packet")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or not 0 <= args.queue <= 65535:
        parser.error("--delay-ms must be at least 0 and --queue within 0-65535")
    # a signal only writes its number to ``wake``: ``run`` sees ``stop`` become readable
    stop, wake = socket.socketpair()
    wake.setblocking(False)
    signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        delayed = run(args.queue, args.delay_ms / 1000, stop)
    except DelayerError as exc:
        print(f"delayer: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.close()
        wake.close()
    print(f"delayer: {delayed} packets delayed {args.delay_ms} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
