"""Topology 5: a lossy, slow link between renter and provider — 1 % loss each way and
40 ms each way (80 ms round trip) on the provider's link to the internet
(``build_topology("lossy")``). Where the kernel has ``sch_netem`` that is netem; this
kind of VM has none, so the lab shapes the link on the internet bridge with iptables'
``statistic`` loss and an NFQUEUE packet delayer (``lab.link_shaping`` says which;
``tests/hosts/test_netlab.py`` checks the delay and the loss are real). A busybox job
runs end to end over it: discovery, negotiation, funding, receipts, outputs over libp2p
streams, settlement checked on chain."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.netlab import Lab

from tests.hosts.test_job_across_hosts import _job_end_to_end

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def test_a_job_crosses_a_lossy_link(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    result = await _job_end_to_end(lab, tmp_path, "lossy")
    assert lab.link_shaping in ("netem", "loss+nfqueue-delay")
    print(f"link shaping: {lab.link_shaping}")
    assert result["connection"] == "direct"
