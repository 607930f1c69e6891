"""``dgpu run --detach``: the same command line, without ``--detach``, as a node process
of its own (its own session, so the terminal closing does not end it), which meters and
pays until the job ends; this process returns the job id once the channel is funded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dgpu.cli.jobfiles import JobFiles
from dgpu.cli.output import emit_json, stderr
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.negotiation import new_job_id

FUNDING_TIMEOUT_S = 300.0


class DetachError(DgpuError):
    """The detached node ended before its job was funded."""


def node_argv(argv: list[str], job_id: str) -> list[str]:
    """``argv`` (after the program) with ``--detach`` replaced by the node's options."""
    end = argv.index("--") if "--" in argv else len(argv)
    where = argv.index("--detach", 0, end)
    return [*argv[:where], "--job-id", job_id, "--json", *argv[where + 1 :]]


def start_detached(data_dir: Path, *, as_json: bool) -> None:
    job_id = new_job_id(os.urandom(32)).hex()
    files = JobFiles.of(data_dir, job_id)
    files.root.mkdir(parents=True, exist_ok=True)
    with files.result.open("w") as out, files.node_log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "dgpu.cli.main", *node_argv(sys.argv[1:], job_id)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + FUNDING_TIMEOUT_S
    with stderr.status("finding an offer, negotiating, funding the channel…"):
        while process.poll() is None and not files.meta.exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    if not files.meta.exists():
        tail = files.node_log.read_text(errors="replace").strip().splitlines()[-1:]
        raise DetachError(
            f"the job was not funded: {tail[0] if tail else 'the node ended'}"
            f" (log: {files.node_log})"
        )
    if as_json:
        emit_json({"job_id": job_id, "pid": process.pid, "files": str(files.root)})
        return
    stderr.print(f"job {job_id} funded and running in a node process (pid {process.pid})")
    stderr.print(f"  dgpu jobs logs -f {job_id}    dgpu jobs stop {job_id}", highlight=False)
    print(job_id)
