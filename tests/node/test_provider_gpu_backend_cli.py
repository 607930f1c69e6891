"""``dgpu provider start --gpu-backend``: a named backend never falls back to simulated GPUs.

Runs the real CLI in a child process; this machine has no GPU, no ROCm and is no Mac, so
each named backend must stop the provider with its reason before anything starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dgpu.protocol.identity import Identity


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ("apple", "Apple GPUs need macOS"),
        ("amd", "libamd_smi.so"),
        ("nvml", "NVML"),
    ],
)
def test_a_named_backend_that_cannot_load_stops_the_provider(
    tmp_path: Path, backend: str, reason: str
) -> None:
    if backend == "amd" and Path("/opt/rocm/lib/libamd_smi.so").exists():
        pytest.skip("this machine has ROCm")
    key = tmp_path / "key.json"
    subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", "keys", "new", str(key)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ROCM_PATH", "ROCM_HOME")}
    proc = subprocess.run(
        [
            sys.executable, "-m", "dgpu.cli.main", "provider", "start",
            "--key", str(key), "--data-dir", str(tmp_path / "data"),
            "--rpc", "http://127.0.0.1:9", "--mint", Identity.from_label("mint").address,
            "--allow-any-image", "--gpu-backend", backend,
        ],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    assert reason in proc.stderr
    assert "SIMULATED" not in proc.stderr
