"""Making a trio run reproducible: a seeded scheduler.

trio deliberately varies the order in which tasks that became runnable together are run
(a batch is reversed at random), with a module-level ``random.Random``. Under
``MockClock(autojump_threshold=0)`` everything else in a simulation is a function of the
scenario and the seed, so seeding that generator and switching on trio's own
deterministic mode (the one pytest-trio and Hypothesis use: each batch is sorted by task
creation order, then shuffled by the seeded generator) makes a whole run repeat exactly.

These are private attributes of trio; if a trio release drops them,
:class:`DeterminismUnavailable` says so instead of silently losing reproducibility.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from dgpu.simulations.errors import DeterminismUnavailable

_FLAG = "_ALLOW_DETERMINISTIC_SCHEDULING"


def _run_module() -> ModuleType:
    try:
        from trio._core import _run
    except ImportError as exc:  # pragma: no cover - depends on the trio release
        raise DeterminismUnavailable(f"trio's scheduler module is not importable: {exc}") from None
    if not isinstance(getattr(_run, "_r", None), random.Random) or not hasattr(_run, _FLAG):
        raise DeterminismUnavailable(
            "this trio release has no seedable scheduler (trio._core._run._r and "
            f"{_FLAG}); simulations would not be reproducible"
        )
    return _run


@contextmanager
def seeded_scheduler(seed: int) -> Iterator[None]:
    """Within this block, ``trio.run`` schedules tasks in an order fixed by ``seed``."""
    run = _run_module()
    rng: random.Random = run._r
    saved_state, saved_flag = rng.getstate(), getattr(run, _FLAG)
    rng.seed(seed)
    setattr(run, _FLAG, True)
    try:
        yield
    finally:
        setattr(run, _FLAG, saved_flag)
        rng.setstate(saved_state)
