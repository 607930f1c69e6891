"""In-memory network for tests and simulations (deterministic, virtual clock, faults)."""

from dgpu.node.net.memory.hub import (
    Faults,
    HubStats,
    MemoryHub,
    MemoryHubConfig,
    open_memory_hub,
    seed_trio_scheduler,
)
from dgpu.node.net.memory.network import MemoryNetwork, MemoryNetworkConfig, open_memory_network

__all__ = [
    "Faults",
    "HubStats",
    "MemoryHub",
    "MemoryHubConfig",
    "MemoryNetwork",
    "MemoryNetworkConfig",
    "open_memory_hub",
    "open_memory_network",
    "seed_trio_scheduler",
]
