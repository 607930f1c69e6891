"""``dgpu run`` against ``dgpu provider start``, both as child processes, over libp2p and
the local chain (``dgpu chain serve``), with a busybox job in Docker whose output comes
back over the provider's bulk channel (libp2p streams)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio
from dgpu.node.net.bulk import BULK_PROTOCOL
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import (
    PRICE,
    ROOT,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def test_dgpu_run_json_against_dgpu_provider_start(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    renter_key = tmp_path / "renter.json"
    save_identity(renter_id, renter_key)
    log_path = tmp_path / "provider.log"
    with provider_process(provider_args(world, provider_id, tmp_path), log_path) as proc:
        ready = await ready_line(proc, log_path)
        # outputs move as libp2p streams (Noise): no TCP address of their own
        assert ready["bulk_addr"] == BULK_PROTOCOL
        out_dir = tmp_path / "outputs"
        run = await trio.run_process(
            dgpu(
                "run",
                *("--key", str(renter_key), "--data-dir", str(tmp_path / "renter-data")),
                *("--rpc", chain_node.url, "--mint", str(chain_node.mint)),
                *("--bootstrap", ready["multiaddrs"][0], "--p2p"),
                *("--gpu", "RTX 4090", "--max-price", "8", "--image", busybox_image),
                *("--duration", "120", "--output-dir", str(out_dir), "--json"),
                "--",
                *("sh", "-c", "echo hi from the job; sleep 2; echo 7 > /out/seven.txt"),
            ),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr.decode()[-3000:]
        result = json.loads(run.stdout)
        assert result["state"] == "succeeded"
        assert result["provider"] == provider_id.address
        assert result["seconds_billed"] >= 2
        assert result["amount_paid"] == PRICE * result["seconds_billed"]
        # found peer to peer: in the book of its bootstrap peer (here the provider itself)
        assert result["search"] == {
            "source": "peer-to-peer network",
            "seen": 1,
            "matched": 1,
            "kept": 1,
            "excluded": {},
        }
        (output,) = result["outputs"]
        assert output["path"] == "seven.txt"
        assert output["sha256"] == hashlib.sha256(b"7\n").hexdigest()
        assert (out_dir / "seven.txt").read_bytes() == b"7\n"
        assert b"hi from the job" in run.stderr  # job stdout goes to stderr with --json
        # The output came over the bulk channel (the provider serves none over libp2p).
        assert b"outputs: 1 file, 2 bytes over the bulk channel" in run.stderr
        assert f"published on {BULK_PROTOCOL}" in log_path.read_text()
        # The channel cannot be reclaimed yet: the CLI says when.
        reclaim = await trio.run_process(
            dgpu(
                "run",
                "reclaim",
                *("--key", str(renter_key), "--data-dir", str(tmp_path / "renter-data")),
                *("--rpc", chain_node.url, "--json"),
            ),
            capture_stdout=True,
            cwd=ROOT,
        )
        (channel,) = json.loads(reclaim.stdout)["channels"]
        assert channel["status"] == "not_yet"
        assert channel["amount"] == 120 * PRICE - result["amount_paid"]
    # The provider settled the job on chain itself (no coordinator).
    assert await world.tokens(provider_id) == result["amount_paid"] * 95 // 100
    status = await trio.run_process(
        dgpu("provider", "status", "--data-dir", str(tmp_path / "provider-data"), "--json"),
        capture_stdout=True,
        cwd=ROOT,
    )
    report = json.loads(status.stdout)
    (job,) = report["jobs"]
    assert job["state"] == "succeeded" and job["paid"] == result["amount_paid"]
    (settled,) = report["settlements"]
    assert settled["status"] == "settled" and settled["paid_on_chain"] == result["amount_paid"]
    await world.chain.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_dgpu_run_with_an_input_folder_and_an_open_port(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    """``dgpu run --input DIR --port LOCAL:8080`` against ``dgpu provider start
    --allow-ports``: the job hashes its inputs (~6 MiB, CI-sized) into its outputs and serves
    them with busybox httpd, which the test reaches at 127.0.0.1:LOCAL while the job runs."""
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    renter_key = tmp_path / "renter.json"
    save_identity(renter_id, renter_key)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    blobs = {"a.bin": os.urandom(4 * 1024 * 1024), "sub/b.bin": os.urandom(2 * 1024 * 1024)}
    for name, blob in blobs.items():
        (data / name).write_bytes(blob)
    local = free_port()
    args = [*provider_args(world, provider_id, tmp_path), "--allow-ports", "--max-input-mb", "16"]
    log_path = tmp_path / "provider.log"
    with provider_process(args, log_path) as proc:
        ready = await ready_line(proc, log_path)
        out_dir = tmp_path / "outputs"
        script = (
            "cd /in/data && find . -type f | sort | xargs sha256sum > /out/sums.txt;"
            " httpd -f -p 127.0.0.1:8080 -h /in/data & sleep 12"
        )
        stderr_path = tmp_path / "run.err"
        with stderr_path.open("wb") as err:
            run = await trio.lowlevel.open_process(
                dgpu(
                    "run",
                    *("--key", str(renter_key), "--data-dir", str(tmp_path / "renter-data")),
                    *("--rpc", chain_node.url, "--mint", str(chain_node.mint)),
                    *("--bootstrap", ready["multiaddrs"][0], "--p2p"),
                    *("--gpu", "RTX 4090", "--max-price", "8", "--image", busybox_image),
                    *("--duration", "120", "--output-dir", str(out_dir), "--json"),
                    *("--input", str(data), "--port", f"{local}:8080"),
                    "--",
                    *("sh", "-c", script),
                ),
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
            )
            try:
                with trio.fail_after(90):
                    while True:
                        try:
                            stream = await trio.open_tcp_stream("127.0.0.1", local)
                        except OSError:
                            await trio.sleep(0.3)
                            continue
                        response = b""
                        try:  # reset until the job runs (the provider refuses the tunnel)
                            async with stream:
                                await stream.send_all(b"GET /a.bin HTTP/1.0\r\n\r\n")
                                while chunk := await stream.receive_some(1 << 16):
                                    response += chunk
                        except trio.BrokenResourceError:
                            response = b""
                        if b" 200 " in response.split(b"\r\n", 1)[0]:
                            break
                        await trio.sleep(0.3)
                body = response.split(b"\r\n\r\n", 1)[1]
                assert hashlib.sha256(body).digest() == hashlib.sha256(blobs["a.bin"]).digest()
                assert run.stdout is not None
                stdout = b""
                with trio.fail_after(90):
                    while chunk := await run.stdout.receive_some(1 << 16):
                        stdout += chunk
                    assert await run.wait() == 0, stderr_path.read_text()[-3000:]
            finally:
                if run.returncode is None:
                    run.kill()
                    await run.wait()
    result = json.loads(stdout)
    assert result["state"] == "succeeded"
    expected = "".join(
        f"{hashlib.sha256(blob).hexdigest()}  ./{name}\n" for name, blob in sorted(blobs.items())
    )
    assert (out_dir / "sums.txt").read_text() == expected
    text = stderr_path.read_text()
    assert "sent 2 inputs (6291456 bytes), unbilled" in text
    assert f"port 8080 of the job: 127.0.0.1:{local}" in text
    await world.chain.aclose()
