"""Provider scores: a documented formula from what was settled and observed.

Each part is in ``[0, 1]``; the score is their weighted sum::

    reliability        R = (completed + 1) / (completed + faulted + 2)
    availability       A = offer uptime in the trailing window / min(window, time since first seen)
    volume             V = min(1, log10(1 + settled_dgpu) / 3)
    price-performance  P = min(1, reference / (2 * price)), median over the live offers
                           with a reference price (0.5 at the reference, 1 at half of it)

    score = verification_factor((0.40 R + 0.30 A + 0.10 V + 0.20 P) * H)
    H     = 1 for a proven provider (at least one completed job), NEW_KEY_WEIGHT otherwise

No history is not a good history: before this factor a brand-new key offering at price 1
scored ~0.7 (R = 0.5 by the prior, A = 1 over a span of zero, P = 1), above most providers
that had actually run jobs, so a flood of fresh keys took the top of every search. A key
without a completed job now scores at most ``NEW_KEY_WEIGHT`` (0.25) and searches also put
proven providers first whatever their price (``proven`` is copied onto their offers). To
become proven a provider must complete a job a renter reports as completed (or whose channel
settled on chain): a fake must run jobs, or pay for channels and settlements on chain with
a key of its own per fake, to rank.

Where the inputs come from:

* **completed / faulted** are counted per job (``job_id``) the provider has receipts for.
  A job's outcome is the one its renter reported (``POST /api/v1/reports``); without one,
  the provider's own report; without any, a job whose channel was settled on chain counts as
  completed. ``provider_fault`` counts against the provider; ``renter_cancelled`` counts
  for neither. The Laplace prior starts a new provider at R = 0.5.
* **uptime** is the union of the intervals ``[heard at, expires_at)`` of the provider's
  offers, using the coordinator's clock for the start, so back-dated offers do not count.
* **settled_dgpu** is the sum of the on-chain ``settled`` high-water marks of the provider's
  channels, in dGPU (1000 dGPU settled gives V = 1).
* **P** is 0 for a provider with no live offer of a model the rate card knows.

Probe verdicts (issue 20) then move the weighted sum, in :func:`verification_factor` only::

    verified (recent)   score + 0.10 (1 - score)   a checked claim ranks above an unchecked one
    mismatch (recent)   score x 0.5                a contradicted claim ranks far below
    none / simulated    score                      (inconclusive probes are not counted)

"Recent" is the coordinator's ``verified_window_s`` (default 7 days); the provider's latest
verified, mismatch or simulated verdict in it decides (:meth:`VerdictRepo.standing`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from dgpu.pricing import BASE_UNITS_PER_DGPU

Outcome = Literal["completed", "provider_fault", "renter_cancelled"]
OUTCOMES: Final[tuple[str, ...]] = ("completed", "provider_fault", "renter_cancelled")
WEIGHTS: Final = {
    "reliability": 0.40,
    "availability": 0.30,
    "volume": 0.10,
    "price_performance": 0.20,
}
VOLUME_FULL_DGPU_LOG10: Final = 3.0
NEW_KEY_WEIGHT: Final = 0.25
"""The score factor of a provider without a completed job (see the module docstring)."""


@dataclass(frozen=True)
class ScoreParts:
    reliability: float
    availability: float
    volume: float
    price_performance: float
    jobs_completed: int
    jobs_faulted: int
    uptime_s: int
    window_s: int
    settled: int
    """Base units."""
    verification: str | None = None
    """The provider's recent decisive probe verdict (see :func:`verification_factor`)."""

    @property
    def proven(self) -> bool:
        """Has completed a job: what ranks a provider above every new key."""
        return self.jobs_completed > 0

    @property
    def history_weight(self) -> float:
        return 1.0 if self.proven else NEW_KEY_WEIGHT

    @property
    def score(self) -> float:
        weighted = (
            WEIGHTS["reliability"] * self.reliability
            + WEIGHTS["availability"] * self.availability
            + WEIGHTS["volume"] * self.volume
            + WEIGHTS["price_performance"] * self.price_performance
        )
        return verification_factor(weighted * self.history_weight, self.verification)

    def as_json(self) -> dict[str, object]:
        return {
            "score": round(self.score, 4),
            "weights": dict(WEIGHTS),
            "proven": self.proven,
            "history_weight": self.history_weight,
            "parts": {
                "reliability": round(self.reliability, 4),
                "availability": round(self.availability, 4),
                "volume": round(self.volume, 4),
                "price_performance": round(self.price_performance, 4),
            },
            "inputs": {
                "jobs_completed": self.jobs_completed,
                "jobs_faulted": self.jobs_faulted,
                "uptime_s": self.uptime_s,
                "window_s": self.window_s,
                "settled": self.settled,
            },
            "verification": self.verification,
        }


VERIFIED_BONUS: Final = 0.10
MISMATCH_FACTOR: Final = 0.5


def verification_factor(score: float, verdict: str | None) -> float:
    """``score`` moved by the provider's recent probe verdict (module docstring); stays in
    [0, 1]."""
    if verdict == "verified":
        return score + VERIFIED_BONUS * (1.0 - score)
    if verdict == "mismatch":
        return score * MISMATCH_FACTOR
    return score


def with_verification(parts: ScoreParts, verdict: str | None) -> ScoreParts:
    return replace(parts, verification=verdict)


@dataclass(frozen=True)
class JobEvidence:
    """What is known about one job of the provider."""

    settled: int
    renter_report: str | None
    provider_report: str | None

    @property
    def outcome(self) -> str | None:
        if self.renter_report is not None:
            return self.renter_report
        if self.provider_report is not None:
            return self.provider_report
        return "completed" if self.settled > 0 else None


def reliability(jobs: Iterable[JobEvidence]) -> tuple[float, int, int]:
    outcomes = [job.outcome for job in jobs]
    completed = outcomes.count("completed")
    faulted = outcomes.count("provider_fault")
    return (completed + 1) / (completed + faulted + 2), completed, faulted


def uptime(intervals: Iterable[tuple[int, int]], start: int, end: int) -> int:
    """Seconds of ``[start, end)`` covered by the union of ``intervals``."""
    covered = 0
    cursor = start
    for lo, hi in sorted(intervals):
        lo, hi = max(lo, cursor), min(hi, end)
        if hi > lo:
            covered += hi - lo
            cursor = hi
    return covered


def availability(
    intervals: Iterable[tuple[int, int]], *, first_seen: int, now: int, window_s: int
) -> tuple[float, int, int]:
    span = min(window_s, now - first_seen)
    if span <= 0:
        return (1.0 if any(hi > now for _, hi in intervals) else 0.0), 0, 0
    covered = uptime(intervals, now - span, now)
    return covered / span, covered, span


def volume(settled: int) -> float:
    dgpu = settled / BASE_UNITS_PER_DGPU
    return min(1.0, math.log10(1.0 + dgpu) / VOLUME_FULL_DGPU_LOG10)


def price_performance(offers: Iterable[tuple[str, int]], references: Mapping[str, int]) -> float:
    """``offers`` are (card model, price per GPU-second); ``references`` per card model."""
    ratios = [
        min(1.0, references[model] / (2 * price)) if price > 0 else 1.0
        for model, price in offers
        if model in references
    ]
    return statistics.median(ratios) if ratios else 0.0


def score_parts(
    *,
    jobs: Iterable[JobEvidence],
    intervals: Iterable[tuple[int, int]],
    first_seen: int,
    now: int,
    window_s: int,
    settled: int,
    offers: Iterable[tuple[str, int]],
    references: Mapping[str, int],
) -> ScoreParts:
    rel, completed, faulted = reliability(jobs)
    spans = list(intervals)
    avail, covered, span = availability(spans, first_seen=first_seen, now=now, window_s=window_s)
    return ScoreParts(
        reliability=rel,
        availability=avail,
        volume=volume(settled),
        price_performance=price_performance(offers, references),
        jobs_completed=completed,
        jobs_faulted=faulted,
        uptime_s=covered,
        window_s=span,
        settled=settled,
    )
