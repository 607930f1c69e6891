"""Errors of :mod:`dgpu.node.executors`::

    DgpuError
    └── ExecutorError              any failure to run a job
        ├── ExecutorUnavailable    no Docker Engine answers; the local executor is not enabled
        ├── JobSpecError           a job spec the executor refuses (``field`` names it)
        ├── JobStartError          the job could not start (image missing, bad command)
        ├── JobStateError          a call the job does not accept now (outputs before exit)
        ├── JobLost                the engine lost track of a started job
        └── OutputError            outputs that cannot be collected or read
            └── OutputTooLarge     more than the spec's ``max_output_bytes``

Docker SDK errors (``docker.errors.*``, ``requests`` exceptions) and OS errors are
converted at the boundary, in the executor modules.
"""

from __future__ import annotations

from dgpu.protocol.errors import DgpuError


class ExecutorError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.executors`."""


class ExecutorUnavailable(ExecutorError):
    """The executor cannot run anything here; the message says what to do."""


class JobSpecError(ExecutorError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"job spec: {field}: {reason}")
        self.field = field
        self.reason = reason


class JobStartError(ExecutorError):
    """The job was accepted but did not start."""


class JobStateError(ExecutorError):
    """A call made at the wrong time in the job's life."""


class JobLost(ExecutorError):
    """The engine no longer knows a job it started (removed behind our back, engine died)."""


class OutputError(ExecutorError):
    """Output files that cannot be collected or read."""


class OutputTooLarge(OutputError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"outputs exceed the limit: more than {size} bytes (limit {limit})")
        self.size = size
        self.limit = limit
