"""The provider's acknowledgement of a stored receipt, carried by a ``JobStatus``.

The protocol has no message of its own for it yet, so a provider that has durably stored a
receipt says so with ``JobStatus(state="running", detail="receipt-stored seq=N
cumulative=C")``. A renter thereby knows which of its receipts the provider can no longer
lose (even through ``kill -9``). The format is strict; anything else is not an ack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dgpu.protocol.messages import JobStatus, Receipt

_ACK = re.compile(r"^receipt-stored seq=(\d{1,10}) cumulative=(\d{1,20})$")


@dataclass(frozen=True)
class ReceiptAck:
    seq: int
    cumulative: int


def receipt_ack(receipt: Receipt) -> JobStatus:
    return JobStatus(
        job_id=receipt.job_id,
        state="running",
        detail=f"receipt-stored seq={receipt.seq} cumulative={receipt.cumulative}",
    )


def parse_receipt_ack(status: JobStatus) -> ReceiptAck | None:
    if status.state != "running":
        return None
    match = _ACK.match(status.detail)
    if match is None:
        return None
    return ReceiptAck(int(match.group(1)), int(match.group(2)))
