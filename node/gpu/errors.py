"""Errors of :mod:`dgpu.node.gpu`::

    DgpuError
    └── GpuError                 any failure to discover or sample GPUs
        ├── NvmlUnavailable      no usable NVIDIA driver (library missing, driver not loaded)
        ├── GpuNotFound          an index this backend does not have
        └── GpuConfigError       a simulated-GPU spec or TOML file that does not parse

NVML's own errors (``pynvml.NVMLError``) are converted here, at the boundary: ``nvml_code``
keeps NVML's numeric return code and ``function`` the NVML call that failed.
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class GpuError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.gpu`."""

    def __init__(
        self, message: str, *, function: str | None = None, nvml_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.function = function
        self.nvml_code = nvml_code


class NvmlUnavailable(GpuError):
    """NVML cannot be used on this machine: no library, no driver, or no GPU."""


class GpuNotFound(GpuError):
    def __init__(self, index: int, count: int) -> None:
        super().__init__(f"no GPU with index {index} (this backend has {count})")
        self.index = index
        self.count = count


class GpuConfigError(GpuError):
    """A simulated-GPU configuration that cannot be used; the message says why."""
