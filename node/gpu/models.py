"""GPU model names: the driver's marketing names mapped onto the short names offers use.

NVML reports names such as ``"NVIDIA GeForce RTX 4090"``, ``"NVIDIA A100-SXM4-80GB"`` or
``"NVIDIA H100 80GB HBM3"``. Offers, requests and the price tables speak of ``"RTX 4090"``,
``"A100"`` and ``"H100"``: the family, without vendor, form factor or memory size (VRAM is
a separate field of every offer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Words that never belong to our model names.
_VENDOR_WORDS = re.compile(r"\b(?:NVIDIA|GeForce|Tesla|Quadro)\b", re.IGNORECASE)
# Form factor and memory decorations: "-SXM4-80GB", "PCIe", "80GB HBM3", "NVL".
_DECORATIONS = re.compile(
    r"[-\s]*(?:\bSXM\d*\b|\bPCIe\b|\b\d+\s*GB\b|\bHBM\d*e?\b|\bNVL\d*\b|\bMIG\b)",
    re.IGNORECASE,
)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9 ._-]+")

# Consumer and workstation cards: "RTX 4090", "RTX 3090 Ti", "RTX 4080 SUPER", "GTX 1080".
_GEFORCE = re.compile(r"\b(RTX|GTX)\s*(\d{3,4})(\s*Ti)?(\s*SUPER)?\b", re.IGNORECASE)
# Workstation "RTX A6000", "RTX 6000 Ada Generation".
_RTX_A = re.compile(r"\bRTX\s*(A\d{4})\b", re.IGNORECASE)
_RTX_ADA = re.compile(r"\bRTX\s*(\d{4})\s*Ada\b", re.IGNORECASE)
# Data-centre parts, most specific first ("GH200" before "H200", "A10G" before "A10").
_DATACENTRE: Final = (
    "GH200", "H200", "H100", "H800", "B200", "B100", "A100", "A800", "A10G", "A10",
    "A16", "A30", "A40", "A2", "L40S", "L40", "L4", "T4", "V100", "P100", "P40", "K80",
)  # fmt: skip
_DATACENTRE_RE = re.compile(r"\b(" + "|".join(_DATACENTRE) + r")\b", re.IGNORECASE)

MAX_MODEL_NAME: Final = 64


def normalize_model_name(raw: str) -> str:
    """Map a driver's GPU name onto our model name (``"RTX 4090"``, ``"A100"``, ...).

    Unknown names keep their words minus vendor and form-factor decorations, restricted
    to the characters offers allow; an empty result becomes ``"unknown"``.
    """
    name = " ".join(raw.split())
    if m := _RTX_ADA.search(name):
        return f"RTX {m.group(1)} Ada"
    if m := _RTX_A.search(name):
        return f"RTX {m.group(1).upper()}"
    if m := _GEFORCE.search(name):
        parts = [m.group(1).upper(), m.group(2)]
        if m.group(3):
            parts.append("Ti")
        if m.group(4):
            parts.append("SUPER")
        return " ".join(parts)
    if m := _DATACENTRE_RE.search(name):
        return m.group(1).upper()
    rest = _DECORATIONS.sub(" ", _VENDOR_WORDS.sub(" ", name))
    rest = " ".join(_NOT_ALLOWED.sub(" ", rest).split())[:MAX_MODEL_NAME].strip()
    return rest or "unknown"


@dataclass(frozen=True)
class ModelSpec:
    """Typical figures of a model, used to give simulated GPUs plausible values."""

    vram_mb: int
    power_limit_w: int
    idle_power_w: int


# Figures of the common SKU of each family (datasheets; VRAM as NVML reports it).
KNOWN_MODELS: Final[dict[str, ModelSpec]] = {
    "RTX 3090": ModelSpec(vram_mb=24576, power_limit_w=350, idle_power_w=25),
    "RTX 4080": ModelSpec(vram_mb=16376, power_limit_w=320, idle_power_w=15),
    "RTX 4090": ModelSpec(vram_mb=24564, power_limit_w=450, idle_power_w=20),
    "RTX 5090": ModelSpec(vram_mb=32607, power_limit_w=575, idle_power_w=25),
    "RTX A6000": ModelSpec(vram_mb=49140, power_limit_w=300, idle_power_w=20),
    "RTX 6000 Ada": ModelSpec(vram_mb=49140, power_limit_w=300, idle_power_w=20),
    "A10": ModelSpec(vram_mb=23028, power_limit_w=150, idle_power_w=15),
    "A100": ModelSpec(vram_mb=81920, power_limit_w=400, idle_power_w=50),
    "H100": ModelSpec(vram_mb=81559, power_limit_w=700, idle_power_w=70),
    "H200": ModelSpec(vram_mb=143771, power_limit_w=700, idle_power_w=75),
    "L4": ModelSpec(vram_mb=23034, power_limit_w=72, idle_power_w=12),
    "L40S": ModelSpec(vram_mb=46068, power_limit_w=350, idle_power_w=35),
    "T4": ModelSpec(vram_mb=15360, power_limit_w=70, idle_power_w=10),
    "V100": ModelSpec(vram_mb=16384, power_limit_w=300, idle_power_w=40),
}
