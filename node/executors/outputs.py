"""Output files: copying them out of a container's tar stream, listing and reading them.

Everything a job wrote is untrusted. Only regular files are kept (symlinks, devices and
hard links are skipped, so a job cannot point us at a host file), paths are confined to
the output directory, and the total size and the number of files are capped before any
byte beyond the cap is written. Blocking: run these in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Final, cast

from dgpu.node.executors.errors import OutputError, OutputTooLarge
from dgpu.node.executors.spec import OutputFile

log = logging.getLogger(__name__)

MAX_OUTPUT_FILES: Final = 10_000
_COPY_CHUNK: Final = 1024 * 1024


class _ChunkReader:
    """A read-only file object over an iterator of byte chunks (for ``tarfile`` "r|")."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        parts = [self._pending]
        have = len(self._pending)
        while size < 0 or have < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        if size < 0:
            self._pending = b""
            return data
        self._pending = data[size:]
        return data[:size]


def _relative(name: str) -> str | None:
    """Path of a tar member below the archived directory, or None for the directory."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if len(parts) <= 1:
        return None
    rel = posixpath.normpath("/".join(parts[1:]))
    if rel.startswith("../") or rel == "..":
        raise OutputError(f"output archive member escapes the output directory: {name!r}")
    return rel


def extract_output_tar(
    chunks: Iterable[bytes],
    dest: Path,
    max_bytes: int,
    max_files: int = MAX_OUTPUT_FILES,
) -> None:
    """Write the regular files of a tar stream of one directory (as Docker's archive API
    gives it: every member below one top directory) into ``dest``."""
    total = files = 0
    try:
        # "r|" reads the stream strictly forwards: read() is all it needs of fileobj.
        reader = cast("IO[bytes]", _ChunkReader(chunks))
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                rel = _relative(member.name)
                if rel is None:
                    continue
                target = dest / rel
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    log.info("output %s skipped: not a regular file", rel)
                    continue
                files += 1
                total += member.size
                if files > max_files:
                    raise OutputError(f"more than {max_files} output files")
                if total > max_bytes:
                    raise OutputTooLarge(total, max_bytes)
                source = tar.extractfile(member)
                if source is None:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "xb") as out:
                    while block := source.read(_COPY_CHUNK):
                        out.write(block)
    except (tarfile.TarError, OSError) as exc:
        raise OutputError(f"cannot copy the outputs: {exc}") from exc


def scan_output_dir(
    root: Path, max_bytes: int, max_files: int = MAX_OUTPUT_FILES
) -> list[OutputFile]:
    """List the regular files below ``root`` with their sha256, sorted by path.

    Symbolic links and special files are skipped and never followed.
    """
    found: list[tuple[str, Path, int]] = []
    total = 0
    for directory, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(directory) / name
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if not stat.S_ISREG(st.st_mode):
                log.info("output %s skipped: not a regular file", rel)
                continue
            total += st.st_size
            if len(found) >= max_files:
                raise OutputError(f"more than {max_files} output files")
            if total > max_bytes:
                raise OutputTooLarge(total, max_bytes)
            found.append((rel, path, st.st_size))
    manifest: list[OutputFile] = []
    for rel, _path, _size in sorted(found):
        digest = hashlib.sha256()
        size = 0
        with _open_regular(root, rel) as f:
            while block := f.read(_COPY_CHUNK):
                digest.update(block)
                size += len(block)
        manifest.append(OutputFile(rel, digest.hexdigest(), size))
    if sum(f.size for f in manifest) > max_bytes:  # grew while we read
        raise OutputTooLarge(sum(f.size for f in manifest), max_bytes)
    return manifest


def read_output_file(root: Path, rel: str, offset: int = 0, size: int | None = None) -> bytes:
    """Read a listed output file (the caller checks ``rel`` against the manifest)."""
    if offset < 0 or (size is not None and size < 0):
        raise OutputError("offset and size must be >= 0")
    with _open_regular(root, rel) as f:
        f.seek(offset)
        return f.read() if size is None else f.read(size)


def _open_regular(root: Path, rel: str) -> io.BufferedReader:
    path = root / rel
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path.parent)]) != real_root:
        raise OutputError(f"output {rel!r} is outside the output directory")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise OutputError(f"cannot open output {rel!r}: {exc.strerror}") from exc
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise OutputError(f"output {rel!r} is not a regular file")
    return f
