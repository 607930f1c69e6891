""" "Why no match": which of a renter's filters exclude the live offers, and what would pass.

For every active filter it counts the live offers that pass it alone and the offers that
pass every *other* filter. When nothing matches, a filter is *blocking* if dropping it
alone would give matches; the hint then says how far to relax it (the cheapest price, the
largest GPU count, ... among the offers that pass every other filter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dgpu.coordinator.store import OfferQuery


@dataclass(frozen=True)
class Candidate:
    model_key: str
    gpu_count: int
    vram_mb: int
    price_per_gpu_second: int
    region: str
    score: float
    simulated: bool


@dataclass(frozen=True)
class FilterVerdict:
    name: str
    wanted: str
    passing_alone: int
    passing_others: int
    blocking: bool
    hint: str


@dataclass(frozen=True)
class Explanation:
    live: int
    matches: int
    verdicts: tuple[FilterVerdict, ...]

    @property
    def blocking(self) -> tuple[FilterVerdict, ...]:
        return tuple(v for v in self.verdicts if v.blocking)


Check = Callable[[Candidate], bool]
Hint = Callable[[Sequence[Candidate]], str]


def _filters(q: OfferQuery) -> list[tuple[str, str, Check, Hint]]:
    found: list[tuple[str, str, Check, Hint]] = []
    if q.model_key is not None:
        model = q.model_key
        found.append(
            (
                "gpu_model",
                model,
                lambda c: c.model_key == model,
                lambda cs: "models on offer: " + ", ".join(sorted({c.model_key for c in cs})),
            )
        )
    if q.count is not None:
        count = q.count
        found.append(
            (
                "count",
                f">= {count} GPUs",
                lambda c: c.gpu_count >= count,
                lambda cs: f"the largest offer has {max(c.gpu_count for c in cs)} GPUs",
            )
        )
    if q.min_vram_mb is not None:
        vram = q.min_vram_mb
        found.append(
            (
                "min_vram_mb",
                f">= {vram} MB",
                lambda c: c.vram_mb >= vram,
                lambda cs: f"the most VRAM on offer is {max(c.vram_mb for c in cs)} MB",
            )
        )
    if q.max_price is not None:
        price = q.max_price
        found.append(
            (
                "max_price",
                f"<= {price} per GPU-second",
                lambda c: c.price_per_gpu_second <= price,
                lambda cs: (
                    f"the cheapest is {min(c.price_per_gpu_second for c in cs)} per GPU-second"
                ),
            )
        )
    if q.region is not None:
        region = q.region
        found.append(
            (
                "region",
                region,
                lambda c: c.region == region,
                lambda cs: "regions on offer: " + ", ".join(sorted({c.region for c in cs})),
            )
        )
    if q.min_score_bps is not None:
        score = q.min_score_bps / 10_000
        found.append(
            (
                "min_score",
                f">= {score:g}",
                lambda c: c.score >= score,
                lambda cs: f"the best provider score is {max(c.score for c in cs):.3f}",
            )
        )
    if q.simulated is not None:
        simulated = q.simulated
        found.append(
            (
                "simulated",
                "simulated only" if simulated else "real GPUs only",
                lambda c: c.simulated == simulated,
                lambda cs: f"{sum(c.simulated for c in cs)} of {len(cs)} offers are simulated",
            )
        )
    return found


def explain(candidates: Sequence[Candidate], query: OfferQuery) -> Explanation:
    filters = _filters(query)
    matches = sum(all(check(c) for _, _, check, _ in filters) for c in candidates)
    verdicts = []
    for i, (name, wanted, check, hint) in enumerate(filters):
        others = [f[2] for j, f in enumerate(filters) if j != i]
        passing_others = [c for c in candidates if all(o(c) for o in others)]
        blocking = matches == 0 and bool(passing_others)
        verdicts.append(
            FilterVerdict(
                name=name,
                wanted=wanted,
                passing_alone=sum(check(c) for c in candidates),
                passing_others=len(passing_others),
                blocking=blocking,
                hint=hint(passing_others) if blocking else "",
            )
        )
    return Explanation(live=len(candidates), matches=matches, verdicts=tuple(verdicts))
