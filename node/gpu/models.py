"""GPU model names: the driver's marketing names mapped onto the short names offers use.

NVML reports names such as ``"NVIDIA GeForce RTX 4090"``, ``"NVIDIA A100-SXM4-80GB"`` or
``"NVIDIA H100 80GB HBM3"``; AMD SMI ``"AMD Instinct MI300X"`` or ``"AMD Radeon RX 7900
XTX"`` (or the PCI database's ``"Navi 31 [Radeon RX 7900 XT/7900 XTX]"``); macOS ``"Apple
M2 Ultra"``. Offers, requests and the price tables speak of ``"RTX 4090"``, ``"A100"``,
``"H100"``, ``"MI300X"``, ``"RX 7900 XTX"`` and ``"M2 Ultra"``: the family, without vendor,
form factor or memory size (VRAM is a separate field of every offer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from dgpu.protocol.messages import GpuVendor

# Words that never belong to our model names.
_VENDOR_WORDS = re.compile(r"\b(?:NVIDIA|GeForce|Tesla|Quadro|AMD|ATI)\b", re.IGNORECASE)
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
# AMD: Instinct "MI300X", "MI250X / MI250" (the first wins); Radeon "RX 7900 XTX";
# Radeon PRO "W7900". Apple: "M2 Ultra", "M3 Max", "M1".
_INSTINCT = re.compile(r"\b(MI\d{3}[A-Z]?)\b", re.IGNORECASE)
_RADEON_RX = re.compile(r"\bRX\s*(\d{3,4})(?:\s*(XTX|XT|GRE))?\b", re.IGNORECASE)
_RADEON_PRO = re.compile(r"\bPRO\s+(W\d{4}[A-Z]?)\b", re.IGNORECASE)
_APPLE = re.compile(r"\bApple\s+(M\d+)(?:\s+(Pro|Max|Ultra))?\b", re.IGNORECASE)

MAX_MODEL_NAME: Final = 64


def normalize_model_name(raw: str) -> str:
    """Map a driver's GPU name onto our model name (``"RTX 4090"``, ``"A100"``, ...).

    Unknown names keep their words minus vendor and form-factor decorations, restricted
    to the characters offers allow; an empty result becomes ``"unknown"``.
    """
    name = " ".join(raw.split())
    if m := _APPLE.search(name):
        return " ".join([m.group(1).upper(), *([m.group(2).capitalize()] if m.group(2) else [])])
    if m := _INSTINCT.search(name):
        return m.group(1).upper()
    if m := _RADEON_PRO.search(name):
        return f"Radeon PRO {m.group(1).upper()}"
    if m := _RADEON_RX.search(name):
        return " ".join(["RX", m.group(1), *([m.group(2).upper()] if m.group(2) else [])])
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
    vendor: GpuVendor = "nvidia"


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
    # AMD (VRAM as AMD SMI reports it; board power)
    "MI300X": ModelSpec(vram_mb=196592, power_limit_w=750, idle_power_w=140, vendor="amd"),
    "MI250X": ModelSpec(vram_mb=131056, power_limit_w=560, idle_power_w=90, vendor="amd"),
    "MI210": ModelSpec(vram_mb=65520, power_limit_w=300, idle_power_w=40, vendor="amd"),
    "RX 7900 XTX": ModelSpec(vram_mb=24560, power_limit_w=355, idle_power_w=15, vendor="amd"),
    # Apple Silicon: unified memory of the base configuration as "VRAM", the Mac Studio's
    # maximum continuous power as the limit (the figures the rate card uses)
    "M1 Ultra": ModelSpec(vram_mb=65536, power_limit_w=370, idle_power_w=12, vendor="apple"),
    "M2 Ultra": ModelSpec(vram_mb=65536, power_limit_w=295, idle_power_w=11, vendor="apple"),
    "M3 Ultra": ModelSpec(vram_mb=98304, power_limit_w=480, idle_power_w=10, vendor="apple"),
}


def vendor_of(model: str) -> GpuVendor:
    """The vendor of one of our model names ("unknown" for a model we do not know)."""
    known = KNOWN_MODELS.get(model)
    return known.vendor if known is not None else "unknown"
