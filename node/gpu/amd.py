"""Real AMD GPUs through AMD SMI (``amdsmi``: AMD's Python binding of ``libamd_smi.so``).

Why ``amdsmi`` and not ``pyrsmi``: AMD SMI is the management library AMD ships with ROCm
today, and ROCm SMI (``rocm_smi_lib``, which ``pyrsmi`` wraps) is being retired in its
favour; the ``amd-smi`` tool and AMD's own container tooling are built on it. It reads
everything an offer carries — market name, VRAM, the board's UUID, the amdgpu driver's
version — and, per GPU, the DRM render node a ROCm container needs, which ROCm SMI does not
name. The binding is an optional extra (``pip install 'dgpu[amd]'``); it loads
``libamd_smi.so`` from ``$ROCM_PATH/lib`` (``/opt/rocm/lib``) or the loader's search path,
so a machine with ROCm needs nothing configured. Keep the binding's version to the ROCm
release installed (the binding declares the library's struct layouts).

Every ``AmdSmiException`` is converted to a :class:`~dgpu.node.gpu.errors.GpuError` here;
callers never see the binding's types. Jobs reach the GPUs through device nodes, as ROCm
containers expect: ``/dev/kfd`` (the compute interface, shared) and each GPU's own
``/dev/dri/renderD<minor>`` (:attr:`GpuInfo.devices`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from dgpu.node.gpu.errors import AmdSmiUnavailable, GpuError, GpuNotFound
from dgpu.node.gpu.models import normalize_model_name
from dgpu.node.gpu.types import GpuInfo, GpuSample, printable
from dgpu.protocol.extras import import_extra

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
KFD_DEVICE: Final = "/dev/kfd"
# amdsmi_status_t values meaning "there is no usable driver here" rather than a fault:
# FAIL_LOAD_MODULE, FAIL_LOAD_SYMBOL, NO_PERM, INIT_ERROR, DRIVER_NOT_LOADED, NO_DRV.
_UNAVAILABLE: Final = frozenset({4, 5, 10, 18, 34, 51})
_NOT_SUPPORTED: Final = 2
# What the binding puts for a reading the board does not give (0xFFFF, max uints).
_NA: Final = "N/A"


def load_amdsmi() -> ModuleType:
    """Import the binding; :class:`MissingExtra` without it, :class:`AmdSmiUnavailable`
    when it is there but ``libamd_smi.so`` is not (no ROCm on this machine).

    The binding loads the library at import and, failing, prints to stdout and leaves a
    ``KeyError``: its output is kept off our stdout (which may be a JSON stream) and logged.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return import_extra("amdsmi", extra="amd", purpose="AMD GPUs")
    except (KeyError, OSError, AttributeError) as exc:
        said = " ".join(printed.getvalue().split())
        raise AmdSmiUnavailable(
            f"AMD SMI library (libamd_smi.so) cannot be loaded: {said or exc!r}"
        ) from exc


class _Smi:
    """The binding, with its errors converted into ours."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def call(self, function: str, *args: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.module, function)
        try:
            return fn(*args)
        except self.module.AmdSmiLibraryException as exc:
            code = int(exc.get_error_code())
            kind = AmdSmiUnavailable if code in _UNAVAILABLE else GpuError
            raise kind(
                f"AMD SMI {function} failed: {exc.get_error_info()}",
                function=function,
                amdsmi_status=code,
            ) from exc
        except self.module.AmdSmiException as exc:
            raise GpuError(f"AMD SMI {function} failed: {exc}", function=function) from exc

    def optional(self, function: str, *args: Any) -> Any:
        """A reading some boards do not give: None when not supported."""
        try:
            return self.call(function, *args)
        except GpuError as exc:
            if exc.amdsmi_status == _NOT_SUPPORTED:
                return None
            raise


def _number(value: object) -> int:
    """A reading as an int; 0 for the binding's ``"N/A"`` (and anything not a number)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class AmdSmiBackend:
    """The AMD GPUs of this machine, read through AMD SMI. Open with :meth:`open`."""

    def __init__(self, smi: _Smi, handles: list[Any], gpus: list[GpuInfo]) -> None:
        self._smi = smi
        self._handles = handles
        self._gpus = gpus
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def open(cls, *, sysfs: Path = Path("/sys")) -> AmdSmiBackend:
        """Initialise AMD SMI and enumerate the GPUs.

        Raises :class:`MissingExtra` without the binding, :class:`AmdSmiUnavailable` when
        there is no library, no amdgpu driver or no GPU, and :class:`GpuError` for any other
        failure. ``sysfs`` is where a GPU's render node is looked up by its PCI address when
        the library cannot name it (older AMD SMI).
        """
        smi = _Smi(load_amdsmi())
        smi.call("amdsmi_init", smi.module.AmdSmiInitFlags.INIT_AMD_GPUS)
        try:
            handles = list(smi.call("amdsmi_get_processor_handles"))
            if not handles:
                raise AmdSmiUnavailable("AMD SMI is loaded but reports no GPU")
            gpus = [_describe(smi, i, h, sysfs) for i, h in enumerate(handles)]
        except BaseException:
            _shutdown(smi)
            raise
        log.info(
            "AMD SMI: %d GPU(s): %s", len(gpus), ", ".join(f"{g.index}={g.model}" for g in gpus)
        )
        return cls(smi, handles, gpus)

    @property
    def simulated(self) -> bool:
        return False

    def list_gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def sample(self, index: int) -> GpuSample:
        if not 0 <= index < len(self._handles):
            raise GpuNotFound(index, len(self._handles))
        handle = self._handles[index]
        smi = self._smi
        vram = smi.module.AmdSmiMemoryType.VRAM
        with self._lock:
            if self._closed:
                raise GpuError("AMD SMI backend is closed")
            activity = smi.call("amdsmi_get_gpu_activity", handle)
            used = smi.call("amdsmi_get_gpu_memory_usage", handle, vram)
            power = smi.optional("amdsmi_get_power_info", handle) or {}
            temp_c = self._temperature(handle)
        # MI300-class boards give only the current power, older ones only the average.
        watts = _number(power.get("current_socket_power")) or _number(
            power.get("average_socket_power")
        )
        return GpuSample(
            index=index,
            util_pct=min(_number(activity.get("gfx_activity")), 100),
            mem_used_mb=_number(used) // MIB,
            power_mw=watts * 1000,
            temp_c=temp_c,
        )

    def _temperature(self, handle: Any) -> int:
        """The edge sensor, or the hotspot where there is no edge sensor (MI300); 0 if
        neither answers."""
        types = self._smi.module.AmdSmiTemperatureType
        current = self._smi.module.AmdSmiTemperatureMetric.CURRENT
        for sensor in (types.EDGE, types.HOTSPOT):
            value = self._smi.optional("amdsmi_get_temp_metric", handle, sensor, current)
            if value is not None:
                return max(-50, min(_number(value), 200))
        return 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _shutdown(self._smi)

    def __enter__(self) -> AmdSmiBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _describe(smi: _Smi, index: int, handle: Any, sysfs: Path) -> GpuInfo:
    asic = smi.call("amdsmi_get_gpu_asic_info", handle)
    name = str(asic.get("market_name", ""))
    raw_name = printable(name if name and name != _NA else "AMD GPU")
    uuid = printable(str(smi.call("amdsmi_get_gpu_device_uuid", handle)), 64)
    total = smi.call("amdsmi_get_gpu_memory_total", handle, smi.module.AmdSmiMemoryType.VRAM)
    driver = smi.optional("amdsmi_get_gpu_driver_info", handle) or {}
    version = str(driver.get("driver_version", ""))
    cap = smi.optional("amdsmi_get_power_cap_info", handle) or {}
    return GpuInfo(
        index=index,
        uuid=uuid,
        model=normalize_model_name(raw_name),
        raw_name=raw_name,
        vram_mb=_number(total) // MIB,
        power_limit_w=_number(cap.get("power_cap")) // 1_000_000,  # microwatts
        simulated=False,
        vendor="amd",
        driver_version=printable(version) if version != _NA else "",
        devices=(KFD_DEVICE, _render_node(smi, handle, sysfs)),
    )


def _render_node(smi: _Smi, handle: Any, sysfs: Path) -> str:
    """``/dev/dri/renderD<minor>`` of one GPU: from the library's enumeration info, or
    through sysfs from its PCI address."""
    info = smi.optional("amdsmi_get_gpu_enumeration_info", handle)
    if info is not None and _number(info.get("drm_render")) >= 128:
        return f"/dev/dri/renderD{info['drm_render']}"
    bdf = str(smi.call("amdsmi_get_gpu_device_bdf", handle))
    found = sorted((sysfs / "bus" / "pci" / "devices" / bdf / "drm").glob("renderD*"))
    if not found:
        raise GpuError(f"no DRM render node for the AMD GPU at {bdf}", function="sysfs")
    return f"/dev/dri/{found[0].name}"


def _shutdown(smi: _Smi) -> None:
    try:
        smi.call("amdsmi_shut_down")
    except GpuError as exc:
        log.warning("AMD SMI shutdown failed: %s", exc)
