"""A job's input tree (sans-IO): the rules both ends check, in words.

The renter lists its inputs in the JobRequest (:class:`~dgpu.protocol.messages.InputFile`:
a relative path, the sha256 and size of the content, or a symlink's target); the provider
checks the list with :func:`check_inputs` *before it quotes* — so a hostile tree is refused
before any money moves — and later materialises exactly that tree under ``/in``. A tree is
refused when:

* a path is absolute, has an empty, ``.`` or ``..`` component, or a backslash (a path that
  could name something outside the tree on some system);
* two entries have the same path, or one is below another (a file cannot be a folder);
* a symlink's target is absolute or, resolved lexically from the link's folder, leaves the
  tree (symlinks inside the tree are kept: datasets use them);
* the total size is over the agreed limit, or a file entry has no 32-byte sha256.

Whether transfer time is billed: it is not. Inputs move after the Agreement and before the
renter funds the channel, and the meter starts when the container starts; the provider
bounds what an unfunded renter can make it store by ``Offer.max_input_bytes`` and by the
funding timeout after which the upload's grant (and its bytes) are dropped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.messages import InputFile

INPUT_MOUNT = "/in"


class InputRefused(ProtocolError):
    """An input tree the provider will not take; the message says why, naming the path."""


class InputsTooLarge(InputRefused):
    """More input bytes than the provider takes."""


def _check_path(path: str, what: str) -> None:
    if path.startswith("/"):
        raise InputRefused(f"input {what} {path!r} is absolute")
    if "\\" in path or "\0" in path:
        raise InputRefused(f"input {what} {path!r} contains a backslash or NUL")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InputRefused(f"input {what} {path!r} escapes or is not normalised ({part!r})")


def _link_escapes(path: str, target: str) -> bool:
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")


def check_inputs(files: Sequence[InputFile], limit: int) -> int:
    """The total size of ``files``; raise :class:`InputRefused` (in words) for a tree the
    rules above refuse or one larger than ``limit`` bytes."""
    seen: set[str] = set()
    total = 0
    for f in files:
        _check_path(f.path, "path")
        if f.path in seen:
            raise InputRefused(f"input path {f.path!r} appears twice")
        seen.add(f.path)
        if f.link:
            if _link_escapes(f.path, f.link):
                raise InputRefused(f"input symlink {f.path!r} -> {f.link!r} points out of the tree")
            if f.sha256 or f.size:
                raise InputRefused(f"input symlink {f.path!r} carries content")
            continue
        if len(f.sha256) != 32:
            raise InputRefused(f"input file {f.path!r} has no sha256")
        total += f.size
    folders = {"/".join(p.split("/")[:i]) for p in seen for i in range(1, p.count("/") + 1)}
    clash = sorted(folders & seen)
    if clash:
        raise InputRefused(f"input path {clash[0]!r} is both a file and a folder")
    if total > limit:
        raise InputsTooLarge(
            f"inputs total {total} bytes, over the limit of {limit} bytes"
            if limit
            else "this provider takes no inputs"
        )
    return total
