"""``dgpu --help`` and ``dgpu keys show`` import only what they need: none of the heavy
libraries the other commands use (libp2p, solders, starlette, trio, ...)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dgpu.cli.main import COMMANDS
from dgpu.protocol import Identity, save_identity

HEAVY = ("libp2p", "solders", "solana", "anchorpy", "starlette", "hypercorn", "trio", "docker")
PROBE = """
import json, sys
sys.argv = ["dgpu", *json.loads(sys.argv[1])]
from dgpu.cli.main import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def loaded_by(*args: str) -> tuple[str, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout, set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_lists_every_command_without_importing_them() -> None:
    out, modules = loaded_by("--help")
    for name in COMMANDS:
        assert f"  {name} " in out
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


def test_keys_show_imports_only_the_key_code(tmp_path: Path) -> None:
    identity = Identity.generate()
    save_identity(identity, tmp_path / "key.json")
    out, modules = loaded_by("keys", "show", str(tmp_path / "key.json"), "--json")
    assert json.loads(out)["address"] == identity.address
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_resolves(name: str) -> None:
    out, _ = loaded_by(name, "--help")
    assert f"Usage: dgpu {name}" in out


def test_every_command_module_is_listed() -> None:
    import dgpu.cli

    folder = Path(dgpu.cli.__file__).parent
    modules = {p.stem.removeprefix("cmd_") for p in folder.glob("cmd_*.py")}
    assert modules == set(COMMANDS)
