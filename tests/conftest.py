"""Shared fixtures: each group lives in its own module, registered here."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures_docker"]


@pytest.fixture(autouse=True)
def _no_user_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every test (and every ``dgpu`` it starts) sees an empty config directory and no
    ``DGPU_*`` variable: the user's profiles never leak in, and no test writes them."""
    import os

    for name in list(os.environ):
        if name.startswith("DGPU_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
