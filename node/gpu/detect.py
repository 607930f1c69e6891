"""Choosing a GPU backend: the real driver when it loads, simulated GPUs otherwise."""

from __future__ import annotations

import logging
from typing import Final, Literal

from dgpu.node.gpu.errors import NvmlUnavailable
from dgpu.node.gpu.nvml import NvmlBackend
from dgpu.node.gpu.simulated import SimulatedBackend, SimulatedConfig, parse_gpu_spec
from dgpu.node.gpu.types import GpuBackend

log = logging.getLogger(__name__)

DEFAULT_SIMULATED_SPEC: Final = "1xRTX 4090"
BackendChoice = Literal["auto", "nvml", "simulated"]


def detect_backend(
    prefer: BackendChoice = "auto", simulated: SimulatedConfig | None = None
) -> GpuBackend:
    """Open the GPU backend for this machine.

    ``"auto"`` uses NVML when the driver loads and reports at least one GPU, and falls
    back to simulated GPUs (``simulated``, or :data:`DEFAULT_SIMULATED_SPEC`) otherwise,
    logging a warning that says so. ``"nvml"`` raises :class:`NvmlUnavailable` instead of
    falling back; ``"simulated"`` never touches the driver.
    """
    if prefer != "simulated":
        try:
            return NvmlBackend.open()
        except NvmlUnavailable as exc:
            if prefer == "nvml":
                raise
            reason = str(exc)
    else:
        reason = "simulated GPUs requested"
    config = simulated if simulated is not None else parse_gpu_spec(DEFAULT_SIMULATED_SPEC)
    backend = SimulatedBackend(config)
    log.warning(
        "GPUs are SIMULATED (%s): %s",
        reason,
        ", ".join(f"{g.index}={g.model}" for g in backend.list_gpus()),
    )
    return backend
