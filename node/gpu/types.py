"""What a GPU backend reports: static facts (:class:`GpuInfo`) and meter readings
(:class:`GpuSample`), and the :class:`GpuBackend` interface both backends implement."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

from dgpu.protocol.messages import GpuVendor

MAX_DEVICE_TEXT: Final = 96  # the wire bound of Offer.gpu_name / driver_version
_NOT_PRINTABLE = re.compile(r"[^ -~]+")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the node advertises it.

    ``model`` is our normalised model name ("RTX 4090", "A100", "H100", ...; see
    :func:`dgpu.node.gpu.normalize_model_name`); ``raw_name`` is what the driver said.
    ``simulated`` is True for GPUs that do not exist (the simulated backend), and must be
    carried into offers, logs and the explorer.

    ``vendor`` and ``driver_version`` are what the backend read (offers carry them);
    ``uuid`` is the board's identifier where the driver has one (NVML, AMD SMI) and a local
    label otherwise (Apple: ``board_uuid`` False, offers leave it out). ``devices`` are the
    host device nodes a container needs for this GPU beyond the engine's own GPU support
    (ROCm: ``/dev/kfd`` and the GPU's ``/dev/dri/renderD*``); empty for NVIDIA, whose
    GPUs reach containers by device request.
    """

    index: int
    uuid: str
    model: str
    raw_name: str
    vram_mb: int
    power_limit_w: int
    simulated: bool
    vendor: GpuVendor = "unknown"
    driver_version: str = ""
    devices: tuple[str, ...] = ()
    board_uuid: bool = True


@dataclass(frozen=True)
class GpuSample:
    """One meter reading of one GPU (the fields of the wire ``GpuSample``)."""

    index: int
    util_pct: int
    mem_used_mb: int
    power_mw: int
    temp_c: int


def printable(text: str, limit: int = MAX_DEVICE_TEXT) -> str:
    """``text`` as offers may carry it: runs of anything but printable ASCII become one
    ``?``, surrounding blanks go, at most ``limit`` characters."""
    return " ".join(_NOT_PRINTABLE.sub("?", text).split())[:limit].strip()


class GpuBackend(Protocol):
    """A source of GPUs: real ones (NVML, AMD SMI, Apple's system tools) or simulated ones.

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
