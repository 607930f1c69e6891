"""Inputs (``--input``) and open ports (``--port``) over real parts: libp2p on loopback,
busybox jobs in Docker (``--network none``), the escrow ``.so`` in LiteSVM, inputs over the
provider's bulk channel (``@pytest.mark.docker``). The input folder is 50 MiB, as the issue
asks (four 12.5 MiB shards, a nested file and an in-tree symlink)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import docker
import msgspec
import pytest
import trio
from dgpu.node.net.tunnel import TUNNEL_PROTOCOL, TunnelOpen, TunnelReply, receive_frame, send_frame
from dgpu.node.renter import (
    Forward,
    InputError,
    InputsSent,
    JobRefused,
    PortsForwarded,
    ReceiptSigned,
    RenterEvent,
    Started,
    scan_inputs,
)
from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import InputFile

from tests.node.realkit import RENTER_TOKENS, real_market
from tests.node.rolekit import job_spec

pytestmark = pytest.mark.docker
MIB = 1024 * 1024


def make_dataset(root: Path) -> dict[str, bytes]:
    """A folder of 50 MiB: pseudo-random shards, a nested file, an in-tree symlink."""
    rng = hashlib.sha256(b"seed")
    files: dict[str, bytes] = {}
    for i in range(4):
        data = b"".join(
            hashlib.sha256(rng.digest() + bytes([i]) + n.to_bytes(4, "big")).digest()
            for n in range(25 * MIB // 64)  # 12.5 MiB of 32-byte digests
        )
        files[f"shard-{i}.bin"] = data
    files["meta/labels.txt"] = b"cat\ndog\n"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    os.symlink("meta/labels.txt", root / "labels")
    return files


async def test_a_job_reads_its_input_folder_and_its_outputs_are_a_function_of_it(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    data = tmp_path / "data"
    files = make_dataset(data)
    tree = await scan_inputs([data])
    assert tree.size == sum(len(b) for b in files.values())
    events: list[RenterEvent] = []
    script = (
        "cd /in/data && find . -type f | sort | xargs sha256sum > /out/sums.txt;"
        " cat shard-0.bin shard-1.bin shard-2.bin shard-3.bin | sha256sum > /out/all.txt;"
        " cat labels > /out/labels.txt;"
        " if touch /in/data/new 2>/dev/null; then echo rw; else echo ro; fi > /out/mode.txt;"
        ' echo "$DGPU_INPUT_DIR" > /out/env.txt'
    )
    async with real_market(tmp_path) as m:
        assert m.provider.offer is not None and m.provider.offer.max_input_bytes > tree.size
        spec = job_spec(script, image=busybox_image, output_dir="/out", max_output_bytes=MIB)
        got = tmp_path / "got"
        result = await m.renter.run_job(
            spec, offers=[m.provider.offer], events=events.append, output_dir=got, inputs=tree
        )
        assert result.state == "succeeded", result.detail
        # Every input went over the bulk channel before the channel was funded.
        sent = next(e for e in events if isinstance(e, InputsSent))
        assert sent.files == 5 and sent.bytes == tree.size
        kinds = [type(e).__name__ for e in events]
        assert kinds.index("InputsSent") < kinds.index("Funded")
        expected = "".join(
            f"{hashlib.sha256(b).hexdigest()}  ./{name}\n" for name, b in sorted(files.items())
        )
        assert (got / "sums.txt").read_text() == expected
        whole = b"".join(files[f"shard-{i}.bin"] for i in range(4))
        assert (got / "all.txt").read_text().split()[0] == hashlib.sha256(whole).hexdigest()
        assert (got / "labels.txt").read_bytes() == b"cat\ndog\n"  # the in-tree symlink
        assert (got / "mode.txt").read_text() == "ro\n"
        assert (got / "env.txt").read_text() == "/in\n"
        # The provider kept nothing of them once the job ended.
        assert not (tmp_path / "inputs" / result.job_id.hex()).exists()
        assert not any(p.name.endswith(".part") for p in (tmp_path / "bulk").iterdir())


async def test_hostile_inputs_are_refused_in_words_before_any_money_moves(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    sha = hashlib.sha256(b"x").digest()
    hostile = {
        "escapes": [InputFile(path="../../etc/passwd", sha256=sha, size=1)],
        "absolute": [InputFile(path="/etc/passwd", sha256=sha, size=1)],
        "points out of the tree": [
            InputFile(path="data/link", sha256=b"", size=0, link="../../../etc/shadow")
        ],
        "over the limit": [InputFile(path="big.bin", sha256=sha, size=64 * MIB)],
    }
    async with real_market(tmp_path, provider_changes={"max_input_bytes": 16 * MIB}) as m:
        offer = m.provider.offer
        assert offer is not None and offer.max_input_bytes == 16 * MIB
        # a renter that ignores the offer's limit (the provider must still refuse)
        lying = msgspec.structs.replace(offer, max_input_bytes=10**12)
        for words, inputs in hostile.items():
            spec = job_spec("ls /in", image=busybox_image, inputs=tuple(inputs))
            with pytest.raises(JobRefused, match=words):
                await m.renter.run_job(spec, offers=[lying])
        # Nothing was funded, nothing was agreed, no container ran.
        assert m.renter.store.channels() == []
        assert m.provider.store.jobs("provider") == []
        assert await m.world.tokens(m.renter_id) == RENTER_TOKENS


async def test_a_symlink_out_of_an_input_folder_is_refused_by_the_renter_too(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.txt").write_text("ok")
    os.symlink("/etc/passwd", data / "passwd")
    with pytest.raises(InputError, match="points out of the tree"):
        await scan_inputs([data])


async def http_get(port: int, path: str = "/") -> bytes:
    """The raw response; empty when the tunnel was reset (the job not running yet)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    response = b""
    try:
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            with trio.fail_after(20):
                while chunk := await stream.receive_some(65536):
                    response += chunk
    except trio.BrokenResourceError:
        return b""
    return response


async def test_container_ports_are_reachable_from_the_renter_while_the_job_is_billed(
    tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    script = (
        "mkdir -p /tmp/www && echo 'hello from the container' > /tmp/www/index.html;"
        " httpd -f -p 127.0.0.1:8080 -h /tmp/www &"
        " nc -ll -p 9000 -e cat &"
        " sleep 120"
    )
    events: list[RenterEvent] = []
    forwarded = trio.Event()
    running = trio.Event()

    def on_event(event: RenterEvent) -> None:
        events.append(event)
        if isinstance(event, PortsForwarded):
            forwarded.set()
        if isinstance(event, (Started, ReceiptSigned)):
            running.set()

    async with real_market(tmp_path, provider_changes={"allow_ports": True}) as m:
        offer = m.provider.offer
        assert offer is not None and offer.ports
        cancel = trio.Event()
        spec = job_spec(script, image=busybox_image)
        results = []

        async def run() -> None:
            results.append(
                await m.renter.run_job(
                    spec,
                    offers=[offer],
                    events=on_event,
                    cancel=cancel,
                    ports=[Forward(0, 8080), Forward(0, 9000)],
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            with trio.fail_after(60):
                await forwarded.wait()
                await running.wait()
            (pairs,) = [e.ports for e in events if isinstance(e, PortsForwarded)]
            http_port, echo_port = pairs[0][0], pairs[1][0]
            # busybox httpd in the container, reached at 127.0.0.1:LOCAL (retry until up)
            with trio.fail_after(30):
                while True:
                    response = await http_get(http_port)
                    if b"200 OK" in response:
                        break
                    await trio.sleep(0.3)
            assert response.endswith(b"hello from the container\n")
            # a long-lived bidirectional stream: many round trips over seconds, and 1 MiB
            billed_before = sum(isinstance(e, ReceiptSigned) for e in events)
            stream = await trio.open_tcp_stream("127.0.0.1", echo_port)
            async with stream:
                with trio.fail_after(60):
                    for n in range(30):
                        line = f"ping {n}\n".encode()
                        await stream.send_all(line)
                        got = b""
                        while len(got) < len(line):
                            got += await stream.receive_some(65536)
                        assert got == line
                        await trio.sleep(0.1)
                    blob = os.urandom(MIB)
                    echoed = bytearray()

                    async def send() -> None:
                        await stream.send_all(blob)

                    async with trio.open_nursery() as inner:
                        inner.start_soon(send)
                        while len(echoed) < len(blob):
                            echoed += await stream.receive_some(65536)
                    assert bytes(echoed) == blob
            # the job was billed while the tunnels carried bytes
            assert sum(isinstance(e, ReceiptSigned) for e in events) > billed_before
            # a port that was not agreed is refused by the provider, even to the renter
            (job_id,) = [j.job_id for j in m.renter.store.jobs("renter")]
            provider_peer = peer_id_of(m.provider_id.public_key)
            raw = await m.renter_net.open_raw_stream(provider_peer, TUNNEL_PROTOCOL)
            await send_frame(raw, TunnelOpen(job_id=job_id, port=22))
            reply = await receive_frame(raw, TunnelReply, bytearray(), timeout_s=10)
            assert reply.code == "refused" and "port 22 was not agreed" in reply.error
            await raw.reset()
            cancel.set()
        (result,) = results
        assert result.amount_paid > 0
