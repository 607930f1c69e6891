"""The devnet's ports: chosen once, kept in ``<state>/devnet.json``, reused on restart.

A part restarted on a fresh port (port 0) would land where no other part looks: the
providers' offers name their multiaddrs, the renter's command names the coordinator and
the bootstrap peer. So every listening port is fixed before the first start and the same
command line is used for every restart. A later ``dgpu devnet`` on the same state reuses
the ports it finds free, and picks new ones for those another program took meanwhile.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "devnet.json"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    chain: int
    coordinator: int
    bootstrap: int
    providers: tuple[int, ...]  # libp2p
    bulk: tuple[int, ...]  # the providers' output channels

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the parts do: a port in TIME_WAIT after a previous devnet is usable
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(state_dir: Path, data: dict[str, Any]) -> None:
    """Replace ``devnet.json`` atomically (a reader never sees half of it)."""
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def choose_ports(state_dir: Path, providers: int) -> Ports:
    """The ports kept in the state file where still free, new ones elsewhere; saved."""
    old = read_state(state_dir).get("ports") or {}
    taken: set[int] = set()

    def usable(port: int, span: int) -> bool:
        return all(p not in taken and is_free(p) for p in range(port, port + span))

    def pick(previous: object, span: int = 1) -> int:
        """A port (and the ``span - 1`` after it) free now and not given to another part."""
        if isinstance(previous, int) and usable(previous, span):
            port = previous
        else:
            port = free_port()
            while not usable(port, span):
                port = free_port()
        taken.update(range(port, port + span))
        return port

    def picks(key: str) -> tuple[int, ...]:
        previous = old.get(key) or []
        return tuple(pick(previous[i] if i < len(previous) else None) for i in range(providers))

    ports = Ports(
        # the chain also serves PubSub on its port + 1 (where web3.js looks for it): a part
        # given that port, or a program holding it, kept the chain from starting
        chain=pick(old.get("chain"), span=2),
        coordinator=pick(old.get("coordinator")),
        bootstrap=pick(old.get("bootstrap")),
        providers=picks("providers"),
        bulk=picks("bulk"),
    )
    write_state(state_dir, {**read_state(state_dir), "ports": ports.as_json()})
    return ports
