"""Probe jobs: the in-job script, its report, the verdict and its signature.

The script runs for real (``sh``, as busybox runs it in the devnet test). GPUs do not
exist here, so the ``verified`` case uses **labelled test doubles**: the offer comes from
the fake NVML library (``fakenvml/``, through the real NvmlBackend), and inside the "job"
a fake ``nvidia-smi`` and a fake PyTorch answer (``fixtures/probe_double/``, see its
README). The report lines of the parse tests follow the formats the tools document.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dgpu.node.gpu import GpuInfo
from dgpu.node.renter.probe import (
    DeviceReading,
    ProbeError,
    ProbeReading,
    judge,
    parse_probe_output,
    probe_command,
    sign_verdict,
    stdout_of,
)
from dgpu.pricing import DEFAULT_RATE_CARD, PROBE_BANDS, band_for
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import OfferTerms, make_offer
from dgpu.protocol.signing import verify

from tests.node.test_gpu_nvml import fake_nvml_dir, run_probe  # noqa: F401 (fixture)

DOUBLE = Path(__file__).parent / "fixtures" / "probe_double"
H100_UUID = "GPU-8c5b1a3e-0000-4000-8000-000000000000"
NOW = 1_800_000_000


def offer_of(gpu: GpuInfo, provider: Identity, *, simulated: bool = False) -> Offer:
    terms = OfferTerms(
        gpu_model=gpu.model,
        gpu_count=1,
        vram_mb=gpu.vram_mb,
        price_per_gpu_second=1_000,
        mint=bytes(32),
        region="local",
        max_duration_s=600,
        simulated=simulated,
        gpu_vendor=gpu.vendor,
        gpu_name=gpu.raw_name,
        driver_version=gpu.driver_version,
        gpu_uuids=(gpu.uuid,) if gpu.board_uuid else (),
    )
    return make_offer(provider, terms, multiaddrs=[], now=NOW, ttl_s=600)


H100 = GpuInfo(
    index=0,
    uuid=H100_UUID,
    model="H100",
    raw_name="NVIDIA H100 80GB HBM3",
    vram_mb=81559,
    power_limit_w=700,
    simulated=False,
    vendor="nvidia",
    driver_version="550.90.07",
)


def run_script(env: dict[str, str]) -> bytes:
    """Run the probe job's command as the local executor would, on this machine."""
    proc = subprocess.run(
        list(probe_command()), env=env, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def double_env(**extra: str) -> dict[str, str]:
    """A job environment where the GPU software is the labelled doubles."""
    return {
        "PATH": f"{DOUBLE / 'bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(DOUBLE),
        "LANG": "C.UTF-8",
        **extra,
    }


def test_fake_nvml_offer_probed_with_doubles_is_verified(fake_nvml_dir: Path) -> None:  # noqa: F811
    # the provider's side: the real NVML backend reads the fake library (TEST DOUBLE)
    found = run_probe(
        fake_nvml_dir,
        {
            "FAKENVML_COUNT": "1",
            "FAKENVML_NAMES": "NVIDIA H100 80GB HBM3",
            "FAKENVML_UUIDS": H100_UUID,
            "FAKENVML_MEM_TOTAL_MB": "81559",
            "FAKENVML_DRIVER_VERSION": "550.90.07",
        },
        {"prefer": "nvml"},
    )
    fields: dict[str, Any] = {**found["gpus"][0], "devices": tuple(found["gpus"][0]["devices"])}
    gpu = GpuInfo(**fields)
    assert (gpu.model, gpu.vendor, gpu.simulated) == ("H100", "nvidia", False)
    provider, renter = Identity.generate(), Identity.generate()
    offer = offer_of(gpu, provider)
    # the job's side: the real script, with a fake nvidia-smi and fake torch (TEST DOUBLES)
    reading = parse_probe_output(run_script(double_env()))
    seen = DeviceReading("nvidia", "NVIDIA H100 80GB HBM3", 81559, "550.90.07", H100_UUID)
    assert reading.devices == (dataclasses.replace(seen, source="nvidia-smi"),)
    judgement = judge(offer, reading)
    assert judgement.verdict == "verified", judgement.reasons
    verdict = sign_verdict(renter, offer, b"\x01" * 16, judgement, now=NOW)
    verify(verdict, renter.public_key)
    assert (verdict.verdict, verdict.provider, verdict.offer_id) == (
        "verified", provider.public_key, offer.offer_id,
    )  # fmt: skip
    band = band_for("H100")
    assert band is not None and verdict.measured_gflops == judgement.gflops > band.min_gflops


def test_a_slow_card_claiming_h100_is_flagged() -> None:
    # the double answers as an A100 does on nvidia-smi and times the loop like one
    env = double_env(
        FAKE_NVIDIA_SMI_CSV=f"NVIDIA A100-SXM4-80GB, 81920, 550.90.07, {H100_UUID}",
        FAKE_MATMUL_MS="30.0",
    )
    judgement = judge(offer_of(H100, Identity.generate()), parse_probe_output(run_script(env)))
    assert judgement.verdict == "mismatch"
    assert any("A100" in reason and "H100" in reason for reason in judgement.reasons)
    assert any("below the H100 band" in reason for reason in judgement.reasons)


def test_simulated_gpus_never_verify_even_with_a_perfect_reading() -> None:
    offer = offer_of(H100, Identity.generate(), simulated=True)
    judgement = judge(offer, parse_probe_output(run_script(double_env())))
    assert judgement.verdict == "simulated"
    assert judge(offer, None).verdict == "simulated"


def test_no_gpu_in_the_job_contradicts_a_real_offer() -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ""}
    reading = parse_probe_output(run_script(env))
    assert reading.devices == ()
    judgement = judge(offer_of(H100, Identity.generate()), reading)
    assert judgement.verdict == "mismatch"
    assert "saw no GPU" in judgement.reasons[0]


def test_devices_match_but_no_workload_is_inconclusive() -> None:
    env = {"PATH": f"{DOUBLE / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": ""}
    reading = parse_probe_output(run_script(env))
    assert reading.gflops is None and reading.bench_note
    judgement = judge(offer_of(H100, Identity.generate()), reading)
    assert judgement.verdict == "inconclusive"
    assert "did not run" in judgement.reasons[0]


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"vram_mb": 40960}, "MiB"),
        ({"uuid": "GPU-00000000-1111-2222-3333-444444444444"}, "board"),
        ({"driver": "535.104.05"}, "driver"),
        ({"vendor": "amd"}, "is amd"),
    ],
)
def test_each_contradiction_is_named(change: dict[str, Any], word: str) -> None:
    base = DeviceReading("nvidia", "NVIDIA H100 80GB HBM3", 81559, "550.90.07", H100_UUID)
    device = dataclasses.replace(base, **change)
    judgement = judge(offer_of(H100, Identity.generate()), ProbeReading((device,), 600_000))
    assert judgement.verdict == "mismatch"
    assert any(word in reason for reason in judgement.reasons), judgement.reasons


def test_parse_reads_procfs_sysfs_and_sysctl_lines() -> None:
    # shapes of /proc/driver/nvidia (driver 550), amdgpu's sysfs and macOS's sysctl
    report = (
        b"noise before\n"
        b"dgpu-probe 1\n"
        b"nvidia-driver NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.90.07  Fri May 31\n"
        b"nvidia-proc NVIDIA H100 80GB HBM3|GPU-8c5b1a3e-0000-4000-8000-000000000000\n"
        b"dri renderD128|0x1002|0x74a1|205822885888|\n"
        b"dri renderD129|0x8086|0x56a0|0|\n"
        b"apple Apple M2 Ultra|68719476736\n"
        b"bench 41000|Apple GPU (MLX)\n"
        b"dgpu-probe end\n"
        b"bench 999999999|after the end: ignored\n"
    )
    reading = parse_probe_output(report)
    assert [(d.vendor, d.model, d.vram_mb, d.driver, d.uuid) for d in reading.devices] == [
        ("nvidia", "H100", 0, "550.90.07", H100_UUID),
        ("amd", "MI300X", 196288, "", ""),
        ("apple", "M2 Ultra", 65536, "", ""),
    ]
    assert reading.gflops == 41000


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "no probe report"),
        (b"dgpu-probe 1\nnvidia x, 1, 2, 3\n", "cut short"),
        (b"x" * 200_000, "no probe report"),
    ],
)
def test_bad_reports_are_refused_in_words(data: bytes, words: str) -> None:
    with pytest.raises(ProbeError, match=words):
        parse_probe_output(data)


def test_stdout_of_keeps_stdout_only() -> None:
    assert stdout_of([("stdout", b"a"), ("stderr", b"b"), ("stdout", b"c")]) == b"ac"


def test_every_priced_model_has_a_band() -> None:
    assert {b.model for b in PROBE_BANDS} == set(DEFAULT_RATE_CARD.model_names)
    for band in PROBE_BANDS:
        assert 0 < band.min_gflops < band.max_gflops
