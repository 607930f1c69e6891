"""Running jobs: Docker containers (:class:`DockerExecutor`) or, where a provider enables
it, local processes (:class:`LocalProcessExecutor`), behind one interface
(:class:`Executor`, :class:`Job`; usage in :mod:`dgpu.node.executors.base`).

Errors are drawn in :mod:`dgpu.node.executors.errors`.
"""

from dgpu.node.executors.base import Executor, Job
from dgpu.node.executors.docker_exec import DockerExecutor, DockerJob, open_docker_executor
from dgpu.node.executors.docker_options import (
    JOB_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    DockerConfig,
    container_options,
)
from dgpu.node.executors.errors import (
    ExecutorError,
    ExecutorUnavailable,
    JobLost,
    JobSpecError,
    JobStartError,
    JobStateError,
    OutputError,
    OutputTooLarge,
)
from dgpu.node.executors.local_exec import LocalJob, LocalProcessConfig, LocalProcessExecutor
from dgpu.node.executors.relay import PortStream
from dgpu.node.executors.spec import (
    DEFAULT_MAX_OUTPUT_BYTES,
    MAX_LOG_CHUNK,
    ExitReason,
    JobExit,
    JobSpec,
    LogChunk,
    OutputFile,
    Stream,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "JOB_LABEL",
    "MAX_LOG_CHUNK",
    "OWNER_LABEL",
    "RUN_LABEL",
    "DockerConfig",
    "DockerExecutor",
    "DockerJob",
    "Executor",
    "ExecutorError",
    "ExecutorUnavailable",
    "ExitReason",
    "Job",
    "JobExit",
    "JobLost",
    "JobSpec",
    "JobSpecError",
    "JobStartError",
    "JobStateError",
    "LocalJob",
    "LocalProcessConfig",
    "LocalProcessExecutor",
    "LogChunk",
    "OutputError",
    "OutputFile",
    "OutputTooLarge",
    "PortStream",
    "Stream",
    "container_options",
    "open_docker_executor",
]
