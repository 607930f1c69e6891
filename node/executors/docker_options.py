"""How a job becomes a container: the provider's :class:`DockerConfig` and the pure
:func:`container_options` that turns a :class:`JobSpec` into ``containers.create`` arguments.

The watchdog (a job with ``watchdog_s``) bounds the compute nobody pays for when the
provider process is gone (``kill -9``, a crash, SIGSTOP, a host that lost its disk).
It is the engine's own health check: every ``watchdog_check_s`` the Docker Engine runs a
tiny shell script *inside* the container that compares the clock with a deadline file the
provider rewrites after each durable receipt (a host directory bind-mounted read-only).
Past the deadline it sends SIGTERM to every process of the job, past the deadline plus
``stop_grace_s`` SIGKILL; the docker-init at PID 1 then exits and the container stops.

Why this and not the alternatives: a supervising process on the host would have to be
started, kept alive and found again by the provider, and would die with it on a host
reboot or an OOM kill of the process group; a wrapper around the job's command would
change its argv and entrypoint. The health check needs nothing that can die with the
provider — the engine runs it for as long as the container runs — and leaves the job's
command untouched. It needs a shell, ``cat`` and ``date`` in the container: the host's
static busybox is bind-mounted for that when the provider names one
(``DockerConfig.watchdog_busybox``), else the image's own ``sh`` is used. It needs the
docker-init (``init=True``): ``kill -1`` from inside reaches every process but PID 1.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import docker.types
from dgpu.node.executors.errors import JobSpecError
from dgpu.node.executors.logs import DEFAULT_LOG_BUFFER_BYTES
from dgpu.node.executors.spec import JobSpec

JOB_LABEL: Final = "dgpu.job"
OWNER_LABEL: Final = "dgpu.owner"
RUN_LABEL: Final = "dgpu.run"  # one start of a job: what its cleanup removes
WATCHDOG_MOUNT: Final = "/.dgpu-watchdog"
WATCHDOG_BUSYBOX: Final = "/.dgpu-bin/busybox"  # busybox picks its applet by name
INPUT_MOUNT: Final = "/in"  # the job's inputs, read-only
DEADLINE_FILE: Final = "deadline"  # Unix seconds, written whole by the provider


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
    # Deadline files of jobs with a watchdog (one folder per start of a job); None: a
    # folder under the workdir (or the system temp dir).
    watchdog_dir: Path | None = None
    watchdog_busybox: Path | None = None  # a static busybox on the host; None: image's sh
    watchdog_check_s: float = 1.0


def watchdog_script(config: DockerConfig) -> list[str]:
    """The health check's command: stop the job once the provider's deadline has passed."""
    bb = f"{WATCHDOG_BUSYBOX} " if config.watchdog_busybox is not None else ""
    deadline = shlex.quote(f"{WATCHDOG_MOUNT}/{DEADLINE_FILE}")
    kill_after = max(1, round(config.stop_grace_s))
    # A missing or garbled deadline reads as 0: the job stops (fail closed). ``kill`` is
    # the shell's builtin; ``kill -SIG -1`` skips PID 1 (docker-init) and the script.
    script = (
        f"d=$({bb}cat {deadline} 2>/dev/null); case $d in ''|*[!0-9]*) d=0;; esac; "
        f"n=$({bb}date +%s); "
        f'if [ "$n" -gt $((d + {kill_after})) ]; then kill -KILL -1; exit 1; fi; '
        f'if [ "$n" -gt "$d" ]; then kill -TERM -1; exit 1; fi; exit 0'
    )
    if config.watchdog_busybox is not None:
        return ["CMD", WATCHDOG_BUSYBOX, "sh", "-c", script]
    return ["CMD", "sh", "-c", script]


def container_options(
    spec: JobSpec,
    config: DockerConfig,
    run_id: str,
    watchdog_dir: Path | None = None,
    device_groups: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one job (pure; tested as such);
    ``watchdog_dir`` holds the deadline file of a job with a watchdog; ``device_groups``
    are the host's groups owning ``spec.gpu_devices`` (the job joins them: a container
    user, and root without capabilities, open a device node only through its group)."""
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
        if spec.gpu_vendor == "apple":
            raise JobSpecError(
                "gpu_vendor", "Apple GPUs do not reach containers: run with the local executor"
            )
        if spec.gpu_vendor == "amd":
            # ROCm's way: the shared compute node and the job's own render nodes, nothing
            # else of /dev/dri, so the job sees only its GPUs
            if not spec.gpu_devices:
                raise JobSpecError("gpu_devices", "AMD GPUs need their device nodes")
            options["devices"] = [f"{d}:{d}:rwm" for d in spec.gpu_devices]
            if device_groups:
                options["group_add"] = [str(g) for g in sorted(set(device_groups))]
        else:
            options["device_requests"] = [
                docker.types.DeviceRequest(
                    driver=config.gpu_driver,
                    device_ids=list(spec.gpu_ids),
                    capabilities=[["gpu"]],
                )
            ]
    mounts: list[docker.types.Mount] = []
    if spec.max_output_bytes > 0:
        env["DGPU_OUTPUT_DIR"] = spec.output_dir
        mounts.append(
            docker.types.Mount(
                target=spec.output_dir, source=volume_name(spec, run_id), type="volume"
            )
        )
    if spec.input_dir is not None:
        env["DGPU_INPUT_DIR"] = INPUT_MOUNT
        mounts.append(
            docker.types.Mount(
                target=INPUT_MOUNT, source=str(spec.input_dir), type="bind", read_only=True
            )
        )
    if spec.watchdog_s is not None and watchdog_dir is not None:
        # the folder, not the file: the provider replaces the file (rename), and a bind
        # mount of a file would keep showing the old one
        mounts.append(
            docker.types.Mount(
                target=WATCHDOG_MOUNT, source=str(watchdog_dir), type="bind", read_only=True
            )
        )
        if config.watchdog_busybox is not None:
            mounts.append(
                docker.types.Mount(
                    target=WATCHDOG_BUSYBOX,
                    source=str(config.watchdog_busybox),
                    type="bind",
                    read_only=True,
                )
            )
        period_ns = round(config.watchdog_check_s * 1e9)
        options["healthcheck"] = {
            "test": watchdog_script(config),
            "interval": period_ns,
            "timeout": 10 * period_ns,
            "retries": 1,
            "start_period": 0,
        }
    if mounts:
        options["mounts"] = mounts
    return options


def volume_name(spec: JobSpec, run_id: str) -> str:
    return f"dgpu-{spec.job_id}-{run_id}"
