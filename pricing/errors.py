"""Typed errors of :mod:`dgpu.pricing`.

::

    DgpuError
    └── PricingError
        ├── PricingConfigError  a rate card or pricing policy (file or value) that is wrong;
        │                       ``key`` names the culprit
        ├── UnknownModel        a GPU model the rate card has no rate for
        └── AmountError         a negative quantity, or an amount too large for a message
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class PricingError(DgpuError):
    """Root of the errors of :mod:`dgpu.pricing`."""


class PricingConfigError(PricingError):
    """A rate card or provider pricing policy (file or value) that cannot be used.

    ``key`` is the dotted TOML key of the culprit (``"models.H100.per_hour"``), or ``None``
    when the whole file is at fault (unreadable, not TOML); ``path`` is the file, if any.
    """

    def __init__(self, reason: str, *, key: str | None = None, path: str | None = None) -> None:
        where = " ".join(part for part in (path and f"{path}:", key and f"key {key!r}:") if part)
        super().__init__(f"{where} {reason}" if where else reason)
        self.reason = reason
        self.key = key
        self.path = path


class UnknownModel(PricingError):
    """A GPU model name that matches no model of the rate card."""

    def __init__(self, model: str, known: tuple[str, ...]) -> None:
        super().__init__(f"no rate for GPU model {model!r} (known: {', '.join(known)})")
        self.model = model
        self.known = known


class AmountError(PricingError):
    """A quantity out of range: negative, or a result too large for a u64 amount field."""

    def __init__(self, quantity: str, value: int, reason: str) -> None:
        super().__init__(f"{quantity} = {value}: {reason}")
        self.quantity = quantity
        self.value = value
