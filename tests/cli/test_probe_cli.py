"""``dgpu probe`` and ``dgpu run --verified`` at the command line: what they refuse before
touching a network (the whole probe runs in tests/e2e/test_probe_devnet.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from dgpu.cli.main import cli

MINT = "11111111111111111111111111111111"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_run_verified_needs_a_coordinator(tmp_path: Path) -> None:
    base = ["run", "--key", str(tmp_path / "k.json"), "--data-dir", str(tmp_path),
            "--rpc", "http://127.0.0.1:1", "--mint", MINT, "--gpu", "H100",
            "--max-price", "5", "--image", "img", "--verified"]  # fmt: skip
    code, out = invoke(*base, "--", "true")
    assert code == 2 and "--verified needs --coordinator" in out
    code, out = invoke(*base, "--coordinator", "http://127.0.0.1:1", "--p2p", "--", "true")
    assert code == 2 and "--verified needs --coordinator" in out


def test_probe_help_names_the_verdicts() -> None:
    code, out = invoke("probe", "--help")
    assert code == 0
    assert "PROVIDER_OR_OFFER" in out and "--no-report" in out
    code, out = invoke("--help")
    assert "probe" in out
