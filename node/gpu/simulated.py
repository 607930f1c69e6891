"""Simulated GPUs, for machines without a GPU driver (such as this project's CI).

Every GPU of this backend says ``simulated=True``: offers, logs and the explorer must
show it. Its driver version reads ``"simulated"`` and its UUIDs start ``SIM-GPU-``, so
nothing read from it can pass for a real board's. Samples are pseudo-random but
deterministic: each GPU has its own ``random.Random`` seeded from (seed, index), so the
readings of one GPU do not depend on how often the others are sampled.

Configured by a spec string (``"2xRTX 4090,1xH100"``, optionally ``"1xFOO:16384"`` to give
the VRAM of a model we do not know) or a TOML file::

    seed = 7
    [[gpus]]
    model = "RTX 4090"
    count = 2
    vram_mb = 24564        # optional for known models
    power_limit_w = 450    # optional for known models
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dgpu.node.gpu.errors import GpuConfigError, GpuNotFound
from dgpu.node.gpu.models import KNOWN_MODELS, normalize_model_name, vendor_of
from dgpu.node.gpu.types import GpuInfo, GpuSample

MAX_SIMULATED_GPUS: Final = 64
SIMULATED_DRIVER: Final = "simulated"
_ITEM = re.compile(r"^(?:(\d+)\s*[xX]\s*)?([^:]+?)\s*(?::\s*(\d+))?$")
_COUNT_ONLY = re.compile(r"^\d+\s*[xX]?$")
_GPU_KEYS: Final = frozenset({"model", "count", "vram_mb", "power_limit_w"})


@dataclass(frozen=True)
class SimulatedGpuSpec:
    """``count`` GPUs of one model; VRAM and power default to the model's typical figures."""

    model: str
    count: int = 1
    vram_mb: int | None = None
    power_limit_w: int | None = None


@dataclass(frozen=True)
class SimulatedConfig:
    gpus: tuple[SimulatedGpuSpec, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        total = sum(g.count for g in self.gpus)
        if not 1 <= total <= MAX_SIMULATED_GPUS:
            raise GpuConfigError(
                f"simulated GPUs: {total} in total, must be 1 to {MAX_SIMULATED_GPUS}"
            )
        for g in self.gpus:
            if g.count < 1:
                raise GpuConfigError(f"simulated GPUs: count of {g.model!r} must be >= 1")
            if g.model not in KNOWN_MODELS and g.vram_mb is None:
                raise GpuConfigError(
                    f"simulated GPUs: unknown model {g.model!r} needs its VRAM "
                    f"(e.g. '1x{g.model}:16384' or vram_mb in the TOML file)"
                )
            for name in ("vram_mb", "power_limit_w"):
                value = getattr(g, name)
                if value is not None and value < 1:
                    raise GpuConfigError(f"simulated GPUs: {name} of {g.model!r} must be >= 1")


def parse_gpu_spec(text: str, *, seed: int = 0) -> SimulatedConfig:
    """Parse ``"2xRTX 4090,1xH100"`` (items ``[N x] MODEL [:VRAM_MB]``, comma separated)."""
    specs: list[SimulatedGpuSpec] = []
    for item in text.split(","):
        m = _ITEM.match(item.strip())
        if m is None or _COUNT_ONLY.match(m.group(2)):
            raise GpuConfigError(f"simulated GPUs: cannot parse {item.strip()!r} in {text!r}")
        count = int(m.group(1)) if m.group(1) else 1
        vram = int(m.group(3)) if m.group(3) else None
        specs.append(SimulatedGpuSpec(normalize_model_name(m.group(2)), count, vram))
    return SimulatedConfig(tuple(specs), seed)


def load_simulated_config(path: Path) -> SimulatedConfig:
    """Read a TOML file of simulated GPUs (format in the module docstring)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GpuConfigError(f"simulated GPUs: cannot read {path}: {exc}") from exc
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: dict[str, Any], *, source: str = "config") -> SimulatedConfig:
    unknown = set(data) - {"seed", "gpus"}
    if unknown:
        raise GpuConfigError(f"{source}: unknown key(s) {sorted(unknown)}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int):
        raise GpuConfigError(f"{source}: 'seed' must be an integer")
    items = data.get("gpus")
    if not isinstance(items, list) or not items:
        raise GpuConfigError(f"{source}: needs at least one [[gpus]] table")
    specs: list[SimulatedGpuSpec] = []
    for n, item in enumerate(items):
        where = f"{source}: gpus[{n}]"
        if not isinstance(item, dict):
            raise GpuConfigError(f"{where} must be a table")
        if bad := set(item) - _GPU_KEYS:
            raise GpuConfigError(f"{where}: unknown key(s) {sorted(bad)}")
        model = item.get("model")
        if not isinstance(model, str) or not model.strip():
            raise GpuConfigError(f"{where}: 'model' must be a non-empty string")
        ints: dict[str, int | None] = {}
        for key in ("count", "vram_mb", "power_limit_w"):
            value = item.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise GpuConfigError(f"{where}: {key!r} must be an integer")
            ints[key] = value
        specs.append(
            SimulatedGpuSpec(
                normalize_model_name(model),
                ints["count"] if ints["count"] is not None else 1,
                ints["vram_mb"],
                ints["power_limit_w"],
            )
        )
    return SimulatedConfig(tuple(specs), seed)


class SimulatedBackend:
    """GPUs that do not exist, with deterministic readings. ``simulated`` is always True."""

    def __init__(self, config: SimulatedConfig) -> None:
        self.config = config
        self._gpus: list[GpuInfo] = []
        self._rngs: list[random.Random] = []
        for spec in config.gpus:
            known = KNOWN_MODELS.get(spec.model)
            vram = spec.vram_mb if spec.vram_mb is not None else known.vram_mb if known else 0
            power = spec.power_limit_w or (known.power_limit_w if known else 300)
            for _ in range(spec.count):
                index = len(self._gpus)
                digest = hashlib.sha256(f"dgpu-sim/{config.seed}/{index}".encode()).digest()
                self._gpus.append(
                    GpuInfo(
                        index=index,
                        uuid=f"SIM-GPU-{uuid.UUID(bytes=digest[:16])}",
                        model=spec.model,
                        raw_name=f"Simulated {spec.model}",
                        vram_mb=vram,
                        power_limit_w=power,
                        simulated=True,
                        # the vendor of the model it imitates (so renters' filters work on
                        # a devnet); the driver says plainly that there is none
                        vendor=vendor_of(spec.model),
                        driver_version=SIMULATED_DRIVER,
                    )
                )
                self._rngs.append(random.Random(int.from_bytes(digest[16:], "big")))
        self._busy = [False] * len(self._gpus)
        self._lock = threading.Lock()

    @property
    def simulated(self) -> bool:
        return True

    def list_gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def set_busy(self, index: int, busy: bool) -> None:
        """Mark a GPU as running a job (its readings then look loaded) or idle."""
        self._check(index)
        self._busy[index] = busy

    def sample(self, index: int) -> GpuSample:
        gpu = self._check(index)
        known = KNOWN_MODELS.get(gpu.model)
        idle_w = known.idle_power_w if known else max(gpu.power_limit_w // 10, 1)
        with self._lock:
            rng = self._rngs[index]
            if self._busy[index]:
                util = rng.randint(85, 100)
                mem = gpu.vram_mb * rng.randint(40, 90) // 100
                power_mw = gpu.power_limit_w * rng.randint(700, 1000)
                temp = rng.randint(60, 80)
            else:
                util = rng.randint(0, 3)
                mem = rng.randint(0, max(gpu.vram_mb // 100, 1))
                power_mw = idle_w * rng.randint(900, 1100)
                temp = rng.randint(30, 40)
        return GpuSample(
            index=index, util_pct=util, mem_used_mb=mem, power_mw=power_mw, temp_c=temp
        )

    def close(self) -> None:
        """Nothing to release; present for the :class:`GpuBackend` interface."""

    def _check(self, index: int) -> GpuInfo:
        if not 0 <= index < len(self._gpus):
            raise GpuNotFound(index, len(self._gpus))
        return self._gpus[index]
