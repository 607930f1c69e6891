"""What the mid-job tests share: a provider up on its host, a long job started from the
renter's host in the background, and the moment its container runs (read from Docker,
by the provider's owner label), so a test can cut, reset or heal links while metering
goes on. Real processes in the lab's namespaces, the escrow in ``dgpu chain serve``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import trio
from dgpu.protocol.identity import Identity

from tests.hosts.swarm import START_TIMEOUT_S, Swarm, read_json_line

OWNER_LABEL = "dgpu.owner"
CONTAINER_WAIT_S = 120.0


@dataclass
class MidJob:
    swarm: Swarm
    provider: Identity
    renter: Identity
    process: subprocess.Popen[str]
    done: trio.Event = field(default_factory=trio.Event)
    code: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    async def run(self, command: str, *extra: str) -> None:
        self.code, self.result, self.stderr = await self.swarm.run_job(self.renter, command, *extra)
        self.done.set()

    async def container_running(self, client: docker.DockerClient) -> None:
        """Until the job's container runs (fails the test if the job ended first)."""
        label = f"{OWNER_LABEL}={self.provider.address}"
        with trio.fail_after(CONTAINER_WAIT_S):
            while True:
                running = await trio.to_thread.run_sync(
                    lambda: client.containers.list(filters={"label": label, "status": "running"})
                )
                if running:
                    return
                if self.done.is_set():
                    raise AssertionError(f"the job ended before it ran:\n{self.stderr[-3000:]}")
                await trio.sleep(0.2)

    def provider_log(self) -> str:
        return (self.swarm.tmp / "provider.log").read_text()


async def start_provider(swarm: Swarm, tmp: Path, *extra: str) -> MidJob:
    """A funded provider (``extra``: more ``provider start`` flags) and renter."""
    provider, renter = Identity.generate(), Identity.generate()
    await swarm.world.fund(provider)
    await swarm.world.fund(renter, tokens=10**13)
    proc = swarm.start_provider(provider, *extra)
    read_json_line(proc, tmp / "provider.log", START_TIMEOUT_S)
    return MidJob(swarm, provider, renter, proc)


async def settled(job: MidJob) -> int:
    """Stop the provider politely (it finishes the settlement it started) and return
    what the chain paid it (the escrow's 5 % platform fee taken)."""
    proc = job.process
    proc.terminate()
    await trio.to_thread.run_sync(lambda: proc.wait(60))
    return await job.swarm.world.tokens(job.provider)
