"""How a job becomes a container: the provider's :class:`DockerConfig` and the pure
:func:`container_options` that turns a :class:`JobSpec` into ``containers.create`` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import docker.types
from dgpu.node.executors.logs import DEFAULT_LOG_BUFFER_BYTES
from dgpu.node.executors.spec import JobSpec

JOB_LABEL: Final = "dgpu.job"
OWNER_LABEL: Final = "dgpu.owner"
RUN_LABEL: Final = "dgpu.run"  # one start of a job: what its cleanup removes


@dataclass(frozen=True)
class DockerConfig:
    """How this provider runs containers. ``owner`` (the node's address) labels them."""

    owner: str
    base_url: str = "unix:///var/run/docker.sock"
    api_timeout_s: float = 60.0
    max_connections: int = 64  # each running job holds three (exit wait, two log streams)
    workdir: Path | None = None  # where outputs are copied to; None: the system temp dir
    read_only_root: bool = True
    tmpfs_size_mb: int = 64
    pids_limit: int = 1024
    drop_capabilities: bool = True
    init: bool = True  # a tiny init as PID 1: forwards signals, reaps zombies
    user: str | None = None  # "uid:gid" to run as; None: the image's user
    network_when_allowed: str | None = None  # None: the engine's default network
    gpu_driver: str = "nvidia"
    stop_grace_s: float = 5.0
    log_max_bytes: int = 16 * 1024 * 1024  # json-file log cap on the engine side
    log_buffer_bytes: int = DEFAULT_LOG_BUFFER_BYTES
    cleanup_timeout_s: float = 60.0


def container_options(spec: JobSpec, config: DockerConfig, run_id: str) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one job (pure; tested as such)."""
    labels = {**spec.labels, JOB_LABEL: spec.job_id, OWNER_LABEL: config.owner, RUN_LABEL: run_id}
    env = {**spec.env, "DGPU_JOB_ID": spec.job_id}
    options: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "environment": env,
        "labels": labels,
        "read_only": config.read_only_root,
        # /tmp inside the container: a size-capped tmpfs, not the host's /tmp
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={config.tmpfs_size_mb}m"},  # noqa: S108
        "pids_limit": config.pids_limit,
        "security_opt": ["no-new-privileges"],
        "log_config": docker.types.LogConfig(
            type="json-file", config={"max-size": str(config.log_max_bytes), "max-file": "1"}
        ),
        "init": config.init,
        "stdin_open": False,
        "tty": False,
    }
    if spec.network:
        if config.network_when_allowed is not None:
            options["network_mode"] = config.network_when_allowed
    else:
        options["network_mode"] = "none"
    if config.drop_capabilities:
        options["cap_drop"] = ["ALL"]
    if config.user is not None:
        options["user"] = config.user
    if spec.cpu_limit is not None:
        options["nano_cpus"] = round(spec.cpu_limit * 1_000_000_000)
    if spec.memory_limit_mb is not None:
        options["mem_limit"] = f"{spec.memory_limit_mb}m"
        options["memswap_limit"] = f"{spec.memory_limit_mb}m"  # no swap beyond the limit
    if spec.gpu_ids and not spec.gpus_simulated:
        options["device_requests"] = [
            docker.types.DeviceRequest(
                driver=config.gpu_driver, device_ids=list(spec.gpu_ids), capabilities=[["gpu"]]
            )
        ]
    if spec.max_output_bytes > 0:
        env["DGPU_OUTPUT_DIR"] = spec.output_dir
        options["mounts"] = [
            docker.types.Mount(
                target=spec.output_dir, source=volume_name(spec, run_id), type="volume"
            )
        ]
    return options


def volume_name(spec: JobSpec, run_id: str) -> str:
    return f"dgpu-{spec.job_id}-{run_id}"
