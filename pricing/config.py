"""Rate cards and provider pricing policies from TOML.

Money is written in dGPU as a TOML string or decimal (``"0.50"`` or ``0.50``); TOML decimals
are read straight into :class:`~decimal.Decimal` (never float) and must be exact at 9
decimals. Every key is optional; what is left out keeps its default. Unknown keys are errors,
so a typo cannot silently leave a default in place::

    [card]
    vram_per_gb_hour = "0.02"      # dGPU per GB of VRAM per hour
    power_per_watt_hour = "0.001"  # dGPU per watt-hour
    platform_fee_bps = 500         # 5 %
    replace_models = false         # true: only the models below; false: merge into defaults

    [models."H100"]                # a new model needs per_hour and both reference_* keys
    per_hour = "3.00"              # dGPU per GPU-hour
    reference_vram_gb = 80         # nominal spec of the model's reference price
    reference_power_w = 700

    [multiplier]
    min_bps = 5000                 # 0.5x
    max_bps = 20000                # 2x
    smoothing_gpus = 4

A provider's policy (a table of the node's own config, passed here as a mapping)::

    floor_per_gpu_hour = "1.50"    # dGPU; stored per GPU-second, rounded up
    markup_bps = 1000              # +10 %; negative for a discount
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from dgpu.pricing.card import (
    DEFAULT_RATE_CARD,
    ModelRate,
    MultiplierConfig,
    RateCard,
    model_tokens,
)
from dgpu.pricing.errors import PricingConfigError
from dgpu.pricing.provider import ProviderPricing
from dgpu.pricing.units import SECONDS_PER_HOUR, ceil_div, dgpu_to_base_units

_TOP_KEYS = frozenset({"card", "models", "multiplier"})
_CARD_KEYS = frozenset(
    {"vram_per_gb_hour", "power_per_watt_hour", "platform_fee_bps", "replace_models"}
)
_MODEL_KEYS = frozenset({"per_hour", "reference_vram_gb", "reference_power_w"})
_MULTIPLIER_KEYS = frozenset({"min_bps", "max_bps", "smoothing_gpus"})
_PROVIDER_KEYS = frozenset({"floor_per_gpu_hour", "markup_bps"})


def load_rate_card(path: str | Path, *, base: RateCard = DEFAULT_RATE_CARD) -> RateCard:
    """Read a TOML rate card; what the file leaves out comes from ``base``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PricingConfigError(f"cannot read the rate card: {exc}", path=str(path)) from exc
    return parse_rate_card(text, base=base, path=str(path))


def parse_rate_card(
    text: str, *, base: RateCard = DEFAULT_RATE_CARD, path: str | None = None
) -> RateCard:
    """Parse TOML text into a :class:`RateCard` (pure; see the module docstring)."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PricingConfigError(f"not valid TOML: {exc}", path=path) from exc
    try:
        return _rate_card(data, base)
    except PricingConfigError as exc:
        if path is None or exc.path is not None:
            raise
        raise PricingConfigError(exc.reason, key=exc.key, path=path) from exc


def parse_provider_pricing(
    table: Mapping[str, Any], *, key_prefix: str = "pricing"
) -> ProviderPricing:
    """A :class:`ProviderPricing` from an already parsed TOML table (keys named under
    ``key_prefix`` in errors)."""
    _check_keys(table, _PROVIDER_KEYS, key_prefix)
    floor = 0
    if "floor_per_gpu_hour" in table:
        hourly = _money(table["floor_per_gpu_hour"], f"{key_prefix}.floor_per_gpu_hour")
        floor = ceil_div(hourly, SECONDS_PER_HOUR)
    markup = _integer(table.get("markup_bps", 0), f"{key_prefix}.markup_bps", minimum=None)
    try:
        return ProviderPricing(floor_per_gpu_second=floor, markup_bps=markup)
    except PricingConfigError as exc:
        field_name = (exc.key or "").rsplit(".", 1)[-1]
        raise PricingConfigError(exc.reason, key=f"{key_prefix}.{field_name}") from exc


def _rate_card(data: Mapping[str, Any], base: RateCard) -> RateCard:
    _check_keys(data, _TOP_KEYS, "")
    card = _table(data, "card", "card")
    _check_keys(card, _CARD_KEYS, "card")
    replace_models = card.get("replace_models", False)
    if not isinstance(replace_models, bool):
        raise PricingConfigError("must be true or false", key="card.replace_models")

    models: dict[tuple[str, ...], ModelRate] = (
        {} if replace_models else {model_tokens(rate.model): rate for rate in base.models}
    )
    for name, table in _table(data, "models", "models").items():
        key = f"models.{name}"
        if not isinstance(table, Mapping):
            raise PricingConfigError("must be a table", key=key)
        tokens = model_tokens(name)
        if not tokens:
            raise PricingConfigError("a model name needs a letter or digit", key=key)
        models[tokens] = _model(name, table, models.get(tokens), key)
    if not models:
        raise PricingConfigError("the card has no models", key="models")

    return RateCard(
        models=tuple(models.values()),
        vram_per_gb_hour=_money_or(card, "vram_per_gb_hour", "card", base.vram_per_gb_hour),
        power_per_watt_hour=_money_or(
            card, "power_per_watt_hour", "card", base.power_per_watt_hour
        ),
        platform_fee_bps=_integer(
            card.get("platform_fee_bps", base.platform_fee_bps),
            "card.platform_fee_bps",
            maximum=10_000,
        ),
        multiplier=_multiplier(_table(data, "multiplier", "multiplier"), base.multiplier),
    )


def _model(name: str, table: Mapping[str, Any], previous: ModelRate | None, key: str) -> ModelRate:
    _check_keys(table, _MODEL_KEYS, key)
    if previous is None:
        missing = sorted(_MODEL_KEYS - table.keys())
        if missing:
            raise PricingConfigError("a new model needs this key", key=f"{key}.{missing[0]}")
        previous = ModelRate(name, 0, 0, 0)
    return ModelRate(
        model=previous.model,
        per_hour=_money_or(table, "per_hour", key, previous.per_hour),
        reference_vram_gb=_integer(
            table.get("reference_vram_gb", previous.reference_vram_gb),
            f"{key}.reference_vram_gb",
        ),
        reference_power_w=_integer(
            table.get("reference_power_w", previous.reference_power_w),
            f"{key}.reference_power_w",
        ),
    )


def _multiplier(table: Mapping[str, Any], base: MultiplierConfig) -> MultiplierConfig:
    _check_keys(table, _MULTIPLIER_KEYS, "multiplier")
    values = {
        name: _integer(table[name], f"multiplier.{name}")
        for name in _MULTIPLIER_KEYS & table.keys()
    }
    return replace(base, **values)


def _table(data: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise PricingConfigError("must be a table", key=key)
    return value


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for name in table:
        if name not in allowed:
            key = f"{prefix}.{name}" if prefix else name
            raise PricingConfigError(
                f"unknown key (expected one of: {', '.join(sorted(allowed))})", key=key
            )


def _money(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise PricingConfigError(
            f'must be an amount of dGPU such as "0.50", got {value!r}', key=key
        )
    try:
        return dgpu_to_base_units(value)
    except ValueError as exc:
        raise PricingConfigError(str(exc), key=key) from exc


def _money_or(table: Mapping[str, Any], name: str, prefix: str, default: int) -> int:
    return _money(table[name], f"{prefix}.{name}") if name in table else default


def _integer(
    value: object, key: str, *, minimum: int | None = 0, maximum: int | None = None
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PricingConfigError(f"must be a whole number, got {value!r}", key=key)
    if minimum is not None and value < minimum:
        raise PricingConfigError(f"must be at least {minimum}, got {value}", key=key)
    if maximum is not None and value > maximum:
        raise PricingConfigError(f"must be at most {maximum}, got {value}", key=key)
    return value
