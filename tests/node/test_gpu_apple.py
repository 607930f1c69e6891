"""The Apple Silicon backend on recorded-shape outputs of macOS's tools (TEST FIXTURES).

No Mac exists here: ``fixtures/apple/`` holds the outputs of ``system_profiler``,
``sysctl`` and ``ioreg`` in the shapes they print on M1/M2/M3 Ultra Mac Studios (how they
were made is in that folder's README). The backend's own parsing and ``open`` run
unchanged; only the command runner is the test's, answering each argv with a file.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from dgpu.node.gpu import AppleBackend, AppleGpuUnavailable, GpuError, GpuNotFound, detect_backend
from dgpu.node.gpu.apple import IOREG, PROFILER, SYSCTL, describe, parse_ioreg

FIXTURES = Path(__file__).parent / "fixtures" / "apple"
GIB = 1024


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def recorded(machine: str, ioreg: str = "ioreg_busy.plist") -> dict[tuple[str, ...], str]:
    return {
        PROFILER: _text(f"{machine}.profiler.json"),
        SYSCTL: _text(f"{machine}.sysctl.txt") if (FIXTURES / f"{machine}.sysctl.txt").exists()
        else "",
        IOREG: _text(ioreg),
    }  # fmt: skip


class Replay:
    """TEST DOUBLE of the command runner: answers each known argv with its recording."""

    def __init__(self, outputs: dict[tuple[str, ...], str]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(tuple(argv))
        try:
            return self.outputs[tuple(argv)]
        except KeyError:
            raise GpuError(f"{argv[0]} failed: not recorded", function=argv[0]) from None


@pytest.mark.parametrize(
    ("machine", "model", "raw_name", "vram_gib", "driver", "power_w"),
    [
        ("m1_ultra", "M1 Ultra", "Apple M1 Ultra (48-core GPU)", 64, "macOS 13.6, Metal 3", 370),
        ("m2_ultra", "M2 Ultra", "Apple M2 Ultra (76-core GPU)", 192, "macOS 14.5, Metal 3", 295),
        ("m3_ultra", "M3 Ultra", "Apple M3 Ultra (80-core GPU)", 512, "macOS 15.4, Metal 3", 480),
    ],
)
def test_each_machine_is_read_as_it_is(
    machine: str, model: str, raw_name: str, vram_gib: int, driver: str, power_w: int
) -> None:
    backend = AppleBackend.open(Replay(recorded(machine)), platform="darwin")
    [gpu] = backend.list_gpus()
    assert (gpu.model, gpu.raw_name, gpu.vendor, gpu.driver_version) == (
        model,
        raw_name,
        "apple",
        driver,
    )
    assert gpu.vram_mb == vram_gib * GIB  # the unified memory
    assert gpu.power_limit_w == power_w
    assert gpu.simulated is False and backend.simulated is False
    # no board UUID on a Mac, and no device node for a container
    assert (gpu.board_uuid, gpu.devices) == (False, ())


def test_sample_reads_the_accelerator_statistics() -> None:
    runner = Replay(recorded("m2_ultra"))
    backend = AppleBackend.open(runner, platform="darwin")
    sample = backend.sample(0)
    assert (sample.util_pct, sample.mem_used_mb, sample.power_mw, sample.temp_c) == (
        97,
        51200,
        0,
        0,
    )
    assert runner.calls[-1] == IOREG
    with pytest.raises(GpuNotFound):
        backend.sample(1)


def test_an_accelerator_without_statistics_reads_zero() -> None:
    plist = _text("ioreg_busy.plist").replace("PerformanceStatistics", "SomethingElse")
    assert parse_ioreg(plist) == [(0, 0)]
    with pytest.raises(GpuError, match="property list"):
        parse_ioreg("not a plist")


def test_an_intel_mac_has_no_apple_gpu() -> None:
    with pytest.raises(AppleGpuUnavailable, match="no Apple GPU"):
        describe(_text("intel_amd.profiler.json"), _text("m1_ultra.sysctl.txt"))


@pytest.mark.parametrize(
    ("profiler", "sysctl", "words"),
    [
        ("{not json", "hw.memsize: 1", "no JSON"),
        ('{"SPDisplaysDataType": 3}', "", "no SPDisplaysDataType"),
        (None, "machdep.cpu.brand_string: Apple M2 Ultra\n", "hw.memsize"),
        (None, "hw.memsize: lots\n", "hw.memsize"),
    ],
)
def test_outputs_we_cannot_read_are_typed(profiler: str | None, sysctl: str, words: str) -> None:
    with pytest.raises(AppleGpuUnavailable, match=words):
        describe(profiler or _text("m2_ultra.profiler.json"), sysctl)


def test_a_tool_that_fails_makes_the_backend_unavailable() -> None:
    outputs = recorded("m3_ultra")
    del outputs[SYSCTL]
    with pytest.raises(AppleGpuUnavailable, match="sysctl failed"):
        AppleBackend.open(Replay(outputs), platform="darwin")


def test_only_on_macos() -> None:
    with pytest.raises(AppleGpuUnavailable, match="need macOS"):
        AppleBackend.open(Replay(recorded("m2_ultra")), platform="linux")
    # auto off macOS never asks for the Apple backend, and `apple` named is a typed error
    with pytest.raises(AppleGpuUnavailable):
        detect_backend("apple", platform="linux")


def test_auto_on_macos_without_apple_silicon_falls_back_to_simulated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # this machine is no Mac: macOS's tools are absent, so auto (as on darwin) must say so
    # and fall back to labelled simulated GPUs, never to NVML or AMD SMI
    if shutil.which("system_profiler") is not None:
        pytest.skip("this machine has macOS's tools")
    backend = detect_backend("auto", platform="darwin")
    assert backend.simulated is True
    assert "GPUs are SIMULATED" in caplog.text
    assert "system_profiler failed" in caplog.text
