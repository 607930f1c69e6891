"""The README's quick start, run exactly as written, in a fresh copy with a fresh venv.

The command is extracted from the README (between the quickstart markers) so that the
README cannot drift from what works. HOME points into the test's folder, so the devnet's
default state directory (~/.dgpu/devnet) is fresh and the summary it writes there
(demo.json) can be checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FEE_BPS = 500


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- quickstart:begin -->\s*```sh\n(.*?)```\s*<!-- quickstart:end -->", readme, re.S
    )
    assert block is not None, "README lost its quickstart block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = ROOT / raw.decode()
        if not source.is_file():
            continue  # deleted in the work tree
        target = dest / raw.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.mark.slow
def test_readme_quickstart_runs_the_demo_end_to_end(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert any("dgpu devnet --demo" in c for c in commands)
    checkout, home = tmp_path / "dgpu", tmp_path / "home"
    copy_checkout(checkout)
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (
            f"{command!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    assert "demo job completed" in done.stderr
    summary = json.loads((home / ".dgpu" / "devnet" / "demo.json").read_text())
    assert summary["state"] == "succeeded"
    assert summary["seconds_billed"] > 0
    money = ("deposit", "paid_to_provider", "platform_fee", "refunded_to_renter")
    assert all(isinstance(summary[k], int) for k in money)
    assert (
        summary["paid_to_provider"] + summary["platform_fee"] + summary["refunded_to_renter"]
        == summary["deposit"]
    )
    signed = summary["amount_signed"]
    assert signed == summary["seconds_billed"] * summary["price_per_gpu_second"]
    assert summary["platform_fee"] == signed * FEE_BPS // 10_000
    assert summary["paid_to_provider"] == signed - summary["platform_fee"]
    assert summary["settlement_signatures"]
    assert all(len(s) >= 64 for s in summary["settlement_signatures"])
    # the devnet, explorer included, ended with the demo: no URL to a dead server
    assert summary["explorer_url"] is None
    assert "stopped with the devnet" in done.stdout
    assert (checkout / ".venv" / "bin" / "dgpu").exists()
