"""What a job is (:class:`JobSpec`) and what it leaves (:class:`JobExit`, :class:`OutputFile`).

A spec is validated on construction, so an executor only ever sees a sound one: every
refusal is a :class:`~dgpu.node.executors.errors.JobSpecError` naming the field.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from dgpu.node.executors.errors import JobSpecError
from dgpu.protocol.messages import GpuVendor

DEFAULT_MAX_OUTPUT_BYTES: Final = 64 * 1024 * 1024
MAX_LOG_CHUNK: Final = 16 * 1024  # the wire cap of one LogChunk message
# Labels the executors set themselves; a spec may not set them.
RESERVED_LABEL_PREFIX: Final = "dgpu."

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# The device nodes a GPU job may be given: ROCm's compute interface and DRM nodes.
_DEVICE = re.compile(r"^/dev/(?:kfd|dri/(?:renderD|card)\d{1,4})\Z")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}\Z")

Stream = Literal["stdout", "stderr"]
ExitReason = Literal["exited", "timeout", "stopped"]


class LogChunk(NamedTuple):
    """Bytes a job wrote to one of its output streams (at most :data:`MAX_LOG_CHUNK`)."""

    stream: Stream
    data: bytes


@dataclass(frozen=True)
class JobExit:
    """How a job ended. ``reason`` says who ended it: the job itself (``"exited"``), its
    timeout (``"timeout"``) or a stop/kill call (``"stopped"``); ``exit_code`` is the
    process's status, 128 + signal number when a signal ended it."""

    exit_code: int
    reason: ExitReason

    @property
    def succeeded(self) -> bool:
        return self.reason == "exited" and self.exit_code == 0


@dataclass(frozen=True)
class OutputFile:
    """One collected output file: its path relative to the output directory (``/``
    separated), the hex sha256 of its content and its size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class JobSpec:
    """One job to run.

    ``command`` is the argv (no shell); ``gpu_ids`` are the backend's UUIDs (or indexes)
    of the agreed GPUs, handed to the engine only when ``gpus_simulated`` is False, the way
    ``gpu_vendor`` needs: NVIDIA by device request, AMD (ROCm) by mapping ``gpu_devices``
    (``/dev/kfd`` and each GPU's ``/dev/dri/renderD*``) into the container, Apple not at all
    (no GPU reaches a container on macOS: the local executor runs those jobs);
    ``network=False`` (the default) gives the job no network at all; ``output_dir`` is the
    directory inside the container whose files are collected (the local executor uses a
    directory of its own and tells the job through ``$DGPU_OUTPUT_DIR``);
    ``max_output_bytes=0`` collects nothing. ``input_dir`` is a host folder (the job's
    inputs) mounted read-only at ``/in`` (the local executor tells the job its path
    through ``$DGPU_INPUT_DIR``). ``timeout_s`` counts from the start.
    ``watchdog_s``: the job stops itself, even when the provider is gone, once it ran this
    long past the last :meth:`~dgpu.node.executors.base.Job.extend_deadline` (or its start);
    None: no watchdog.
    """

    job_id: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_ids: tuple[str, ...] = ()
    gpus_simulated: bool = False
    gpu_vendor: GpuVendor = "nvidia"
    gpu_devices: tuple[str, ...] = ()
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    network: bool = False
    timeout_s: float | None = None
    output_dir: str = "/out"
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    labels: Mapping[str, str] = field(default_factory=dict)
    watchdog_s: float | None = None
    input_dir: Path | None = None

    def __post_init__(self) -> None:
        if not _JOB_ID.match(self.job_id):
            raise JobSpecError("job_id", "1-64 characters of A-Z a-z 0-9 _ . -")
        if not self.image or len(self.image) > 256 or "\0" in self.image:
            raise JobSpecError("image", "must be a non-empty image reference")
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise JobSpecError("command", "must be a non-empty tuple of strings")
        if any("\0" in a for a in self.command):
            raise JobSpecError("command", "contains a NUL character")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name):
                raise JobSpecError("env", f"bad variable name {name!r}")
            if "\0" in value:
                raise JobSpecError("env", f"value of {name} contains a NUL character")
        if any(not g or "," in g for g in self.gpu_ids):
            raise JobSpecError("gpu_ids", "empty id or one containing a comma")
        if any(not _DEVICE.match(d) for d in self.gpu_devices):
            raise JobSpecError("gpu_devices", "only /dev/kfd and /dev/dri/* device nodes")
        if self.cpu_limit is not None and not 0 < self.cpu_limit <= 1024:
            raise JobSpecError("cpu_limit", "must be a number of CPUs in (0, 1024]")
        if self.memory_limit_mb is not None and not 6 <= self.memory_limit_mb <= 2**24:
            raise JobSpecError("memory_limit_mb", "must be at least 6 MiB")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise JobSpecError("timeout_s", "must be positive")
        if self.watchdog_s is not None and not self.watchdog_s > 0:
            raise JobSpecError("watchdog_s", "must be positive")
        normal = posixpath.normpath(self.output_dir)
        if not self.output_dir.startswith("/") or normal != self.output_dir or normal == "/":
            raise JobSpecError("output_dir", "must be a normalised absolute path other than /")
        if self.input_dir is not None and not self.input_dir.is_absolute():
            raise JobSpecError("input_dir", "must be an absolute host path")
        if self.max_output_bytes < 0:
            raise JobSpecError("max_output_bytes", "must be >= 0")
        for key, value in self.labels.items():
            if not _LABEL.match(key) or key.startswith(RESERVED_LABEL_PREFIX):
                raise JobSpecError("labels", f"bad or reserved label {key!r}")
            if len(value) > 256:
                raise JobSpecError("labels", f"value of {key} longer than 256")
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "gpu_devices", tuple(dict.fromkeys(self.gpu_devices)))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
