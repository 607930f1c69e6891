"""dgpu.contracts: the on-chain escrow program, as built and shipped with the package.

The program is C (``escrow.c``) built to an SBPF v0 ``.so`` by :mod:`dgpu.contracts.build`
(upstream LLVM through ``ziglang``, then :mod:`dgpu.contracts.relink`). The built ``.so``, its
sha256 and the Anchor IDL (``idl.json``) are committed and installed with the package.

The program address is fixed: the public key of ``program-keypair.json`` (committed, so
tests, the local chain and devnet deployments all use the same id). Its secret is public:
a mainnet deployment must use a fresh keypair.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey

_HERE: Final = Path(__file__).resolve().parent


def program_keypair_path() -> Path:
    """The committed keypair whose public key is :data:`PROGRAM_ID`."""
    return _HERE / "program-keypair.json"


def so_path() -> Path:
    """The built program (SBPF v0 ELF)."""
    return _HERE / "escrow.so"


def idl_path() -> Path:
    """The Anchor IDL (legacy JSON format, as anchorpy 0.21 reads it)."""
    return _HERE / "idl.json"


def source_dir() -> Path:
    """Where ``escrow.c`` and its headers live."""
    return _HERE


@cache
def so_sha256() -> str:
    """Hex sha256 of the committed ``.so``, as recorded in ``escrow.so.sha256``."""
    line = (_HERE / "escrow.so.sha256").read_text().split()
    return line[0]


def _program_id() -> Pubkey:
    secret = json.loads(program_keypair_path().read_text())
    return Keypair.from_bytes(bytes(secret)).pubkey()


PROGRAM_ID: Final[Pubkey] = _program_id()

__all__ = [
    "PROGRAM_ID",
    "idl_path",
    "program_keypair_path",
    "so_path",
    "so_sha256",
    "source_dir",
]
