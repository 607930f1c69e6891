"""The market-mode report: one JSON-ready dict, deterministic for a scenario and seed.

Invariants checked:

- ``tokens_conserved``: what renters paid equals what providers earned plus the fees;
- ``multiplier_within_bounds``: every multiplier stayed within the card's bounds;
- ``no_gpu_overbooked``: no provider ever ran more GPUs than it has;
- ``prices_within_renter_limits``: no job was priced above its renter's limit.
"""

from __future__ import annotations

from typing import Any

from dgpu.simulations.market.engine import MarketState, Sample
from dgpu.simulations.report import ratio, series_block


def market_report(state: MarketState, *, seed: int) -> dict[str, Any]:
    sc = state.scenario
    models = state.models
    invariants = {
        "tokens_conserved": sum(state.renter_spent) == sum(state.provider_earned) + state.treasury,
        "multiplier_within_bounds": not state.multiplier_out_of_bounds,
        "no_gpu_overbooked": not state.overbooked
        and all(p.free <= p.gpus for p in state.providers),
        "prices_within_renter_limits": not state.over_limit,
    }
    samples = state.samples
    busy = [sum(s.busy) for s in samples]
    online = [sum(s.online) for s in samples]
    return {
        "mode": "market",
        "scenario": sc.name,
        "seed": seed,
        "duration_s": sc.duration_s,
        "providers": sc.providers.count,
        "renters": sc.renters.count,
        "providers_total": len(state.providers),
        "jobs": {
            "requested": state.requested,
            "matched": state.matched,
            "completed": state.completed,
            "cut_off": state.cut_off,
            "unmatched": state.unmatched,
            "retries": state.retries,
        },
        "utilisation": {
            "mean": ratio(sum(busy), sum(online)),
            "by_model": {
                model: ratio(sum(s.busy[i] for s in samples), sum(s.online[i] for s in samples))
                for i, model in enumerate(models)
            },
        },
        "prices": {
            model: _price_summary([s.price[i] for s in samples]) for i, model in enumerate(models)
        },
        "paid": {
            "renters_total": sum(state.renter_spent),
            "providers_total": sum(state.provider_earned),
            "treasury": state.treasury,
            "largest_renter": max(state.renter_spent, default=0),
            "largest_provider": max(state.provider_earned, default=0),
        },
        "shocks": [_shock_response(state, index) for index in sorted(state.shocked)],
        "series": series_block(
            [s.t for s in samples],
            {
                "price": {m: [s.price[i] for s in samples] for i, m in enumerate(models)},
                "multiplier_bps": {
                    m: [s.multiplier_bps[i] for s in samples] for i, m in enumerate(models)
                },
                "utilisation": {
                    m: [ratio(s.busy[i], s.online[i]) for s in samples]
                    for i, m in enumerate(models)
                },
                "online_gpus": {m: [s.online[i] for s in samples] for i, m in enumerate(models)},
                "median_ask": {m: [_median(s, i) for s in samples] for i, m in enumerate(models)},
            },
            total_utilisation=[ratio(b, o) for b, o in zip(busy, online, strict=True)],
        ),
        "invariants": invariants,
    }


def _median(sample: Sample, index: int) -> int | None:
    asks = sample.asks[index]
    return None if asks is None else asks[1]


def _price_summary(prices: list[int]) -> dict[str, int]:
    if not prices:
        return {"min": 0, "max": 0, "mean": 0}
    return {"min": min(prices), "max": max(prices), "mean": sum(prices) // len(prices)}


def _shock_response(state: MarketState, index: int) -> dict[str, Any]:
    """Mean price and utilisation of the shocked model(s) before, during and after."""
    shock = state.scenario.shocks[index]
    window = shock.duration_s or 12 * 3600
    start, end = shock.at_s, shock.at_s + window
    models = [state.models.index(shock.model)] if shock.model else list(range(len(state.models)))

    def period(lo: int, hi: int) -> dict[str, Any]:
        chosen = [s for s in state.samples if lo <= s.t < hi]
        if not chosen:
            return {"samples": 0, "price": None, "utilisation": None, "online_gpus": None}
        prices = [s.price[m] for s in chosen for m in models]
        busy = sum(s.busy[m] for s in chosen for m in models)
        online = sum(s.online[m] for s in chosen for m in models)
        return {
            "samples": len(chosen),
            "price": sum(prices) // len(prices),
            "utilisation": ratio(busy, online),
            "online_gpus": online // len(chosen),
        }

    return {
        "at_s": shock.at_s,
        "duration_s": shock.duration_s,
        "model": shock.model or "all",
        "change": shock.change,
        "providers_affected": len(state.shocked.get(index, [])),
        "before": period(start - window, start),
        "during": period(start, end),
        "after": period(end, end + window) if shock.duration_s else None,
    }
