"""The real AMD SMI code path (AMD's ``amdsmi`` binding -> libamd_smi.so) against a TEST DOUBLE.

No AMD GPU exists on the test machine, so ``fakeamdsmi/fakeamdsmi.c`` — a small fake of the
AMD SMI entry points we call, with the struct layouts the binding declares, returning
values the test sets in the environment — is compiled here with gcc as
``$ROCM_PATH/lib/libamd_smi.so``, where the unmodified binding looks first. The binding
also binds ~180 functions we never call when it is imported; the test generates a stub for
each (answering "not supported") from the installed binding's own list, so a binding of
another version still finds every symbol it wants. Nothing in dgpu knows it is fake.
Child processes keep the fake out of the test process.

Why a fake of the native library and not of the Python module: the binding is pure
ctypes over ``libamd_smi.so``, so faking the library runs AMD's own Python code — its
struct layouts, its "N/A" handling, its exceptions — which a fake module would replace.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE_DIR = Path(__file__).parent / "fakeamdsmi"
PROBE = Path(__file__).parent / "fakenvml" / "probe.py"


def _binding_symbols() -> list[str]:
    """Every function the installed ``amdsmi`` binding binds at import."""
    spec = importlib.util.find_spec("amdsmi")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the amdsmi binding is not installed (pip install -e '.[dev]')")
    wrapper = Path(next(iter(spec.submodule_search_locations))) / "amdsmi_wrapper.py"
    text = wrapper.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"_libraries\['libamd_smi\.so'\]\.(\w+)", text)))


@pytest.fixture(scope="module")
def rocm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ROCm-like folder whose ``lib/libamd_smi.so`` is the fake, freshly compiled."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build the fake AMD SMI library (apt-get install gcc)")
    out = tmp_path_factory.mktemp("fakeamdsmi")
    source = (FAKE_DIR / "fakeamdsmi.c").read_text(encoding="utf-8")
    implemented = set(re.findall(r"^amdsmi_status_t (\w+)\(", source, re.MULTILINE))
    stubs = [
        f"int {name}(void) {{ return 2; }} /* AMDSMI_STATUS_NOT_SUPPORTED */"
        for name in _binding_symbols()
        if name not in implemented
    ]
    assert len(stubs) > 100  # the binding binds far more than we call
    (out / "stubs.c").write_text("\n".join(stubs) + "\n", encoding="utf-8")
    (out / "lib").mkdir()
    subprocess.run(
        [
            gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
            "-o", str(out / "lib" / "libamd_smi.so"),
            str(FAKE_DIR / "fakeamdsmi.c"), str(out / "stubs.c"),
        ],
        check=True,
    )  # fmt: skip
    return out


def run_probe(
    rocm: Path | None, env: dict[str, str], request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run the probe in a child whose ``ROCM_PATH`` is ``rocm`` (or names nothing)."""
    child_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKEAMDSMI_", "FAKENVML_")) and k not in ("ROCM_PATH", "ROCM_HOME")
    }
    child_env["LD_LIBRARY_PATH"] = ""  # no NVML either: auto must reach AMD SMI
    if rocm is not None:
        child_env["ROCM_PATH"] = str(rocm)
    child_env.update(env)
    proc = subprocess.run(
        [sys.executable, str(PROBE), json.dumps({"platform": "linux", **(request or {})})],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)  # nothing but the JSON on stdout
    result["log"] = proc.stderr
    return result


def test_amd_path_reports_what_the_library_says(rocm_path: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    result = run_probe(
        rocm_path,
        {
            "FAKEAMDSMI_CALL_LOG": str(calls),
            "FAKEAMDSMI_COUNT": "2",
            "FAKEAMDSMI_NAMES": "AMD Instinct MI300X;AMD Radeon RX 7900 XTX",
            "FAKEAMDSMI_UUIDS": "4cff73bf-0000-1000-80e9-b0e7f4b9b2f5;61ff744c-0000-1000-8011-1",
            "FAKEAMDSMI_VRAM_MB": "196592;24560",
            "FAKEAMDSMI_POWER_CAP_W": "750;355",
            "FAKEAMDSMI_DRIVER_VERSION": "6.10.5",
            "FAKEAMDSMI_RENDER": "136;129",
            "FAKEAMDSMI_GFX_ACTIVITY": "37;0",
            "FAKEAMDSMI_VRAM_USED_MB": "1024;12",
            "FAKEAMDSMI_POWER_W": "251;21",
            "FAKEAMDSMI_TEMP_HOTSPOT_C": "61;40",
            "FAKEAMDSMI_TEMP_EDGE_C": "",  # MI300: no edge sensor...
        },
        {
            "prefer": "amd",
            "rounds": [
                {},
                {"FAKEAMDSMI_GFX_ACTIVITY": "99;5", "FAKEAMDSMI_TEMP_EDGE_C": "80;34"},
            ],
        },
    )
    assert result["simulated"] is False
    assert result["gpus"] == [
        {
            "index": 0,
            "uuid": "4cff73bf-0000-1000-80e9-b0e7f4b9b2f5",
            "model": "MI300X",
            "raw_name": "AMD Instinct MI300X",
            "vram_mb": 196592,
            "power_limit_w": 750,
            "simulated": False,
            "vendor": "amd",
            "driver_version": "6.10.5",
            "devices": ["/dev/kfd", "/dev/dri/renderD136"],
            "board_uuid": True,
        },
        {
            "index": 1,
            "uuid": "61ff744c-0000-1000-8011-1",
            "model": "RX 7900 XTX",
            "raw_name": "AMD Radeon RX 7900 XTX",
            "vram_mb": 24560,
            "power_limit_w": 355,
            "simulated": False,
            "vendor": "amd",
            "driver_version": "6.10.5",
            "devices": ["/dev/kfd", "/dev/dri/renderD129"],
            "board_uuid": True,
        },
    ]
    first, second = result["rounds"]
    # ...so the hotspot sensor answers; power is the current socket power in watts
    assert first == [
        {"index": 0, "util_pct": 37, "mem_used_mb": 1024, "power_mw": 251000, "temp_c": 61},
        {"index": 1, "util_pct": 0, "mem_used_mb": 12, "power_mw": 21000, "temp_c": 40},
    ]
    # Readings are live; once an edge sensor answers, it is the one read.
    assert [(s["util_pct"], s["temp_c"]) for s in second] == [(99, 80), (5, 34)]
    called = calls.read_text().split()
    assert called[0] == "amdsmi_init"
    assert called[-1] == "amdsmi_shut_down"
    for name in (
        "amdsmi_get_processor_handles",
        "amdsmi_get_gpu_asic_info",
        "amdsmi_get_gpu_device_uuid",
        "amdsmi_get_gpu_memory_total",
        "amdsmi_get_gpu_driver_info",
        "amdsmi_get_power_cap_info",
        "amdsmi_get_gpu_enumeration_info",
        "amdsmi_get_gpu_activity",
        "amdsmi_get_gpu_memory_usage",
        "amdsmi_get_power_info",
        "amdsmi_get_temp_metric",
    ):
        assert name in called


def test_auto_finds_amd_when_nvml_is_absent(rocm_path: Path) -> None:
    result = run_probe(rocm_path, {"FAKEAMDSMI_NAMES": "AMD Instinct MI250X / MI250"})
    assert result["simulated"] is False
    assert [(g["model"], g["vendor"]) for g in result["gpus"]] == [("MI250X", "amd")]


def test_render_node_through_sysfs_when_the_library_cannot_name_it(
    rocm_path: Path, tmp_path: Path
) -> None:
    # an older AMD SMI: no enumeration info; the PCI address leads to the render node
    drm = tmp_path / "sys" / "bus" / "pci" / "devices" / "0000:20:00.0" / "drm"
    (drm / "card1").mkdir(parents=True)
    (drm / "renderD129").mkdir()
    result = run_probe(
        rocm_path,
        {"FAKEAMDSMI_NOT_SUPPORTED": "amdsmi_get_gpu_enumeration_info", "FAKEAMDSMI_BUS": "0x20"},
        {"prefer": "amd", "sysfs": str(tmp_path / "sys")},
    )
    assert result["gpus"][0]["devices"] == ["/dev/kfd", "/dev/dri/renderD129"]


def test_no_render_node_anywhere_is_a_typed_error(rocm_path: Path, tmp_path: Path) -> None:
    result = run_probe(
        rocm_path,
        {"FAKEAMDSMI_NOT_SUPPORTED": "amdsmi_get_gpu_enumeration_info"},
        {"prefer": "amd", "sysfs": str(tmp_path)},
    )
    assert result["error"]["type"] == "GpuError"
    assert "render node" in result["error"]["message"]


def test_driver_not_loaded_is_typed_and_falls_back_under_auto(rocm_path: Path) -> None:
    required = run_probe(rocm_path, {"FAKEAMDSMI_INIT_ERROR": "34"}, {"prefer": "amd"})
    assert required["error"]["type"] == "AmdSmiUnavailable"
    assert required["error"]["function"] == "amdsmi_init"
    assert required["error"]["amdsmi_status"] == 34  # AMDSMI_STATUS_DRIVER_NOT_LOADED
    auto = run_probe(rocm_path, {"FAKEAMDSMI_INIT_ERROR": "34"})
    assert auto["simulated"] is True
    assert "GPUs are SIMULATED" in auto["log"]
    assert "AMDSMI_STATUS_DRIVER_NOT_LOADED" in auto["log"]


def test_no_library_at_all(tmp_path: Path) -> None:
    if Path("/opt/rocm/lib/libamd_smi.so").exists():
        pytest.skip("this machine has ROCm, so the library is always found")
    required = run_probe(None, {}, {"prefer": "amd"})
    assert required["error"]["type"] == "AmdSmiUnavailable"
    assert "libamd_smi.so" in required["error"]["message"]
    auto = run_probe(None, {})
    assert auto["simulated"] is True


def test_library_with_no_gpu_is_unavailable(rocm_path: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    result = run_probe(
        rocm_path,
        {"FAKEAMDSMI_COUNT": "0", "FAKEAMDSMI_CALL_LOG": str(calls)},
        {"prefer": "amd"},
    )
    assert result["error"]["type"] == "AmdSmiUnavailable"
    assert "no GPU" in result["error"]["message"]
    assert calls.read_text().split()[-1] == "amdsmi_shut_down"  # init was undone


def test_unsupported_power_and_temperature_read_as_zero(rocm_path: Path) -> None:
    result = run_probe(
        rocm_path,
        {
            "FAKEAMDSMI_NOT_SUPPORTED": "amdsmi_get_power_info;amdsmi_get_power_cap_info",
            "FAKEAMDSMI_GFX_ACTIVITY": "42",
        },
        {"prefer": "amd"},
    )
    assert result["gpus"][0]["power_limit_w"] == 0
    [[sample]] = result["rounds"]
    assert (sample["util_pct"], sample["power_mw"], sample["temp_c"]) == (42, 0, 0)


def test_other_failures_are_typed_errors(rocm_path: Path) -> None:
    result = run_probe(
        rocm_path, {"FAKEAMDSMI_NOT_SUPPORTED": "amdsmi_get_gpu_activity"}, {"prefer": "amd"}
    )
    assert result["error"]["type"] == "GpuError"
    assert result["error"]["function"] == "amdsmi_get_gpu_activity"
    assert result["error"]["amdsmi_status"] == 2
    assert "NOT_SUPPORTED" in result["error"]["message"]


def test_missing_binding_names_the_extra(tmp_path: Path) -> None:
    # A child where importing amdsmi fails as it does when the extra is not installed.
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['amdsmi'] = None  # TEST DOUBLE: the binding is absent\n"
    )
    result = run_probe(None, {"PYTHONPATH": str(blocker)}, {"prefer": "amd"})
    assert result["error"]["type"] == "MissingExtra"
    assert "dgpu[amd]" in result["error"]["message"]
    auto = run_probe(None, {"PYTHONPATH": str(blocker)})
    assert auto["simulated"] is True
    assert "dgpu[amd]" in auto["log"]
