"""Optional extras: a node installs without the build toolchain and the charting stack, and
a command that needs a missing one says which extra to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from dgpu.contracts import build
from dgpu.protocol.extras import MissingExtra, import_extra
from dgpu.simulations.plot import write_plots

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_a_node_does_not_depend_on_the_build_or_chart_packages() -> None:
    required = " ".join(PROJECT["dependencies"])
    for heavy in ("ziglang", "pyelftools", "matplotlib", "amdsmi"):
        assert heavy not in required
    extras = PROJECT["optional-dependencies"]
    assert any(d.startswith("ziglang") for d in extras["build"])
    assert any(d.startswith("matplotlib") for d in extras["sim"])
    assert any(d.startswith("amdsmi") for d in extras["amd"])
    assert "dgpu[build,sim,amd]" in extras["dev"]


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails as if absent
    with pytest.raises(MissingExtra, match=r"pip install 'dgpu\[sim\]'"):
        write_plots({"series": {}}, Path("unused"))
    with pytest.raises(MissingExtra, match="matplotlib"):
        import_extra("matplotlib", extra="sim", purpose="charts")


def test_rebuilding_the_program_without_the_toolchain_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ziglang", None)
    assert build.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'dgpu[build]'" in err
    assert "Traceback" not in err
