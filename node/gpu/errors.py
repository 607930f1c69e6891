"""Errors of :mod:`dgpu.node.gpu`::

    DgpuError
    └── GpuError                   any failure to discover or sample GPUs
        ├── GpuUnavailable         a backend that cannot be used on this machine
        │   ├── NvmlUnavailable    no usable NVIDIA driver (library missing, driver not loaded)
        │   ├── AmdSmiUnavailable  no usable AMD SMI (libamd_smi.so missing, no amdgpu driver)
        │   └── AppleGpuUnavailable  not a Mac with Apple Silicon, or its tools do not answer
        ├── GpuNotFound            an index this backend does not have
        └── GpuConfigError         a simulated-GPU spec or TOML file that does not parse

The drivers' own errors (``pynvml.NVMLError``, ``amdsmi.AmdSmiException``, a failed
``system_profiler``) are converted at the boundary: ``function`` names the call that failed,
``nvml_code`` keeps NVML's numeric return code and ``amdsmi_status`` AMD SMI's.
A missing optional binding (``dgpu[amd]``) is :class:`~dgpu.protocol.extras.MissingExtra`.
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class GpuError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.gpu`."""

    def __init__(
        self,
        message: str,
        *,
        function: str | None = None,
        nvml_code: int | None = None,
        amdsmi_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.nvml_code = nvml_code
        self.amdsmi_status = amdsmi_status


class GpuUnavailable(GpuError):
    """A backend that cannot be used on this machine; ``auto`` tries the next one."""


class NvmlUnavailable(GpuUnavailable):
    """NVML cannot be used on this machine: no library, no driver, or no GPU."""


class AmdSmiUnavailable(GpuUnavailable):
    """AMD SMI cannot be used on this machine: no library, no amdgpu driver, or no GPU."""


class AppleGpuUnavailable(GpuUnavailable):
    """No Apple Silicon GPU here: another OS, an Intel Mac, or macOS's tools did not answer."""


class GpuNotFound(GpuError):
    def __init__(self, index: int, count: int) -> None:
        super().__init__(f"no GPU with index {index} (this backend has {count})")
        self.index = index
        self.count = count


class GpuConfigError(GpuError):
    """A simulated-GPU configuration that cannot be used; the message says why."""
