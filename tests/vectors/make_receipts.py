"""Regenerate ``receipts.json``: ``python tests/vectors/make_receipts.py``.

The vectors pin the receipt byte layout for both sides (Python and the C program). They
are generated once and committed; tests check the code against the file, never the file
against itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dgpu.protocol.identity import Identity
from dgpu.protocol.receipt import ReceiptBody

CASES = [
    ("zero", 0, 0),
    ("small", 7, 1_000),
    ("one dGPU", 42, 1_000_000_000),
    ("u64 max nonce", 2**64 - 1, 5),
    ("u64 max amount", 1, 2**64 - 1),
]


def main() -> None:
    vectors = []
    for i, (name, nonce, cumulative) in enumerate(CASES):
        seed = hashlib.sha256(f"dgpu receipt vector {i}".encode()).digest()
        renter = Identity(seed)
        body = ReceiptBody(
            program_id=hashlib.sha256(f"program {i}".encode()).digest(),
            channel=hashlib.sha256(f"channel {i}".encode()).digest(),
            open_nonce=nonce,
            cumulative=cumulative,
        )
        vectors.append(
            {
                "name": name,
                "program_id_hex": body.program_id.hex(),
                "channel_hex": body.channel.hex(),
                "open_nonce": nonce,
                "cumulative": cumulative,
                "seed_hex": seed.hex(),
                "public_key_hex": renter.public_key.hex(),
                "message_hex": body.to_bytes().hex(),
                "signature_hex": body.sign(renter).hex(),
            }
        )
    path = Path(__file__).with_name("receipts.json")
    path.write_text(json.dumps(vectors, indent=2) + "\n")


if __name__ == "__main__":
    main()
