"""Simulated GPUs: parsing their configuration, labelling, and deterministic readings."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest
from dgpu.node.gpu import (
    KNOWN_MODELS,
    GpuConfigError,
    GpuNotFound,
    GpuSample,
    SimulatedBackend,
    SimulatedConfig,
    SimulatedGpuSpec,
    detect_backend,
    load_simulated_config,
    normalize_model_name,
    parse_gpu_spec,
)
from dgpu.protocol import messages
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("raw", "model"),
    [
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 3090 Ti", "RTX 3090 Ti"),
        ("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080 SUPER"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 NVL", "H100"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla T4", "T4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("Some Future GPU\u2122 48GB", "Some Future GPU"),
        ("NVIDIA", "unknown"),
        ("RTX 4090", "RTX 4090"),
    ],
)
def test_model_names_are_normalised(raw: str, model: str) -> None:
    assert normalize_model_name(raw) == model


@given(st.text(max_size=200))
def test_any_driver_name_gives_a_name_offers_accept(raw: str) -> None:
    name = normalize_model_name(raw)
    msgspec.convert(name, messages.ModelName)


def test_spec_string() -> None:
    config = parse_gpu_spec("2xRTX 4090, 1x NVIDIA H100 80GB HBM3,A100,1xFOO:16384", seed=5)
    assert config == SimulatedConfig(
        (
            SimulatedGpuSpec("RTX 4090", 2),
            SimulatedGpuSpec("H100", 1),
            SimulatedGpuSpec("A100", 1),
            SimulatedGpuSpec("FOO", 1, 16384),
        ),
        seed=5,
    )
    gpus = SimulatedBackend(config).list_gpus()
    assert [(g.index, g.model, g.vram_mb) for g in gpus] == [
        (0, "RTX 4090", KNOWN_MODELS["RTX 4090"].vram_mb),
        (1, "RTX 4090", KNOWN_MODELS["RTX 4090"].vram_mb),
        (2, "H100", KNOWN_MODELS["H100"].vram_mb),
        (3, "A100", KNOWN_MODELS["A100"].vram_mb),
        (4, "FOO", 16384),
    ]
    assert all(g.simulated for g in gpus)
    assert all(g.uuid.startswith("SIM-GPU-") for g in gpus)
    assert len({g.uuid for g in gpus}) == len(gpus)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "cannot parse"),
        ("2x", "cannot parse"),
        ("1xRTX 4090,", "cannot parse"),
        ("0xRTX 4090", "must be"),
        ("65xH100", "65 in total"),
        ("1xMYSTERY", "needs its VRAM"),
        ("1xFOO:0", "vram_mb"),
    ],
)
def test_bad_spec_strings_say_why(spec: str, words: str) -> None:
    with pytest.raises(GpuConfigError, match=words):
        parse_gpu_spec(spec)


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "gpus.toml"
    path.write_text(
        'seed = 9\n[[gpus]]\nmodel = "RTX 4090"\ncount = 2\n'
        '[[gpus]]\nmodel = "Custom X"\nvram_mb = 1000\npower_limit_w = 123\n'
    )
    config = load_simulated_config(path)
    assert config == SimulatedConfig(
        (SimulatedGpuSpec("RTX 4090", 2), SimulatedGpuSpec("Custom X", 1, 1000, 123)), seed=9
    )
    assert SimulatedBackend(config).list_gpus()[2].power_limit_w == 123


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("seed = 1\n", "at least one"),
        ('colour = "red"\n[[gpus]]\nmodel = "A100"\n', "unknown key"),
        ('[[gpus]]\nmodel = "A100"\nvram = 3\n', r"gpus\[0\]: unknown key"),
        ('[[gpus]]\nmodel = "A100"\ncount = "two"\n', "'count' must be an integer"),
        ("[[gpus]]\ncount = 1\n", "'model'"),
        ('seed = "x"\n[[gpus]]\nmodel = "A100"\n', "'seed'"),
        ("[[gpus\n", "cannot read"),
    ],
)
def test_bad_toml_says_why(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "gpus.toml"
    path.write_text(text)
    with pytest.raises(GpuConfigError, match=words):
        load_simulated_config(path)


def readings(backend: SimulatedBackend, index: int, n: int) -> list[GpuSample]:
    return [backend.sample(index) for _ in range(n)]


def test_samples_are_deterministic_per_seed() -> None:
    config = parse_gpu_spec("2xRTX 4090,1xH100", seed=42)
    a, b = SimulatedBackend(config), SimulatedBackend(config)
    assert a.list_gpus() == b.list_gpus()
    assert readings(a, 0, 20) == readings(b, 0, 20)
    other = SimulatedBackend(parse_gpu_spec("2xRTX 4090,1xH100", seed=43))
    assert other.list_gpus()[0].uuid != a.list_gpus()[0].uuid
    assert readings(other, 2, 20) != readings(a, 2, 20)


def test_each_gpu_has_its_own_sequence() -> None:
    config = parse_gpu_spec("2xA100", seed=1)
    alone, interleaved = SimulatedBackend(config), SimulatedBackend(config)
    expected = readings(alone, 0, 10)
    got = []
    for _ in range(10):
        interleaved.sample(1)
        got.append(interleaved.sample(0))
    assert got == expected


def test_busy_gpus_look_loaded() -> None:
    backend = SimulatedBackend(parse_gpu_spec("1xH100", seed=3))
    idle = readings(backend, 0, 50)
    backend.set_busy(0, True)
    busy = readings(backend, 0, 50)
    assert max(s.util_pct for s in idle) < min(s.util_pct for s in busy)
    assert max(s.power_mw for s in idle) < min(s.power_mw for s in busy)
    assert max(s.mem_used_mb for s in idle) < min(s.mem_used_mb for s in busy)
    assert all(s.power_mw <= 700_000 for s in busy)


@given(seed=st.integers(0, 2**64), busy=st.booleans())
def test_samples_fit_the_wire_message(seed: int, busy: bool) -> None:
    backend = SimulatedBackend(parse_gpu_spec("1xRTX 4090,1xH200,1xBIG:4194304", seed=seed))
    for gpu in backend.list_gpus():
        backend.set_busy(gpu.index, busy)
        s = backend.sample(gpu.index)
        msgspec.convert(
            [s.index, s.util_pct, s.mem_used_mb, s.power_mw, s.temp_c], messages.GpuSample
        )


def test_unknown_index() -> None:
    backend = SimulatedBackend(parse_gpu_spec("1xT4"))
    with pytest.raises(GpuNotFound, match="no GPU with index 1"):
        backend.sample(1)
    with pytest.raises(GpuNotFound):
        backend.set_busy(-1, True)


def test_detection_without_a_driver_is_labelled_simulated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dgpu.node.gpu")
    backend = detect_backend("simulated", parse_gpu_spec("2xL4", seed=7))
    assert backend.simulated
    assert [g.model for g in backend.list_gpus()] == ["L4", "L4"]
    assert "GPUs are SIMULATED (simulated GPUs requested): 0=L4, 1=L4" in caplog.text
    backend.close()
