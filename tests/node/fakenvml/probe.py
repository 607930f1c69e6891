"""Child-process side of the NVML and AMD SMI tests (a TEST DOUBLE harness, not product code).

Run with ``LD_LIBRARY_PATH`` pointing at the fake ``libnvidia-ml.so.1`` built from
``fakenvml.c`` (or ``ROCM_PATH`` at the fake ``libamd_smi.so`` of ``../fakeamdsmi``): the
unmodified pynvml (amdsmi) loads it as it would load the vendor's library. The child
opens a backend through :func:`dgpu.node.gpu.detect_backend`, samples it in rounds (the
environment overrides of each round apply before it, which the fake reads live) and prints
one JSON document on stdout.

argv[1]: ``{"prefer": "auto"|"nvml"|"amd", "rounds": [{"FAKENVML_UTIL": "50"}, ...],
"sample_indexes": [0, 1] | null, "sysfs": "/path" | null, "platform": "linux" | null}``
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dgpu.node.gpu import GpuError, detect_backend
from dgpu.protocol.extras import MissingExtra


def main() -> None:
    request: dict[str, Any] = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    result: dict[str, Any] = {}
    try:
        backend = detect_backend(
            request.get("prefer", "auto"),
            platform=request.get("platform") or sys.platform,
            sysfs=Path(request.get("sysfs") or "/sys"),
        )
        gpus = backend.list_gpus()
        result["simulated"] = backend.simulated
        result["gpus"] = [dataclasses.asdict(g) for g in gpus]
        indexes = request.get("sample_indexes") or [g.index for g in gpus]
        rounds: list[list[dict[str, int]]] = []
        for overrides in request.get("rounds", [{}]):
            os.environ.update(overrides)
            rounds.append([dataclasses.asdict(backend.sample(i)) for i in indexes])
        result["rounds"] = rounds
        backend.close()
    except GpuError as exc:
        result["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "function": exc.function,
            "nvml_code": exc.nvml_code,
            "amdsmi_status": exc.amdsmi_status,
        }
    except MissingExtra as exc:
        result["error"] = {"type": type(exc).__name__, "message": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
