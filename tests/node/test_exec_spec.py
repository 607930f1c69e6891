"""Job specs: what is refused, and the container options each spec gives (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.types
import pytest
from dgpu.node.executors import (
    JOB_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    DockerConfig,
    JobSpec,
    JobSpecError,
    container_options,
)

BASE: dict[str, Any] = {"job_id": "j1", "image": "dgpu/busybox:latest", "command": ("true",)}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"job_id": ""}, "job_id"),
        ({"job_id": "../x"}, "job_id"),
        ({"job_id": "x" * 65}, "job_id"),
        ({"image": ""}, "image"),
        ({"command": ()}, "command"),
        ({"command": ("a\0b",)}, "command"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"OK": "a\0"}}, "env"),
        ({"gpu_ids": ("",)}, "gpu_ids"),
        ({"gpu_ids": ("a,b",)}, "gpu_ids"),
        ({"gpu_devices": ("/dev/sda",)}, "gpu_devices"),
        ({"gpu_devices": ("/dev/dri/../sda",)}, "gpu_devices"),
        ({"gpu_devices": ("/dev/kfd:/etc",)}, "gpu_devices"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"memory_limit_mb": 1}, "memory_limit_mb"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"output_dir": "out"}, "output_dir"),
        ({"output_dir": "/"}, "output_dir"),
        ({"output_dir": "/out/../etc"}, "output_dir"),
        ({"max_output_bytes": -1}, "max_output_bytes"),
        ({"labels": {"dgpu.owner": "me"}}, "labels"),
        ({"labels": {"k": "v" * 300}}, "labels"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(JobSpecError) as info:
        JobSpec(**{**BASE, **changes})
    assert info.value.field == field


def test_spec_is_immutable() -> None:
    env = {"A": "1"}
    spec = JobSpec(**BASE, env=env)
    env["A"] = "2"
    assert spec.env["A"] == "1"
    with pytest.raises(TypeError):
        spec.env["B"] = "3"  # type: ignore[index]


CONFIG = DockerConfig(owner="owner-address")


def test_default_container_options() -> None:
    options = container_options(JobSpec(**BASE), CONFIG, "run1")
    assert options["network_mode"] == "none"
    assert options["read_only"] is True
    assert options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["init"] is True
    assert options["labels"] == {JOB_LABEL: "j1", OWNER_LABEL: "owner-address", RUN_LABEL: "run1"}
    assert options["environment"] == {"DGPU_JOB_ID": "j1", "DGPU_OUTPUT_DIR": "/out"}
    assert options["mounts"] == [
        docker.types.Mount(target="/out", source="dgpu-j1-run1", type="volume")
    ]
    for absent in ("device_requests", "nano_cpus", "mem_limit", "user"):
        assert absent not in options


def test_real_gpus_are_requested_by_id() -> None:
    spec = JobSpec(**BASE, gpu_ids=("GPU-1111", "GPU-2222"))
    [request] = container_options(spec, CONFIG, "r")["device_requests"]
    assert request == docker.types.DeviceRequest(
        driver="nvidia", device_ids=["GPU-1111", "GPU-2222"], capabilities=[["gpu"]]
    )


def test_simulated_gpus_get_no_device_request() -> None:
    spec = JobSpec(**BASE, gpu_ids=("SIM-GPU-1",), gpus_simulated=True)
    assert "device_requests" not in container_options(spec, CONFIG, "r")


def test_amd_gpus_are_mapped_as_rocm_expects() -> None:
    spec = JobSpec(
        **BASE,
        gpu_ids=("4cff73bf-0000-1000-80e9-b0e7f4b9b2f5", "61ff744c-0000-1000-8011-1"),
        gpu_vendor="amd",
        # each GPU brings /dev/kfd and its render node; the spec keeps one /dev/kfd
        gpu_devices=("/dev/kfd", "/dev/dri/renderD136", "/dev/kfd", "/dev/dri/renderD129"),
    )
    options = container_options(spec, CONFIG, "r", device_groups=(110, 44, 110))
    assert options["devices"] == [
        "/dev/kfd:/dev/kfd:rwm",
        "/dev/dri/renderD136:/dev/dri/renderD136:rwm",
        "/dev/dri/renderD129:/dev/dri/renderD129:rwm",
    ]
    assert options["group_add"] == ["44", "110"]
    assert "device_requests" not in options  # no NVIDIA runtime involved
    assert options["cap_drop"] == ["ALL"]  # the devices come without privileges
    simulated = JobSpec(**{**BASE, "gpu_ids": ("SIM-GPU-1",), "gpus_simulated": True},
                        gpu_vendor="amd", gpu_devices=("/dev/kfd",))  # fmt: skip
    assert "devices" not in container_options(simulated, CONFIG, "r")


def test_amd_gpus_without_device_nodes_are_refused() -> None:
    spec = JobSpec(**BASE, gpu_ids=("4cff73bf",), gpu_vendor="amd")
    with pytest.raises(JobSpecError) as info:
        container_options(spec, CONFIG, "r")
    assert info.value.field == "gpu_devices"


def test_apple_gpus_never_go_to_a_container() -> None:
    spec = JobSpec(**BASE, gpu_ids=("apple-gpu-0",), gpu_vendor="apple")
    with pytest.raises(JobSpecError, match="local executor") as info:
        container_options(spec, CONFIG, "r")
    assert info.value.field == "gpu_vendor"


def test_limits_network_and_outputs() -> None:
    spec = JobSpec(**BASE, cpu_limit=1.5, memory_limit_mb=512, network=True, max_output_bytes=0)
    options = container_options(spec, CONFIG, "r")
    assert options["nano_cpus"] == 1_500_000_000
    assert options["mem_limit"] == options["memswap_limit"] == "512m"
    assert "network_mode" not in options  # the engine's default network
    assert "mounts" not in options
    assert "DGPU_OUTPUT_DIR" not in options["environment"]
    named = container_options(spec, DockerConfig(owner="o", network_when_allowed="jobs"), "r")
    assert named["network_mode"] == "jobs"


def test_inputs_are_bind_mounted_read_only_at_in() -> None:
    spec = JobSpec(**BASE, input_dir=Path("/var/dgpu/inputs/j1"))
    options = container_options(spec, CONFIG, "r")
    assert options["network_mode"] == "none"  # inputs change nothing of the network
    assert options["environment"]["DGPU_INPUT_DIR"] == "/in"
    assert (
        docker.types.Mount(target="/in", source="/var/dgpu/inputs/j1", type="bind", read_only=True)
        in options["mounts"]
    )
    with pytest.raises(JobSpecError, match="input_dir"):
        JobSpec(**BASE, input_dir=Path("relative"))
