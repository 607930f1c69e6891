"""Key files in the Solana CLI format: a JSON array of the 64 bytes ``seed || public key``.

A key made by ``solana-keygen new`` loads here and ours loads there. Files are created
with mode 0600; a file readable by group or others is refused.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nacl.signing
from dgpu.protocol.errors import KeyFileError
from dgpu.protocol.identity import PUBLIC_KEY_LEN, SEED_LEN, Identity

MAX_KEY_FILE_BYTES = 4096


def save_identity(identity: Identity, path: Path, *, force: bool = False) -> None:
    """Write ``identity`` to ``path`` (mode 0600); refuse to overwrite unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(str(path), "already exists (use --force to overwrite)") from exc
    except OSError as exc:
        raise KeyFileError(str(path), exc.strerror or str(exc)) from exc
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(list(identity.secret_bytes()), f)
        f.write("\n")


def load_identity(path: Path) -> Identity:
    """Read a Solana-format key file, checking permissions, shape and key consistency."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise KeyFileError(str(path), "no such file") from exc
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(str(path), "not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            str(path), f"permissions {stat.S_IMODE(st.st_mode):04o} are too open (chmod 600 it)"
        )
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(str(path), f"larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(str(path), "not a JSON array of 64 bytes") from exc
    if (
        not isinstance(data, list)
        or len(data) != SEED_LEN + PUBLIC_KEY_LEN
        or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in data)
    ):
        raise KeyFileError(str(path), "not a JSON array of 64 bytes")
    raw = bytes(data)
    seed, public = raw[:SEED_LEN], raw[SEED_LEN:]
    if bytes(nacl.signing.SigningKey(seed).verify_key) != public:
        raise KeyFileError(str(path), "public key does not match the secret key")
    return Identity(seed)
