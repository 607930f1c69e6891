"""Putting the x87 FPU back in order after LiteSVM has run.

Why: LiteSVM as bundled in solders 0.26 returns from running the SPL associated-token
program with the x87 tag word saying all eight x87 registers are in use (``0x5556``,
"stack full"). The x86-64 calling convention promises an empty x87 stack at every call,
so the next code in the same thread that uses x87 instructions pushes onto a full
stack: the push overflows, the (masked) invalid-operation exception turns the value
into a NaN, and the result is silently wrong. Seen here: sqlite's ``long double``
number parsing (``SELECT 0.2 > 0.0`` answers 0, index lookups go astray) and glibc's
``fmod`` behind numpy's float floor division (NaN and ``RuntimeWarning: invalid value
encountered in scalar floor_divide``, which broke matplotlib's tick placement).

How: the ``emms`` instruction marks every x87 register empty. Python cannot execute it
and no compiler may run in the package, so the three bytes ``emms; ret`` are written to
a page of our own, the page is made read + execute (never writable and executable at
once), and called through ctypes. :func:`reset_x87` is that call; the ledger makes it
after every use of LiteSVM (see :mod:`dgpu.contracts_client.chain.ledger`). ``emms`` is safe
whenever no x87 value is live, which the calling convention guarantees between calls.

Only x86-64 has an x87 unit that this applies to; elsewhere (and where the system
refuses an executable page) :func:`reset_x87` does nothing and :data:`AVAILABLE` is
false.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import platform
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

_EMMS_RET: Final = b"\x0f\x77\xc3"  # emms; ret
_X86_64: Final = frozenset({"x86_64", "amd64"})  # Linux/macOS say x86_64, Windows/BSD amd64


def _map_emms() -> tuple[Callable[[], None], object] | None:
    """``emms; ret`` on a page of its own, mapped read + execute, and the objects that
    must stay alive as long as the function is called."""
    if platform.machine().lower() not in _X86_64 or os.name != "posix":
        return None
    try:
        page = mmap.mmap(
            -1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
        page.write(_EMMS_RET)
        code = ctypes.c_char.from_buffer(page)  # pins the page for the process' life
        address = ctypes.addressof(code)
        mprotect = ctypes.CDLL(None, use_errno=True).mprotect
        mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        mprotect.restype = ctypes.c_int
        if mprotect(address, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mprotect: {os.strerror(errno)}")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("cannot map the x87 reset (%s): float results after LiteSVM may be wrong", exc)
        return None
    emms = ctypes.CFUNCTYPE(None)(address)
    return emms, (page, code)


_MAPPED: Final = _map_emms()
AVAILABLE: Final = _MAPPED is not None


def reset_x87() -> None:
    """Mark every x87 register empty (``emms``); a no-op where that does not apply."""
    if _MAPPED is not None:
        _MAPPED[0]()
