"""What every simulation reports, and how it is written.

A report is a plain dict of ints, strings, bools, lists and short-rounded floats (ratios
only: money is always ``int`` base units), written as JSON with sorted keys, so the same
scenario and seed give the same bytes. Every report has ``"invariants"``: invariant name
-> bool; :func:`all_hold` is what the CLI's exit status follows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

RATIO_DIGITS = 4


def ratio(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 decimals (0.0 when ``whole`` is 0)."""
    return round(part / whole, RATIO_DIGITS) if whole else 0.0


def series_block(
    t: Sequence[int], per_model: Mapping[str, Mapping[str, Sequence[Any]]], **totals: Sequence[Any]
) -> dict[str, Any]:
    """Time series: a shared time axis, per-model series and overall ones."""
    block: dict[str, Any] = {"t": list(t)}
    for name, by_model in per_model.items():
        block[name] = {model: list(values) for model, values in by_model.items()}
    for name, values in totals.items():
        block[name] = list(values)
    return block


def distribution(values: Sequence[int], buckets: int = 10) -> dict[str, Any]:
    """Summary and an equal-width histogram of non-negative integers (e.g. exposures)."""
    if not values:
        return {"count": 0, "max": 0, "p50": 0, "p90": 0, "p99": 0, "histogram": []}
    ordered = sorted(values)
    top = ordered[-1]
    width = max(1, -(-top // buckets)) if top else 1
    counts = [0] * buckets
    for value in ordered:
        counts[min(value // width, buckets - 1)] += 1
    return {
        "count": len(ordered),
        "max": top,
        "p50": _rank(ordered, 50),
        "p90": _rank(ordered, 90),
        "p99": _rank(ordered, 99),
        "histogram": [[index * width, count] for index, count in enumerate(counts)],
    }


def _rank(ordered: Sequence[int], p: int) -> int:
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


def all_hold(report: Mapping[str, Any]) -> bool:
    invariants = report.get("invariants", {})
    return bool(invariants) and all(invariants.values())


def to_json(report: Mapping[str, Any]) -> str:
    """The report as one line of JSON with sorted keys (what ``--json`` prints)."""
    return json.dumps(report, sort_keys=True)
