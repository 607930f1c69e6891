"""Reaching a TCP port inside a running job (what the renter's ``--port`` tunnels end at).

A container runs with ``--network none``: its only interface is its own loopback, so no
address of the host reaches its ports. :func:`open_container_port` therefore runs a relay
*inside* the container's network namespace, one per connection — ``docker exec -i
CONTAINER nc 127.0.0.1 PORT`` — and the provider talks to the relay's stdin and stdout.

Why this and not an internal-only Docker network (``docker network create --internal``):
an internal bridge still gives the container an address on a bridge the host is on, so the
job could reach every service of the provider's host that listens on that bridge's gateway
(the provider's own libp2p port, a local database, the Docker API if exposed), and the
network must be created, named, and removed even after a crash. The relay leaves the
container's network exactly as it was — loopback only, no outbound network at all — and
exists only while a tunnelled connection does. Its cost: the image needs a relay
program. The relay tried, in order: the host's static busybox when the provider mounted it
(``DockerConfig.watchdog_busybox``), the image's ``nc``, else ``python3`` (every ML image
has it) running :data:`PY_RELAY`.

The local executor's jobs are host processes: :func:`open_local_port` connects to
``127.0.0.1:PORT`` directly.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Final

import trio
from dgpu.node.executors.errors import ExecutorError

log = logging.getLogger(__name__)
CHUNK: Final = 65536

PY_RELAY: Final = """
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


def relay_command(port: int, busybox: str | None) -> list[str]:
    """The command ``docker exec`` runs inside the container for one connection."""
    script = (
        'if [ -n "$3" ] && [ -x "$3" ]; then exec "$3" nc 127.0.0.1 "$1"; fi; '
        'if command -v nc >/dev/null 2>&1; then exec nc 127.0.0.1 "$1"; fi; '
        'exec python3 -c "$2" "$1"'
    )
    return ["sh", "-c", script, "relay", str(port), PY_RELAY, busybox or ""]


class PortStream:
    """A byte stream to a port of a job, with a half-close (:meth:`send_eof`)."""

    async def send_all(self, data: bytes) -> None:
        raise NotImplementedError

    async def receive_some(self, max_bytes: int) -> bytes:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def reset(self) -> None:
        await self.aclose()


class ProcessPortStream(PortStream):
    """The stdin and stdout of a relay process (``docker exec -i ... nc``)."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout

    async def send_all(self, data: bytes) -> None:
        try:
            await self._stdin.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ExecutorError(f"the port relay stopped reading: {exc}") from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return bytes(await self._stdout.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def send_eof(self) -> None:
        await self._stdin.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stdin.aclose()
            if self._process.returncode is None:
                self._process.kill()
            await self._process.wait()
            await self._stdout.aclose()


class TcpPortStream(PortStream):
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ExecutorError(f"the job's port closed: {exc}") from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return bytes(await self._stream.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def send_eof(self) -> None:
        try:
            await self._stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            log.debug("half-closing a job's port failed", exc_info=True)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


async def open_container_port(
    base_url: str, container: str, port: int, *, busybox: str | None = None
) -> PortStream:
    """A relay to ``127.0.0.1:port`` inside ``container`` (see the module docstring)."""
    argv = ["docker", "-H", base_url, "exec", "-i", container, *relay_command(port, busybox)]
    try:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
    except OSError as exc:
        raise ExecutorError(f"cannot run the port relay (docker CLI): {exc}") from exc
    return ProcessPortStream(process)


async def open_local_port(port: int) -> PortStream:
    try:
        return TcpPortStream(await trio.open_tcp_stream("127.0.0.1", port))
    except OSError as exc:
        raise ExecutorError(f"nothing listens on the job's port {port}: {exc}") from exc
