"""A node's log shows only what an operator can act on: a topology-2 job (provider behind
a home router, reached through the relay, then hole-punched) leaves no py-libp2p ERROR
line, traceback or known-noise warning in the provider's or the renter's stderr, although
the library logs them on every failed direct dial (:mod:`dgpu.node.net.libp2p.quiet`)."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.netlab import Lab

from tests.hosts.test_job_across_hosts import _job_end_to_end

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# a record of py-libp2p in the CLI's log format: "<time> <LEVEL> <logger>: <message>"
LIBRARY_RECORD = re.compile(r" [A-Z]+ (libp2p(\.[\w.]+)?|root): ")


async def test_a_job_across_a_nat_leaves_no_library_noise_in_the_logs(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    result = await _job_end_to_end(lab, tmp_path, "nat")
    assert result["connection"] == "hole-punched"
    for node in ("provider", "renter"):
        lines = (tmp_path / f"{node}.log").read_text().splitlines()
        # the nodes ran with -v: our own INFO lines are there (the log is not empty) ...
        assert any(" INFO dgpu." in line for line in lines), node
        # ... and nothing of the library's below CRITICAL, nor a traceback of anyone's
        library = [line for line in lines if LIBRARY_RECORD.search(line)]
        assert not library, (node, library[:5])
        assert not [line for line in lines if "Traceback" in line or " ERROR " in line], node
