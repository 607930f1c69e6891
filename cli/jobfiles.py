"""The files of one renter job in its data dir, ``<data-dir>/jobs/<job id>/``:

- ``job.json``: the provider's signed offer (its addresses, to reach it again after a
  restart) and the output dir, written once the channel is funded;
- ``output.log``: the job's stdout and stderr as they stream in;
- ``node.log``: the renter node's own progress (a detached node's stderr);
- ``result.json``: the job's result once it ended (a detached node's stdout).

The node's store stays the record of money; these files are what ``dgpu jobs`` shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgpu.protocol.codec import decode_as, encode
from dgpu.protocol.messages import Offer


@dataclass(frozen=True)
class JobFiles:
    root: Path

    @classmethod
    def of(cls, data_dir: Path, job_id: str) -> JobFiles:
        return cls(data_dir / "jobs" / job_id)

    @property
    def meta(self) -> Path:
        return self.root / "job.json"

    @property
    def output(self) -> Path:
        return self.root / "output.log"

    @property
    def node_log(self) -> Path:
        return self.root / "node.log"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    def write_meta(self, offer: Offer, output_dir: Path | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        meta = {"offer": encode(offer).hex(), "output_dir": str(output_dir or "")}
        tmp = self.meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.meta)

    def offer(self) -> Offer | None:
        try:
            return decode_as(Offer, bytes.fromhex(json.loads(self.meta.read_text())["offer"]))
        except (OSError, ValueError, KeyError):
            return None

    def output_dir(self) -> Path | None:
        try:
            text = str(json.loads(self.meta.read_text())["output_dir"])
        except (OSError, ValueError, KeyError):
            return None
        return Path(text) if text else None

    def read_result(self) -> dict[str, Any] | None:
        try:
            lines = self.result.read_text().strip().splitlines()
            result = json.loads(lines[-1]) if lines else None
        except (OSError, ValueError):
            return None
        return result if isinstance(result, dict) else None
