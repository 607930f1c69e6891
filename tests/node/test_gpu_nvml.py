"""The real NVML code path (pynvml -> libnvidia-ml.so.1) against a TEST DOUBLE library.

No GPU exists on the test machine, so ``fakenvml/fakenvml.c`` — a small fake of the NVML
entry points we call, returning values the test sets in the environment — is compiled
here with gcc and found by pynvml's ordinary ``CDLL("libnvidia-ml.so.1")`` through
``LD_LIBRARY_PATH`` in a child process. Nothing in dgpu knows it is fake: the same code
picks up NVIDIA's driver on a machine that has one. Child processes keep the fake out of
the test process (other tests must see no driver here).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE_DIR = Path(__file__).parent / "fakenvml"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the fake ``libnvidia-ml.so.1``, freshly compiled."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the fake NVML library (apt-get install gcc)")
    out = tmp_path_factory.mktemp("fakenvml")
    subprocess.run(
        [
            gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
            "-Wl,-soname,libnvidia-ml.so.1",
            "-o", str(out / "libnvidia-ml.so.1"), str(FAKE_DIR / "fakenvml.c"),
        ],
        check=True,
    )  # fmt: skip
    return out


def run_probe(
    lib_dir: Path | None, env: dict[str, str], request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``fakenvml/probe.py`` in a child whose loader sees ``lib_dir`` (or nothing)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FAKENVML_")}
    child_env["LD_LIBRARY_PATH"] = str(lib_dir) if lib_dir is not None else ""
    child_env.update(env)
    proc = subprocess.run(
        [sys.executable, str(FAKE_DIR / "probe.py"), json.dumps(request or {})],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    result["log"] = proc.stderr
    return result


def test_nvml_path_reports_what_the_driver_says(fake_nvml_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    result = run_probe(
        fake_nvml_dir,
        {
            "FAKENVML_CALL_LOG": str(calls),
            "FAKENVML_COUNT": "2",
            "FAKENVML_NAMES": "NVIDIA A100-SXM4-80GB;NVIDIA GeForce RTX 4090",
            "FAKENVML_UUIDS": "GPU-11111111-2222-3333-4444-555555555555;GPU-aaaa",
            "FAKENVML_MEM_TOTAL_MB": "81920;24564",
            "FAKENVML_POWER_LIMIT_MW": "400000;450000",
            "FAKENVML_UTIL": "37;0",
            "FAKENVML_MEM_USED_MB": "1024;12",
            "FAKENVML_POWER_MW": "251000;21500",
            "FAKENVML_TEMP_C": "61;33",
            "FAKENVML_DRIVER_VERSION": "535.183.01",
        },
        {"rounds": [{}, {"FAKENVML_UTIL": "99;5", "FAKENVML_TEMP_C": "80;34"}]},
    )
    assert result["simulated"] is False
    assert result["gpus"] == [
        {
            "index": 0,
            "uuid": "GPU-11111111-2222-3333-4444-555555555555",
            "model": "A100",
            "raw_name": "NVIDIA A100-SXM4-80GB",
            "vram_mb": 81920,
            "power_limit_w": 400,
            "simulated": False,
            "vendor": "nvidia",
            "driver_version": "535.183.01",
            "devices": [],
            "board_uuid": True,
        },
        {
            "index": 1,
            "uuid": "GPU-aaaa",
            "model": "RTX 4090",
            "raw_name": "NVIDIA GeForce RTX 4090",
            "vram_mb": 24564,
            "power_limit_w": 450,
            "simulated": False,
            "vendor": "nvidia",
            "driver_version": "535.183.01",
            "devices": [],
            "board_uuid": True,
        },
    ]
    first, second = result["rounds"]
    assert first == [
        {"index": 0, "util_pct": 37, "mem_used_mb": 1024, "power_mw": 251000, "temp_c": 61},
        {"index": 1, "util_pct": 0, "mem_used_mb": 12, "power_mw": 21500, "temp_c": 33},
    ]
    # Readings are live: the second round sees the values changed in between.
    assert [(s["util_pct"], s["temp_c"]) for s in second] == [(99, 80), (5, 34)]
    called = calls.read_text().split()
    assert called[0] == "nvmlInitWithFlags"
    assert called[-1] == "nvmlShutdown"
    for name in (
        "nvmlDeviceGetCount_v2",
        "nvmlSystemGetDriverVersion",
        "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTemperature",
    ):
        assert name in called


def test_driver_not_loaded_falls_back_to_simulated(fake_nvml_dir: Path) -> None:
    result = run_probe(fake_nvml_dir, {"FAKENVML_INIT_ERROR": "9"})  # DRIVER_NOT_LOADED
    assert result["simulated"] is True
    assert all(g["simulated"] for g in result["gpus"])
    assert "GPUs are SIMULATED" in result["log"]
    assert "Driver Not Loaded" in result["log"]


def test_driver_not_loaded_is_a_typed_error_when_nvml_is_required(fake_nvml_dir: Path) -> None:
    result = run_probe(fake_nvml_dir, {"FAKENVML_INIT_ERROR": "9"}, {"prefer": "nvml"})
    assert result["error"]["type"] == "NvmlUnavailable"
    assert result["error"]["function"] == "nvmlInit"
    assert result["error"]["nvml_code"] == 9


def test_no_library_at_all(tmp_path: Path) -> None:
    if ctypes.util.find_library("nvidia-ml") is not None:
        pytest.skip("this machine has a real NVIDIA driver, so the library is always found")
    auto = run_probe(tmp_path, {})
    assert auto["simulated"] is True
    assert "NVML Shared Library Not Found" in auto["log"]
    required = run_probe(tmp_path, {}, {"prefer": "nvml"})
    assert required["error"]["type"] == "NvmlUnavailable"
    assert required["error"]["nvml_code"] == 12  # NVML_ERROR_LIBRARY_NOT_FOUND


def test_driver_with_no_gpu_is_unavailable(fake_nvml_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    result = run_probe(
        fake_nvml_dir,
        {"FAKENVML_COUNT": "0", "FAKENVML_CALL_LOG": str(calls)},
        {"prefer": "nvml"},
    )
    assert result["error"]["type"] == "NvmlUnavailable"
    assert "no GPU" in result["error"]["message"]
    assert calls.read_text().split()[-1] == "nvmlShutdown"  # init was undone


def test_unsupported_power_and_temperature_read_as_zero(fake_nvml_dir: Path) -> None:
    result = run_probe(
        fake_nvml_dir,
        {
            "FAKENVML_NOT_SUPPORTED": (
                "nvmlDeviceGetPowerUsage;nvmlDeviceGetTemperature;nvmlDeviceGetEnforcedPowerLimit"
            ),
            "FAKENVML_UTIL": "42",
        },
    )
    assert result["gpus"][0]["power_limit_w"] == 0
    [[sample]] = result["rounds"]
    assert (sample["util_pct"], sample["power_mw"], sample["temp_c"]) == (42, 0, 0)


def test_other_nvml_failures_are_typed_errors(fake_nvml_dir: Path) -> None:
    result = run_probe(fake_nvml_dir, {"FAKENVML_NOT_SUPPORTED": "nvmlDeviceGetUtilizationRates"})
    assert result["error"] == {
        "type": "GpuError",
        "message": "NVML nvmlDeviceGetUtilizationRates failed: Not Supported",
        "function": "nvmlDeviceGetUtilizationRates",
        "nvml_code": 3,
        "amdsmi_status": None,
    }


def test_sampling_an_index_the_driver_lacks(fake_nvml_dir: Path) -> None:
    result = run_probe(fake_nvml_dir, {"FAKENVML_COUNT": "1"}, {"sample_indexes": [1]})
    assert result["error"]["type"] == "GpuNotFound"
    assert result["error"]["message"] == "no GPU with index 1 (this backend has 1)"
