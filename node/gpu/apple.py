"""Apple Silicon GPUs, read with macOS's own tools (no library to bind, no root needed).

* ``system_profiler SPDisplaysDataType -json``: the GPU (``sppci_model`` "Apple M2 Ultra",
  ``sppci_cores``, the Metal family) — one entry per GPU, displays nested under it;
* ``sysctl hw.memsize machdep.cpu.brand_string kern.osproductversion``: the unified memory
  (what a job's tensors live in: offers advertise it as the VRAM), the chip and macOS;
* ``ioreg -r -d 1 -a -c IOAccelerator``: the GPU's ``PerformanceStatistics`` (device
  utilisation, memory in use) for meter readings. Power and temperature need root
  (``powermetrics``) and read 0.

There is no board UUID on a Mac: a GPU's ``uuid`` is a local label and ``board_uuid`` is
False, so offers carry none. Containers on macOS run in a Linux VM that no Apple GPU
reaches, so jobs on Apple Silicon run as local processes (an MLX script, say): offers say
``executor="local"``.

Commands run through an injected ``run`` (argv -> stdout), so the parsing is tested on
recorded outputs; a command that fails or prints what we cannot read is
:class:`~dgpu.node.gpu.errors.AppleGpuUnavailable` at open and :class:`GpuError` later.
"""

from __future__ import annotations

import json
import logging
import plistlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from dgpu.node.gpu.errors import AppleGpuUnavailable, GpuError, GpuNotFound
from dgpu.node.gpu.models import KNOWN_MODELS, normalize_model_name
from dgpu.node.gpu.types import GpuInfo, GpuSample, printable

log = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], str]
MIB: Final = 1024 * 1024
COMMAND_TIMEOUT_S: Final = 30.0
MAX_OUTPUT: Final = 4 * 1024 * 1024
PROFILER: Final = ("system_profiler", "SPDisplaysDataType", "-json")
SYSCTL: Final = ("sysctl", "hw.memsize", "machdep.cpu.brand_string", "kern.osproductversion")
IOREG: Final = ("ioreg", "-r", "-d", "1", "-a", "-c", "IOAccelerator")


def run_command(argv: Sequence[str]) -> str:
    """Run one of macOS's tools; its stdout, or :class:`GpuError` naming it."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GpuError(f"{argv[0]} failed: {exc}", function=argv[0]) from exc
    if len(done.stdout) > MAX_OUTPUT:
        raise GpuError(f"{argv[0]} printed more than {MAX_OUTPUT} bytes", function=argv[0])
    return done.stdout.decode("utf-8", errors="replace")


def parse_profiler(text: str) -> list[dict[str, Any]]:
    """The Apple GPUs of ``system_profiler SPDisplaysDataType -json`` output."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AppleGpuUnavailable(
            f"system_profiler printed no JSON: {exc}", function="system_profiler"
        ) from exc
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise AppleGpuUnavailable(
            "system_profiler printed no SPDisplaysDataType list", function="system_profiler"
        )
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and str(e.get("spdisplays_vendor", "")).casefold() == "sppci_vendor_apple"
        and e.get("sppci_device_type", "spdisplays_gpu") == "spdisplays_gpu"
    ]


def parse_sysctl(text: str) -> dict[str, str]:
    """``name: value`` lines of ``sysctl`` into a mapping."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            values[name.strip()] = value.strip()
    return values


def _metal(entry: dict[str, Any]) -> str:
    """``"spdisplays_metal3"`` -> ``"Metal 3"`` (older macOS: ``spdisplays_metal``)."""
    raw = str(entry.get("spdisplays_mtlgpufamilysupport") or entry.get("spdisplays_metal") or "")
    family = raw.removeprefix("spdisplays_").removeprefix("metal")
    return f"Metal {family}" if family.isdigit() else ""


def describe(profiler: str, sysctl: str) -> list[GpuInfo]:
    """The GPUs the two tools' outputs describe (pure: tested on recorded outputs)."""
    entries = parse_profiler(profiler)
    if not entries:
        raise AppleGpuUnavailable(
            "system_profiler shows no Apple GPU (not Apple Silicon)", function="system_profiler"
        )
    facts = parse_sysctl(sysctl)
    memsize = facts.get("hw.memsize", "")
    if not memsize.isdigit() or int(memsize) < MIB:
        raise AppleGpuUnavailable(
            f"sysctl gave no usable hw.memsize ({memsize!r})", function="sysctl"
        )
    macos = facts.get("kern.osproductversion", "")
    chip = facts.get("machdep.cpu.brand_string", "")
    gpus: list[GpuInfo] = []
    for index, entry in enumerate(entries):
        name = str(entry.get("sppci_model") or entry.get("_name") or chip or "Apple GPU")
        cores = str(entry.get("sppci_cores", ""))
        model = normalize_model_name(name)
        known = KNOWN_MODELS.get(model)
        driver = ", ".join(p for p in (f"macOS {macos}" if macos else "", _metal(entry)) if p)
        gpus.append(
            GpuInfo(
                index=index,
                uuid=f"apple-gpu-{index}",
                model=model,
                raw_name=printable(f"{name} ({cores}-core GPU)" if cores.isdigit() else name),
                vram_mb=int(memsize) // MIB,  # unified memory: the GPU's working set
                power_limit_w=known.power_limit_w if known is not None else 0,
                simulated=False,
                vendor="apple",
                driver_version=printable(driver),
                board_uuid=False,
            )
        )
    return gpus


def parse_ioreg(text: str) -> list[tuple[int, int]]:
    """(utilisation %, memory in use in MiB) of each accelerator in ``ioreg -a`` output;
    (0, 0) for one without statistics."""
    try:
        data = plistlib.loads(text.encode())
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise GpuError(f"ioreg printed no property list: {exc}", function="ioreg") from exc
    nodes = data if isinstance(data, list) else [data]
    readings: list[tuple[int, int]] = []
    for node in nodes:
        stats = node.get("PerformanceStatistics") if isinstance(node, dict) else None
        if not isinstance(stats, dict):
            readings.append((0, 0))
            continue
        util = stats.get("Device Utilization %", 0)
        used = stats.get("In use system memory", 0)
        readings.append(
            (
                min(max(util, 0), 100) if isinstance(util, int) else 0,
                max(used, 0) // MIB if isinstance(used, int) else 0,
            )
        )
    return readings


class AppleBackend:
    """The Apple Silicon GPU of this Mac. Open with :meth:`open`."""

    def __init__(self, gpus: list[GpuInfo], run: Runner) -> None:
        self._gpus = gpus
        self._run = run

    @classmethod
    def open(cls, run: Runner = run_command, *, platform: str = sys.platform) -> AppleBackend:
        """Read the GPU with the system's tools; :class:`AppleGpuUnavailable` off macOS,
        on an Intel Mac, or when the tools do not answer."""
        if platform != "darwin":
            raise AppleGpuUnavailable(f"Apple GPUs need macOS (this is {platform})")
        try:
            gpus = describe(run(PROFILER), run(SYSCTL))
        except AppleGpuUnavailable:
            raise
        except GpuError as exc:
            raise AppleGpuUnavailable(str(exc), function=exc.function) from exc
        log.info("Apple: %s", ", ".join(f"{g.index}={g.raw_name}" for g in gpus))
        return cls(gpus, run)

    @property
    def simulated(self) -> bool:
        return False

    def list_gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def sample(self, index: int) -> GpuSample:
        if not 0 <= index < len(self._gpus):
            raise GpuNotFound(index, len(self._gpus))
        readings = parse_ioreg(self._run(IOREG))
        util, used_mb = readings[index] if index < len(readings) else (0, 0)
        return GpuSample(index=index, util_pct=util, mem_used_mb=used_mb, power_mw=0, temp_c=0)

    def close(self) -> None:
        """Nothing to release; present for the :class:`GpuBackend` interface."""
