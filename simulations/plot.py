"""PNG charts of a report (matplotlib, Agg backend: no display needed).

- ``price.png``: reference price per model over time (dGPU per GPU-hour);
- ``utilisation.png``: GPU utilisation per model (and overall) over time;
- ``exposure.png`` (node mode): distribution of the providers' unpaid exposure per job,
  or ``multiplier.png`` (market mode): the demand/supply multiplier per model.

Supply shocks, partitions and other timed events are drawn as shaded spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dgpu.pricing.units import BASE_UNITS_PER_DGPU, SECONDS_PER_HOUR
from dgpu.protocol.extras import import_extra
from dgpu.simulations.errors import SimulationError


def write_plots(report: Mapping[str, Any], folder: Path) -> list[Path]:
    """Write the charts of ``report`` into ``folder`` (created); return their paths."""
    matplotlib = import_extra("matplotlib", extra="sim", purpose="drawing simulation charts")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"cannot create {folder}: {exc.strerror}") from None
    series = report["series"]
    hours = [t / SECONDS_PER_HOUR for t in series["t"]]
    spans = _spans(report)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for model, prices in series["price"].items():
        ax.plot(hours, [p * SECONDS_PER_HOUR / BASE_UNITS_PER_DGPU for p in prices], label=model)
    _decorate(ax, spans, f"{report['scenario']}: reference price", "dGPU per GPU-hour")
    save(fig, "price.png")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for model, values in series["utilisation"].items():
        ax.plot(hours, values, label=model, linewidth=1)
    ax.plot(hours, series["total_utilisation"], label="all GPUs", color="black", linewidth=2)
    ax.set_ylim(0, 1.05)
    _decorate(ax, spans, f"{report['scenario']}: GPU utilisation", "busy / online GPUs")
    save(fig, "utilisation.png")

    if "exposure" in report:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        per_job = report["exposure"]["per_job"]
        histogram = per_job["histogram"]
        if per_job["max"] > 0:
            width = histogram[1][0] - histogram[0][0] if len(histogram) > 1 else 1
            ax.bar(
                [lo / BASE_UNITS_PER_DGPU for lo, _ in histogram],
                [count for _, count in histogram],
                width=width / BASE_UNITS_PER_DGPU,
                align="edge",
                edgecolor="black",
            )
        else:
            ax.bar([0.0], [per_job["count"]], width=0.05, align="edge", edgecolor="black")
            ax.set_xlim(0.0, 1.0)
            ax.text(0.5, 0.5, "every job fully paid", transform=ax.transAxes, ha="center")
        ax.set_title(f"{report['scenario']}: unpaid provider exposure per job")
        ax.set_xlabel("dGPU of work delivered but not paid")
        ax.set_ylabel("jobs")
        save(fig, "exposure.png")
    else:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for model, values in series["multiplier_bps"].items():
            ax.plot(hours, [v / 10_000 for v in values], label=model)
        _decorate(ax, spans, f"{report['scenario']}: demand/supply multiplier", "x card price")
        save(fig, "multiplier.png")
    return written


def _spans(report: Mapping[str, Any]) -> list[tuple[float, float, str]]:
    spans: list[tuple[float, float, str]] = []
    end = report["duration_s"]
    for shock in report.get("shocks", []):
        stop = shock["at_s"] + shock["duration_s"] if shock["duration_s"] else end
        spans.append((shock["at_s"], stop, f"shock {shock['model']} {shock['change']:+g}"))
    for part in report.get("faults", {}).get("partitions", []):
        spans.append((part["at_s"], part["at_s"] + part["duration_s"], "partition"))
    return [(a / SECONDS_PER_HOUR, b / SECONDS_PER_HOUR, label) for a, b, label in spans]


def _decorate(ax: Any, spans: list[tuple[float, float, str]], title: str, ylabel: str) -> None:
    for start, stop, label in spans:
        ax.axvspan(start, stop, alpha=0.12, color="red", label=label)
    ax.set_title(title)
    ax.set_xlabel("simulated hours")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
