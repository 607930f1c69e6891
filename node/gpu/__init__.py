"""GPU discovery and sampling: real GPUs through NVML, or clearly labelled simulated ones.

    backend = detect_backend()            # NVML if the driver loads, else simulated
    for gpu in backend.list_gpus():       # GpuInfo(index, uuid, model, vram_mb, ..., simulated)
        backend.sample(gpu.index)         # GpuSample(util_pct, mem_used_mb, power_mw, temp_c)

Errors are drawn in :mod:`dgpu.node.gpu.errors`.
"""

from dgpu.node.gpu.detect import DEFAULT_SIMULATED_SPEC, BackendChoice, detect_backend
from dgpu.node.gpu.errors import GpuConfigError, GpuError, GpuNotFound, NvmlUnavailable
from dgpu.node.gpu.models import KNOWN_MODELS, ModelSpec, normalize_model_name
from dgpu.node.gpu.nvml import NvmlBackend
from dgpu.node.gpu.simulated import (
    SimulatedBackend,
    SimulatedConfig,
    SimulatedGpuSpec,
    config_from_mapping,
    load_simulated_config,
    parse_gpu_spec,
)
from dgpu.node.gpu.types import GpuBackend, GpuInfo, GpuSample

__all__ = [
    "DEFAULT_SIMULATED_SPEC",
    "KNOWN_MODELS",
    "BackendChoice",
    "GpuBackend",
    "GpuConfigError",
    "GpuError",
    "GpuInfo",
    "GpuNotFound",
    "GpuSample",
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
]
