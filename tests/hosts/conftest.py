"""Fixtures of hosts on one machine (``dgpu.cli.devnet.netlab``): one lab per test, torn
down (processes, namespaces, links) also when the test fails. Needs root, ``ip``,
``iptables`` and ``tc``: without them the tests FAIL saying so (CI is root)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dgpu.cli.devnet.netlab import Lab, Topology, TopologyName, build_topology, lab_problem


@pytest.fixture
def lab() -> Iterator[Lab]:
    problem = lab_problem()
    if problem is not None:
        pytest.fail(f"cannot build a network lab here: {problem}", pytrace=False)
    with Lab() as built:
        yield built


def topology(lab: Lab, name: TopologyName) -> Topology:
    return build_topology(lab, name)
