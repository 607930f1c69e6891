"""Probe jobs: check an offer's GPU claims from inside a paid job, and sign a verdict.

A probe is an ordinary job (negotiated, funded, metered and paid per second like any
other) whose command is :func:`probe_command`, a POSIX ``sh`` script (busybox is enough)
that prints a line-based report on stdout:

1. **The devices the job can see**, read the most robust way per vendor:

   * NVIDIA: ``nvidia-smi --query-gpu=name,memory.total,driver_version,uuid`` (the
     container runtime mounts ``nvidia-smi`` into every GPU container); without it, each
     ``/proc/driver/nvidia/gpus/*/information`` (model, UUID; the runtime mounts only the
     job's GPUs there) and ``/proc/driver/nvidia/version``.
   * AMD: each ``/dev/dri/renderD*`` mapped into the container (a ROCm job sees only its
     own render nodes), described by sysfs (``/sys/class/drm/renderD*/device``: PCI vendor
     and device id, ``product_name``, ``mem_info_vram_total``).
   * Apple (local executor on macOS): ``sysctl machdep.cpu.brand_string`` and ``hw.memsize``.

2. **A known workload, timed on the device**: :data:`dgpu.pricing.PROBE_WORKLOAD` in
   PyTorch (CUDA or ROCm, timed with device events) or MLX (Apple), when the image has one;
   otherwise the report says why it did not run.

:func:`judge` compares both with the offer and with the model's band
(:func:`dgpu.pricing.band_for`) and :func:`sign_verdict` turns the result into a
:class:`~dgpu.protocol.messages.ProbeVerdict` signed by the renter. Simulated GPUs are
judged ``simulated`` whatever the job read: they never pass.

Everything the job prints is untrusted (the provider runs it): the report is size-capped,
parsed line by line into typed fields, and anything unexpected is ignored or refused with
:class:`ProbeError` — never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from dgpu.node.gpu.models import normalize_model_name
from dgpu.node.gpu.types import printable
from dgpu.node.renter.errors import RenterError
from dgpu.pricing import PROBE_ITERATIONS, PROBE_SIZE, PROBE_WORKLOAD, band_for
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import GpuVendor, Offer, ProbeVerdict, VerdictKind
from dgpu.protocol.signing import sign

MIN_PROBE_S: Final = 2
"""The script ends no sooner than this: a job under a second is billed nothing, so it
leaves no receipt, and the coordinator takes verdicts of paid probe jobs only."""
MAX_REPORT_BYTES: Final = 64 * 1024
MAX_DEVICES: Final = 64
PROBE_VERSION: Final = "1"
_HEADER: Final = f"dgpu-probe {PROBE_VERSION}"
_FOOTER: Final = "dgpu-probe end"
VRAM_TOLERANCE_PCT: Final = 5
"""A device may show this much less memory than the offer claims (drivers reserve some)."""

# PCI device ids of the AMD GPUs we price, for sysfs entries without a product_name.
AMD_DEVICE_IDS: Final = {
    "0x74a1": "MI300X",
    "0x740c": "MI250X",
    "0x740f": "MI210",
    "0x744c": "RX 7900 XTX",
}


class ProbeError(RenterError):
    """The probe job's output holds no readable report (names what is wrong)."""


@dataclass(frozen=True)
class DeviceReading:
    """One GPU as the probe job saw it; empty/0 where the method used cannot tell."""

    vendor: GpuVendor
    name: str
    vram_mb: int = 0
    driver: str = ""
    uuid: str = ""
    source: str = ""

    @property
    def model(self) -> str:
        return normalize_model_name(self.name) if self.name else ""


@dataclass(frozen=True)
class ProbeReading:
    """What the probe job reported."""

    devices: tuple[DeviceReading, ...]
    gflops: int | None
    """The workload's throughput; None when it did not run (``bench_note`` says why)."""
    bench_device: str = ""
    bench_note: str = ""


@dataclass(frozen=True)
class Judgement:
    verdict: VerdictKind
    reasons: tuple[str, ...] = field(default=())
    gflops: int = 0


def _bench_python() -> str:
    n, iterations = PROBE_SIZE, PROBE_ITERATIONS
    # Runs inside the job. Floats here are timings, not money.
    return f"""
import time
N, IT = {n}, {iterations}
FLOP = 2 * N ** 3 * IT
def out(seconds, name):
    print("bench %d|%s" % (int(FLOP / seconds / 1e9), name.replace("|", " ")))
try:
    import torch
except Exception:
    torch = None
if torch is not None and torch.cuda.is_available():
    a = torch.randn(N, N, device="cuda", dtype=torch.float16)
    b = torch.randn(N, N, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(IT):
        a @ b
    end.record()
    torch.cuda.synchronize()
    out(start.elapsed_time(end) / 1000.0, torch.cuda.get_device_name(0))
else:
    try:
        import mlx.core as mx
    except Exception:
        mx = None
    if mx is None:
        print("bench-none the image has neither PyTorch with a GPU nor MLX")
    else:
        a = mx.random.normal((N, N)).astype(mx.float16)
        b = mx.random.normal((N, N)).astype(mx.float16)
        mx.eval(a @ b)
        t0 = time.perf_counter()
        for _ in range(IT):
            c = a @ b
            mx.eval(c)
        out(time.perf_counter() - t0, "Apple GPU (MLX)")
"""


def probe_script() -> str:
    """The job's shell script (POSIX sh; busybox is enough)."""
    return f"""
started=$(date +%s)
echo '{_HEADER}'
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,uuid \\
    --format=csv,noheader,nounits 2>/dev/null | while IFS= read -r l; do echo "nvidia $l"; done
fi
if [ -r /proc/driver/nvidia/version ]; then
  echo "nvidia-driver $(head -n 1 /proc/driver/nvidia/version)"
fi
for f in /proc/driver/nvidia/gpus/*/information; do
  [ -r "$f" ] || continue
  m=$(sed -n 's/^Model:[[:space:]]*//p' "$f"); u=$(sed -n 's/^GPU UUID:[[:space:]]*//p' "$f")
  echo "nvidia-proc $m|$u"
done
for n in /dev/dri/renderD*; do
  [ -e "$n" ] || continue
  d=/sys/class/drm/${{n##*/}}/device
  v=$(cat "$d/vendor" 2>/dev/null); i=$(cat "$d/device" 2>/dev/null)
  m=$(cat "$d/mem_info_vram_total" 2>/dev/null); p=$(cat "$d/product_name" 2>/dev/null)
  echo "dri ${{n##*/}}|$v|$i|$m|$p"
done
if [ "$(uname -s)" = Darwin ]; then
  echo "apple $(sysctl -n machdep.cpu.brand_string)|$(sysctl -n hw.memsize)"
fi
if command -v python3 >/dev/null 2>&1; then
  python3 -c '{_bench_python()}' 2>&1 | grep -E '^bench' || echo "bench-none the workload failed"
else
  echo "bench-none the image has no python3"
fi
echo '{_FOOTER}'
left=$(( started + {MIN_PROBE_S} - $(date +%s) ))
[ "$left" -gt 0 ] && sleep "$left"
exit 0
"""


def probe_command() -> tuple[str, ...]:
    """The probe job's command line."""
    return ("sh", "-c", probe_script())


def _int(text: str) -> int:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) <= 18 else 0


def _field(text: str) -> str:
    return printable(text, 96)


_NVIDIA_UUID = re.compile(r"^GPU-[0-9a-fA-F-]{8,60}$")


def parse_probe_output(data: bytes) -> ProbeReading:
    """The report in a probe job's stdout (capped at :data:`MAX_REPORT_BYTES`)."""
    if len(data) > MAX_REPORT_BYTES:
        data = data[:MAX_REPORT_BYTES]
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    if _HEADER not in lines:
        raise ProbeError("the job's output holds no probe report (did the job run?)")
    body = lines[lines.index(_HEADER) + 1 :]
    if _FOOTER not in body:
        raise ProbeError("the probe report is cut short (no end line)")
    body = body[: body.index(_FOOTER)]
    smi: list[DeviceReading] = []
    proc: list[DeviceReading] = []
    other: list[DeviceReading] = []
    driver = ""
    gflops: int | None = None
    bench_device = bench_note = ""
    for line in body:
        kind, _, rest = line.partition(" ")
        parts = [p.strip() for p in rest.split("|")]
        if kind == "nvidia":
            cols = [c.strip() for c in rest.split(",")]
            if len(cols) == 4:
                name, vram, version, uuid = cols
                smi.append(
                    DeviceReading(
                        "nvidia",
                        _field(name),
                        _int(vram),
                        _field(version),
                        _field(uuid),
                        "nvidia-smi",
                    )
                )
        elif kind == "nvidia-driver":
            if m := re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]*)", rest):
                driver = m.group(1)
        elif kind == "nvidia-proc" and len(parts) == 2:
            uuid = parts[1] if _NVIDIA_UUID.match(parts[1]) else ""
            proc.append(DeviceReading("nvidia", _field(parts[0]), uuid=uuid, source="procfs"))
        elif kind == "dri" and len(parts) == 5 and parts[1].lower() == "0x1002":
            name = _field(parts[4]) or AMD_DEVICE_IDS.get(parts[2].lower(), "")
            other.append(
                DeviceReading("amd", name, _int(parts[3]) // (1024 * 1024), source="sysfs")
            )
        elif kind == "apple" and len(parts) == 2 and parts[0].startswith("Apple"):
            memory_mb = _int(parts[1]) // (1024 * 1024)
            other.append(DeviceReading("apple", _field(parts[0]), memory_mb, source="sysctl"))
        elif kind == "bench" and len(parts) == 2 and parts[0].isdigit():
            gflops, bench_device = _int(parts[0]), _field(parts[1])
        elif kind == "bench-none":
            bench_note = _field(rest)
    # nvidia-smi says everything /proc says and more: the proc lines only stand in for it
    nvidia = smi or [DeviceReading("nvidia", d.name, 0, driver, d.uuid, d.source) for d in proc]
    devices = tuple([*nvidia, *other][:MAX_DEVICES])
    return ProbeReading(devices, gflops, bench_device, bench_note)


def _same_model(a: str, b: str) -> bool:
    return normalize_model_name(a).casefold() == normalize_model_name(b).casefold()


def judge(offer: Offer, reading: ProbeReading | None, *, failure: str = "") -> Judgement:
    """The verdict on ``offer`` from what its probe job read (None: no report; ``failure``
    says why)."""
    if offer.simulated:
        seen = "" if reading is None else f" (the job saw {len(reading.devices)} GPU(s))"
        return Judgement("simulated", (f"the offer's GPUs are simulated{seen}",))
    if reading is None:
        return Judgement("inconclusive", (failure or "the probe job gave no report",))
    claim = f"{offer.gpu_count}x {offer.gpu_model}"
    devices = reading.devices
    if not devices:
        return Judgement("mismatch", (f"the job saw no GPU; the offer claims {claim}",))
    wrong: list[str] = []
    unsure: list[str] = []
    if len(devices) < offer.gpu_count:
        wrong.append(f"the job saw {len(devices)} GPU(s); the offer claims {claim}")
    for device in devices:
        label = device.name or device.source
        if offer.gpu_vendor != "unknown" and device.vendor != offer.gpu_vendor:
            wrong.append(f"{label} is {device.vendor}; the offer says {offer.gpu_vendor}")
        if not device.name:
            unsure.append(f"a {device.vendor} GPU without a readable model name")
        elif not _same_model(device.name, offer.gpu_model):
            wrong.append(f"the job saw {device.name!r}; the offer claims {offer.gpu_model}")
        floor = offer.vram_mb * (100 - VRAM_TOLERANCE_PCT) // 100
        if device.vram_mb and device.vram_mb < floor:
            wrong.append(f"{label} has {device.vram_mb} MiB; the offer claims {offer.vram_mb}")
        if offer.gpu_uuids and device.uuid and device.uuid not in offer.gpu_uuids:
            wrong.append(f"board {device.uuid} is not one the offer names")
        if offer.driver_version and device.driver and device.driver != offer.driver_version:
            wrong.append(f"driver {device.driver}; the offer says {offer.driver_version}")
    band = band_for(offer.gpu_model)
    gflops = reading.gflops
    if gflops is None:
        unsure.append(f"the workload did not run: {reading.bench_note or 'no result'}")
    elif band is None:
        unsure.append(f"no expected band for {offer.gpu_model} ({gflops} GFLOP/s measured)")
    elif gflops < band.min_gflops:
        wrong.append(
            f"{gflops} GFLOP/s on {PROBE_WORKLOAD}, below the {band.model} band "
            f"({band.min_gflops}-{band.max_gflops})"
        )
    elif gflops > band.max_gflops:
        wrong.append(
            f"{gflops} GFLOP/s on {PROBE_WORKLOAD}, above any {band.model} "
            f"({band.min_gflops}-{band.max_gflops})"
        )
    measured = gflops or 0
    if wrong:
        return Judgement("mismatch", tuple(wrong[:8]), measured)
    if unsure:
        return Judgement("inconclusive", tuple(unsure[:8]), measured)
    return Judgement(
        "verified",
        (f"{len(devices)}x {offer.gpu_model}, {measured} GFLOP/s in band",),
        measured,
    )


def sign_verdict(
    renter: Identity, offer: Offer, job_id: bytes, judgement: Judgement, *, now: int
) -> ProbeVerdict:
    return sign(
        ProbeVerdict(
            renter=renter.public_key,
            provider=offer.provider,
            offer_id=offer.offer_id,
            job_id=job_id,
            gpu_model=offer.gpu_model,
            verdict=judgement.verdict,
            reasons=[reason[:256] for reason in judgement.reasons],
            workload=PROBE_WORKLOAD if judgement.gflops else "",
            measured_gflops=judgement.gflops,
            at=now,
        ),
        renter,
    )


def stdout_of(chunks: Sequence[tuple[str, bytes]]) -> bytes:
    """The job's stdout from its (stream, data) log chunks, at most the report's cap."""
    out = bytearray()
    for stream, data in chunks:
        if stream == "stdout" and len(out) < MAX_REPORT_BYTES:
            out += data[: MAX_REPORT_BYTES - len(out)]
    return bytes(out)
