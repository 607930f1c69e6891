"""Real GPUs through NVML (``pynvml``, the ``nvidia-ml-py`` bindings).

pynvml loads ``libnvidia-ml.so.1`` with the dynamic loader's ordinary search, so a
machine with an NVIDIA driver needs nothing configured. Every ``NVMLError`` is converted
to a :class:`~dgpu.node.gpu.errors.GpuError` here; callers never see pynvml's types.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Final, TypeVar

from dgpu.node.gpu.errors import GpuError, GpuNotFound, NvmlUnavailable
from dgpu.node.gpu.models import normalize_model_name
from dgpu.node.gpu.types import GpuInfo, GpuSample, printable

with warnings.catch_warnings():
    # The deprecated `pynvml` shim package (installed beside nvidia-ml-py, which provides
    # the module itself) warns on the first import of any module named pynvml*.
    warnings.simplefilter("ignore", FutureWarning)
    import pynvml

log = logging.getLogger(__name__)

T = TypeVar("T")
MIB: Final = 1024 * 1024

# NVML return codes meaning "there is no usable driver here" rather than a fault.
_UNAVAILABLE: Final = frozenset(
    {
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    }
)


def _call(function: str, fn: Callable[..., T], *args: Any) -> T:
    """Call one pynvml function, converting its error into ours."""
    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        code = int(exc.value)
        kind = NvmlUnavailable if code in _UNAVAILABLE else GpuError
        raise kind(f"NVML {function} failed: {exc}", function=function, nvml_code=code) from exc


def _optional(function: str, fn: Callable[..., int], *args: Any) -> int:
    """A reading some GPUs do not support (power, temperature): 0 when not supported."""
    try:
        return fn(*args)
    except pynvml.NVMLError_NotSupported:
        return 0
    except pynvml.NVMLError as exc:
        raise GpuError(
            f"NVML {function} failed: {exc}", function=function, nvml_code=int(exc.value)
        ) from exc


class NvmlBackend:
    """The GPUs of this machine, read through NVML. Open with :meth:`open`."""

    def __init__(self, handles: list[Any], gpus: list[GpuInfo]) -> None:
        self._handles = handles
        self._gpus = gpus
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def open(cls) -> NvmlBackend:
        """Initialise NVML and enumerate the GPUs.

        Raises :class:`NvmlUnavailable` when there is no driver (or it reports no GPU) and
        :class:`GpuError` for any other NVML failure.
        """
        _call("nvmlInit", pynvml.nvmlInit)
        try:
            count = _call("nvmlDeviceGetCount", pynvml.nvmlDeviceGetCount)
            if count < 1:
                raise NvmlUnavailable("NVML is loaded but reports no GPU")
            driver = printable(
                str(_call("nvmlSystemGetDriverVersion", pynvml.nvmlSystemGetDriverVersion))
            )
            handles: list[Any] = []
            gpus: list[GpuInfo] = []
            for index in range(count):
                handle = _call(
                    "nvmlDeviceGetHandleByIndex", pynvml.nvmlDeviceGetHandleByIndex, index
                )
                handles.append(handle)
                gpus.append(_describe(index, handle, driver))
        except BaseException:
            _shutdown()
            raise
        log.info("NVML: %d GPU(s): %s", len(gpus), ", ".join(f"{g.index}={g.model}" for g in gpus))
        return cls(handles, gpus)

    @property
    def simulated(self) -> bool:
        return False

    def list_gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def sample(self, index: int) -> GpuSample:
        if not 0 <= index < len(self._handles):
            raise GpuNotFound(index, len(self._handles))
        handle = self._handles[index]
        with self._lock:
            if self._closed:
                raise GpuError("NVML backend is closed")
            memory = _call("nvmlDeviceGetMemoryInfo", pynvml.nvmlDeviceGetMemoryInfo, handle)
            rates = _call(
                "nvmlDeviceGetUtilizationRates", pynvml.nvmlDeviceGetUtilizationRates, handle
            )
            power_mw = _optional("nvmlDeviceGetPowerUsage", pynvml.nvmlDeviceGetPowerUsage, handle)
            temp_c = _optional(
                "nvmlDeviceGetTemperature",
                pynvml.nvmlDeviceGetTemperature,
                handle,
                pynvml.NVML_TEMPERATURE_GPU,
            )
        return GpuSample(
            index=index,
            util_pct=min(int(rates.gpu), 100),
            mem_used_mb=int(memory.used) // MIB,
            power_mw=int(power_mw),
            temp_c=int(temp_c),
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _shutdown()

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _describe(index: int, handle: Any, driver: str) -> GpuInfo:
    raw_name = printable(str(_call("nvmlDeviceGetName", pynvml.nvmlDeviceGetName, handle)))
    uuid = str(_call("nvmlDeviceGetUUID", pynvml.nvmlDeviceGetUUID, handle))
    memory = _call("nvmlDeviceGetMemoryInfo", pynvml.nvmlDeviceGetMemoryInfo, handle)
    limit_mw = _optional(
        "nvmlDeviceGetEnforcedPowerLimit", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle
    )
    return GpuInfo(
        index=index,
        uuid=uuid,
        model=normalize_model_name(raw_name),
        raw_name=raw_name,
        vram_mb=int(memory.total) // MIB,
        power_limit_w=int(limit_mw) // 1000,
        simulated=False,
        vendor="nvidia",
        driver_version=driver,
    )


def _shutdown() -> None:
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        log.warning("NVML shutdown failed: %s", exc)
