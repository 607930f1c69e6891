"""Choosing a GPU backend: the real driver when one answers, simulated GPUs otherwise.

``auto`` picks by platform: on macOS the Apple backend; elsewhere NVML, then AMD SMI (when
the ``dgpu[amd]`` binding is installed), then simulated GPUs — logged as SIMULATED, loudly.
Naming a backend (``nvml``, ``amd``, ``apple``) never falls back: its typed error says why
it cannot be used.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Final, Literal

from dgpu.node.gpu.amd import AmdSmiBackend
from dgpu.node.gpu.apple import AppleBackend
from dgpu.node.gpu.errors import GpuUnavailable
from dgpu.node.gpu.nvml import NvmlBackend
from dgpu.node.gpu.simulated import SimulatedBackend, SimulatedConfig, parse_gpu_spec
from dgpu.node.gpu.types import GpuBackend
from dgpu.protocol.extras import MissingExtra

log = logging.getLogger(__name__)

DEFAULT_SIMULATED_SPEC: Final = "1xRTX 4090"
BackendChoice = Literal["auto", "nvml", "amd", "apple", "simulated"]
BACKEND_CHOICES: Final[tuple[BackendChoice, ...]] = ("auto", "nvml", "amd", "apple", "simulated")


def detect_backend(
    prefer: BackendChoice = "auto",
    simulated: SimulatedConfig | None = None,
    *,
    platform: str = sys.platform,
    sysfs: Path = Path("/sys"),
) -> GpuBackend:
    """Open the GPU backend for this machine (see the module docstring).

    ``"nvml"``, ``"amd"`` and ``"apple"`` raise their :class:`GpuUnavailable` (or
    :class:`MissingExtra` for a binding that is not installed) instead of falling back;
    ``"simulated"`` never touches a driver.
    """
    if prefer == "nvml":
        return NvmlBackend.open()
    if prefer == "amd":
        return AmdSmiBackend.open(sysfs=sysfs)
    if prefer == "apple":
        return AppleBackend.open(platform=platform)
    reasons: list[str] = []
    if prefer == "auto":
        backend = _first_real(platform, sysfs, reasons)
        if backend is not None:
            return backend
    else:
        reasons.append("simulated GPUs requested")
    config = simulated if simulated is not None else parse_gpu_spec(DEFAULT_SIMULATED_SPEC)
    backend_sim = SimulatedBackend(config)
    log.warning(
        "GPUs are SIMULATED (%s): %s",
        "; ".join(reasons),
        ", ".join(f"{g.index}={g.model}" for g in backend_sim.list_gpus()),
    )
    return backend_sim


def _first_real(platform: str, sysfs: Path, reasons: list[str]) -> GpuBackend | None:
    if platform == "darwin":
        try:
            return AppleBackend.open(platform=platform)
        except GpuUnavailable as exc:
            reasons.append(str(exc))
            return None
    try:
        return NvmlBackend.open()
    except GpuUnavailable as exc:
        reasons.append(str(exc))
    try:
        return AmdSmiBackend.open(sysfs=sysfs)
    except MissingExtra:
        reasons.append("no AMD SMI binding (pip install 'dgpu[amd]' for AMD GPUs)")
    except GpuUnavailable as exc:
        reasons.append(str(exc))
    return None
