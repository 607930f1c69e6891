"""Expected throughput bands: what the probe workload should measure on each card model.

The probe job (:mod:`dgpu.node.renter.probe`) times one known workload on the rented GPU:
``PROBE_WORKLOAD``, a 4096 x 4096 x 4096 half-precision matrix product repeated
``PROBE_ITERATIONS`` times after a warm-up, timed on the device (CUDA/HIP events; MLX on
Apple), and reports GFLOP/s (``2 * n**3 * iterations / seconds``). The band of a model is the
range a healthy GPU of that model lands in:

* **max** is the vendor's dense FP16 peak (tensor/matrix cores, FP32 accumulate, no
  sparsity) of the fastest variant of the family, plus 10 %. A reading above it is not that
  model (or not an honest reading).
* **min** is about a third of the peak of the slowest variant: dense GEMM of this size
  reaches 60-80 % of peak on every part listed, so a third leaves room for PCIe variants,
  power-capped or hot boards and older drivers, and still tells an H100 from an A100 or
  an RTX 4090 from an RTX 4080 in most cases.

Sources of the peaks (dense FP16, TFLOP/s): NVIDIA's datasheets — H100 SXM 989 / PCIe 756,
A100 312, RTX 4090 165 (FP32 accumulate; the Ada whitepaper), RTX 4080 97; AMD's — MI300X
1307, MI250X 383, MI250 362, MI210 181, RX 7900 XTX 123 (WMMA); Apple publishes no FP16
figure: the M-series bands are the GPU's FP32 rate (M1 Ultra 21, M2 Ultra 27, M3 Ultra ~28
TFLOP/s from Apple's core counts x clocks), whose FP16 matrix rate is the same on these
GPUs. **These bands come from datasheets, not from measurements on this project's
machines** (there is no GPU here); tighten them from real probe results as they come in.
Integers only: GFLOP/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from dgpu.pricing.card import model_tokens
from dgpu.pricing.errors import PricingConfigError

PROBE_WORKLOAD: Final = "matmul-fp16-4096"
PROBE_SIZE: Final = 4096
PROBE_ITERATIONS: Final = 50
PROBE_FLOPS: Final = 2 * PROBE_SIZE**3 * PROBE_ITERATIONS
"""Floating-point operations of the whole timed workload (6.87e12)."""


@dataclass(frozen=True, slots=True)
class ThroughputBand:
    """The GFLOP/s of :data:`PROBE_WORKLOAD` a healthy GPU of ``model`` measures."""

    model: str
    min_gflops: int
    max_gflops: int

    def __post_init__(self) -> None:
        if not 0 < self.min_gflops < self.max_gflops:
            raise PricingConfigError("needs 0 < min_gflops < max_gflops", key=f"bands.{self.model}")

    def contains(self, gflops: int) -> bool:
        return self.min_gflops <= gflops <= self.max_gflops


def _band(model: str, slowest_peak_tflops: int, fastest_peak_tflops: int) -> ThroughputBand:
    return ThroughputBand(model, slowest_peak_tflops * 1000 // 3, fastest_peak_tflops * 1100)


PROBE_BANDS: Final[tuple[ThroughputBand, ...]] = (
    _band("H100", 756, 989),  # PCIe .. SXM
    _band("A100", 312, 312),  # PCIe and SXM share the peak; the PCIe card throttles sooner
    _band("RTX 4090", 165, 165),
    _band("RTX 4080", 97, 97),
    _band("MI300X", 1307, 1307),
    _band("MI250X", 383, 383),
    _band("MI250", 362, 362),
    _band("MI210", 181, 181),
    _band("RX 7900 XTX", 123, 123),
    _band("M3 Ultra", 28, 28),
    _band("M2 Ultra", 27, 27),
    _band("M1 Ultra", 21, 21),
)
"""One band per model of the default rate card (a test keeps the two in step)."""

_INDEX: Final = {model_tokens(band.model): band for band in PROBE_BANDS}


def band_for(model: str) -> ThroughputBand | None:
    """The band of one of our model names (as offers carry them), or None."""
    return _INDEX.get(model_tokens(model))
