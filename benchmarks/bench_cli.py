"""Start-up time of the ``dgpu`` command, beside the baseline of Python importing click.

    python benchmarks/bench_cli.py [--runs 15]

Each figure is the median wall time of ``--runs`` fresh processes, measured in the same
run: ``python -c "import click"`` (the floor any click CLI pays), ``dgpu --help``,
``dgpu keys show KEY --json`` and, for contrast, ``dgpu run --help`` (which loads the
node: libp2p, solders, trio). Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dgpu.protocol import Identity, save_identity


def median_wall(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    dgpu = [sys.executable, "-m", "dgpu.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.json"
        save_identity(Identity.generate(), key)
        cases = {
            'python -c "import click" (baseline)': [sys.executable, "-c", "import click"],
            "dgpu --help": [*dgpu, "--help"],
            "dgpu keys show KEY --json": [*dgpu, "keys", "show", str(key), "--json"],
            "dgpu run --help (loads the node)": [*dgpu, "run", "--help"],
        }
        figures = {name: median_wall(argv, runs) for name, argv in cases.items()}
    base = figures['python -c "import click" (baseline)']
    print(f"{'command':40} {'median s':>9} {'vs baseline':>12}")
    for name, seconds in figures.items():
        print(f"{name:40} {seconds:9.3f} {seconds - base:+11.3f}s")


if __name__ == "__main__":
    main()
