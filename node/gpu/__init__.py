"""GPU discovery and sampling: real GPUs (NVML, AMD SMI, Apple Silicon through macOS's
tools), or clearly labelled simulated ones.

    backend = detect_backend()            # by platform: a real driver if one answers,
                                          # else simulated
    for gpu in backend.list_gpus():       # GpuInfo(index, uuid, model, vram_mb, ..., simulated)
        backend.sample(gpu.index)         # GpuSample(util_pct, mem_used_mb, power_mw, temp_c)

Errors are drawn in :mod:`dgpu.node.gpu.errors`.
"""

from dgpu.node.gpu.amd import AmdSmiBackend
from dgpu.node.gpu.apple import AppleBackend
from dgpu.node.gpu.detect import (
    BACKEND_CHOICES,
    DEFAULT_SIMULATED_SPEC,
    BackendChoice,
    detect_backend,
)
from dgpu.node.gpu.errors import (
    AmdSmiUnavailable,
    AppleGpuUnavailable,
    GpuConfigError,
    GpuError,
    GpuNotFound,
    GpuUnavailable,
    NvmlUnavailable,
)
from dgpu.node.gpu.models import KNOWN_MODELS, ModelSpec, normalize_model_name, vendor_of
from dgpu.node.gpu.nvml import NvmlBackend
from dgpu.node.gpu.simulated import (
    SimulatedBackend,
    SimulatedConfig,
    SimulatedGpuSpec,
    config_from_mapping,
    load_simulated_config,
    parse_gpu_spec,
)
from dgpu.node.gpu.types import GpuBackend, GpuInfo, GpuSample, printable

__all__ = [
    "BACKEND_CHOICES",
    "DEFAULT_SIMULATED_SPEC",
    "KNOWN_MODELS",
    "AmdSmiBackend",
    "AmdSmiUnavailable",
    "AppleBackend",
    "AppleGpuUnavailable",
    "BackendChoice",
    "GpuBackend",
    "GpuConfigError",
    "GpuError",
    "GpuInfo",
    "GpuNotFound",
    "GpuSample",
    "GpuUnavailable",
    "ModelSpec",
    "NvmlBackend",
    "NvmlUnavailable",
    "SimulatedBackend",
    "SimulatedConfig",
    "SimulatedGpuSpec",
    "config_from_mapping",
    "detect_backend",
    "load_simulated_config",
    "normalize_model_name",
    "parse_gpu_spec",
    "printable",
    "vendor_of",
]
