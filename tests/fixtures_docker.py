"""Fixtures for tests that need the real Docker Engine (``@pytest.mark.docker``).

The engine and the test image are started/built by ``scripts/start-dockerd.sh`` (CI runs
it from ``scripts/setup.sh``). When they are missing, the tests FAIL with a message
saying so: they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import docker
import docker.errors
import pytest
import requests

DOCKER_URL = os.environ.get("DGPU_TEST_DOCKER_URL", "unix:///var/run/docker.sock")
TEST_IMAGE = "dgpu/busybox:latest"
_HOW = "run `bash scripts/start-dockerd.sh` as root (CI does it in scripts/setup.sh)"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local Docker Engine; fails the test if the engine does not answer."""
    problem = None
    try:
        client = docker.DockerClient(base_url=DOCKER_URL, timeout=30)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        problem = f"Docker Engine not reachable at {DOCKER_URL}: {exc}; {_HOW}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    """The local busybox test image (no registry is reachable: it is built locally)."""
    try:
        docker_client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {TEST_IMAGE} is missing; {_HOW}", pytrace=False)
    return TEST_IMAGE


@pytest.fixture
def docker_owner(docker_client: docker.DockerClient) -> Iterator[str]:
    """A fresh ``dgpu.owner`` label value for one test; whatever a test leaves behind
    under it is removed afterwards (tests assert their own cleanup before that)."""
    owner = f"test-{secrets.token_hex(6)}"
    yield owner
    selector = {"label": f"dgpu.owner={owner}"}
    for container in docker_client.containers.list(all=True, filters=selector):
        container.remove(force=True)
    for volume in docker_client.volumes.list(filters=selector):
        volume.remove(force=True)
