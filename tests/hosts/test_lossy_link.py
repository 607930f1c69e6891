"""Topology 5: a lossy link between renter and provider. The issue asks for netem (loss
and delay); this kernel has no ``sch_netem``, so the lab falls back to iptables'
``statistic`` match on the provider's link to the internet (``build_topology("lossy")``:
1 % random loss each way on every packet in and out) — loss only, NO delay
(:meth:`Lab.netem` returns ``"loss-only"`` then; the test prints which it got). A
busybox job still runs end to end over it: discovery, negotiation, funding, receipts,
outputs over libp2p streams, settlement checked on chain."""

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
    assert lab.link_shaping in ("netem", "loss-only")
    print(f"link shaping: {lab.link_shaping}")
    assert result["connection"] == "direct"
