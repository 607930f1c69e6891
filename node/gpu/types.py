"""What a GPU backend reports: static facts (:class:`GpuInfo`) and meter readings
(:class:`GpuSample`), and the :class:`GpuBackend` interface both backends implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the node advertises it.

    ``model`` is our normalised model name ("RTX 4090", "A100", "H100", ...; see
    :func:`dgpu.node.gpu.normalize_model_name`); ``raw_name`` is what the driver said.
    ``simulated`` is True for GPUs that do not exist (the simulated backend), and must be
    carried into offers, logs and the explorer.
    """

    index: int
    uuid: str
    model: str
    raw_name: str
    vram_mb: int
    power_limit_w: int
    simulated: bool


@dataclass(frozen=True)
class GpuSample:
    """One meter reading of one GPU (the fields of the wire ``GpuSample``)."""

    index: int
    util_pct: int
    mem_used_mb: int
    power_mw: int
    temp_c: int


class GpuBackend(Protocol):
    """A source of GPUs: real ones through NVML, or simulated ones.

    Calls are synchronous and quick (NVML answers in microseconds to milliseconds); call
    them from trio through ``trio.to_thread.run_sync`` when a real driver may stall.
    """

    @property
    def simulated(self) -> bool:
        """True when the GPUs of this backend do not exist."""
        ...

    def list_gpus(self) -> list[GpuInfo]: ...

    def sample(self, index: int) -> GpuSample: ...

    def close(self) -> None: ...
