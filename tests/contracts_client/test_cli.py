"""``dgpu chain info`` and ``dgpu chain serve`` as commands."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import dgpu.contracts
import pytest
from dgpu.cli.cmd_chain import escrow_info
from dgpu.contracts_client.chain import ChainError
from dgpu.contracts_client.rpc_server import INFO_FILE, MINT_AUTHORITY_FILE, MINT_FILE

from tests.contracts_client.support import serve_node


def test_info_json_names_the_shipped_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dgpu.cli.main", "chain", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    info = json.loads(out)
    assert set(info) == {"program_id", "so_path", "so_sha256", "idl_path"}
    assert info["program_id"] == str(dgpu.contracts.PROGRAM_ID)
    so = Path(info["so_path"]).read_bytes()
    assert hashlib.sha256(so).hexdigest() == info["so_sha256"]
    assert json.loads(Path(info["idl_path"]).read_text())


def test_info_explains_a_missing_escrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(dgpu.contracts, "so_sha256")
    with pytest.raises(ChainError, match=r"dgpu\.contracts"):
        escrow_info()


def test_serve_keeps_the_mint_across_restarts(tmp_path: Path) -> None:
    with serve_node(tmp_path) as first:
        assert first.program_id == dgpu.contracts.PROGRAM_ID
        described = json.loads((tmp_path / INFO_FILE).read_text())
        assert described["rpc_url"] == first.url and described["mint"] == str(first.mint)
    for name in (MINT_FILE, MINT_AUTHORITY_FILE):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
    with serve_node(tmp_path, "--no-escrow") as second:
        assert second.mint == first.mint
        assert second.mint_authority_keyfile == first.mint_authority_keyfile
        assert second.program_id is None


def test_serve_on_a_busy_port_fails_in_words(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dgpu.cli.main",
                "chain",
                "serve",
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
