"""Keys: one ed25519 key gives the Solana address and the libp2p peer ID; key files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import base58
import pytest
from dgpu.protocol import Identity, KeyFileError, load_identity, save_identity
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import address_of, public_key_of_address, public_key_of_peer_id
from hypothesis import given
from hypothesis import strategies as st
from solders.keypair import Keypair


@given(st.binary(min_size=32, max_size=32))
def test_address_and_peer_id_round_trip(seed: bytes) -> None:
    identity = Identity(seed)
    assert public_key_of_address(identity.address) == identity.public_key
    assert public_key_of_peer_id(identity.peer_id) == identity.public_key
    assert identity.peer_id.startswith("12D3KooW")


@given(st.integers(min_value=0, max_value=32), st.binary(min_size=32, max_size=32))
def test_address_is_the_base58_of_any_32_bytes(zeros: int, key: bytes) -> None:
    # leading zero bytes are base58's leading '1's: the case fast encoders get wrong
    public_key = bytes(zeros) + key[zeros:]
    assert address_of(public_key) == base58.b58encode(public_key).decode()
    assert public_key_of_address(address_of(public_key)) == public_key


def test_address_of_refuses_a_short_key() -> None:
    with pytest.raises(SignatureError, match="32 bytes"):
        address_of(bytes(31))


def test_matches_solders_and_libp2p() -> None:
    from libp2p.peer.id import ID

    identity = Identity.from_label("node")
    keypair = identity.to_solders()
    assert str(keypair.pubkey()) == identity.address
    libp2p_pair = identity.to_libp2p()
    assert ID.from_pubkey(libp2p_pair.public_key).to_base58() == identity.peer_id  # type: ignore[attr-defined]


def test_key_file_round_trip_in_solana_format(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.json"
    save_identity(identity, path)
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert Keypair.from_bytes(bytes(data)).pubkey() == identity.to_solders().pubkey()
    assert load_identity(path).public_key == identity.public_key


def test_solana_keygen_style_file_loads(tmp_path: Path) -> None:
    keypair = Keypair()
    path = tmp_path / "solana.json"
    path.write_text(json.dumps(list(bytes(keypair))))
    path.chmod(0o600)
    assert load_identity(path).address == str(keypair.pubkey())


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    save_identity(Identity.generate(), path)
    with pytest.raises(KeyFileError, match="already exists"):
        save_identity(Identity.generate(), path)
    save_identity(Identity.generate(), path, force=True)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "JSON array"),
        ("[1, 2, 3]", "JSON array"),
        (json.dumps([300] * 64), "JSON array"),
        (json.dumps([True] * 64), "JSON array"),
        (json.dumps({"a": 1}), "JSON array"),
        (json.dumps(list(os.urandom(32)) + [0] * 32), "does not match"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=reason):
        load_identity(path)


def test_world_readable_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "id.json"
    save_identity(Identity.generate(), path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_identity(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no such file"):
        load_identity(tmp_path / "absent.json")


def test_cli_keys_new_and_show(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    dgpu = [sys.executable, "-m", "dgpu.cli.main"]
    subprocess.run([*dgpu, "keys", "new", str(path)], check=True, capture_output=True)
    shown = subprocess.run(
        [*dgpu, "keys", "show", str(path), "--json"], check=True, capture_output=True, text=True
    )
    info = json.loads(shown.stdout)
    assert info["address"] == load_identity(path).address
    assert info["peer_id"].startswith("12D3KooW")
    again = subprocess.run([*dgpu, "keys", "new", str(path)], capture_output=True, text=True)
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
