"""Profiles: the file's layout, ``dgpu config``, and the order flags > DGPU_* > profile,
with bad or missing values named by key and file."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from dgpu.cli import profile as profiles
from dgpu.cli.main import cli
from dgpu.cli.nodeopts import parse_address
from dgpu.cli.profile import ProfileCommand, ProfileError

MINT = "11111111111111111111111111111111"


@click.command(cls=ProfileCommand)
@click.option("--rpc", "rpc_url", required=True)
@click.option("--mint", required=True)
@click.option("--bootstrap", multiple=True)
@click.option("--duration", default=600)
def probe(rpc_url: str, mint: str, bootstrap: tuple[str, ...], duration: int) -> None:
    parse_address(mint, "--mint")
    click.echo(f"{rpc_url} {mint} {','.join(bootstrap)} {duration}")


def config_file() -> Path:
    return profiles.config_path()


def dgpu(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_config_set_use_show_round_trip() -> None:
    assert dgpu("config", "set", "rpc", "http://a")[0] == 0
    assert dgpu("config", "set", "bootstrap", "/ip4/1", "/ip4/2")[0] == 0
    assert dgpu("config", "set", "--profile", "other", "duration", "42")[0] == 0
    assert dgpu("config", "set", "--profile", "other", "provider.gpus", "1xRTX 4090")[0] == 0
    config = profiles.load(config_file())
    assert config.current == "default"  # the first profile written becomes current
    assert config.profiles["default"].values == {
        "rpc": "http://a",
        "bootstrap": ["/ip4/1", "/ip4/2"],
    }
    assert config.profiles["other"].values == {"duration": 42}
    assert config.profiles["other"].provider == {"gpus": "1xRTX 4090"}
    assert dgpu("config", "use", "other")[0] == 0
    code, out = dgpu("config", "show", "--json")
    assert code == 0
    assert '"profile": "other"' in out and '"gpus": "1xRTX 4090"' in out
    assert dgpu("config", "unset", "--profile", "default", "rpc")[0] == 0
    assert "rpc" not in profiles.load(config_file()).profiles["default"].values


def test_flags_beat_environment_beat_profile() -> None:
    profiles.save(
        profiles.ConfigFile(
            config_file(),
            "p",
            {"p": profiles.Profile("p", {"rpc": "http://profile", "mint": MINT, "duration": 7})},
        )
    )
    runner = CliRunner()
    out = runner.invoke(probe, [], catch_exceptions=False).output
    assert out.split() == ["http://profile", MINT, "7"]
    out = runner.invoke(probe, [], env={"DGPU_RPC": "http://env"}, catch_exceptions=False).output
    assert out.split()[0] == "http://env"
    out = runner.invoke(
        probe, ["--rpc", "http://flag"], env={"DGPU_RPC": "http://env"}, catch_exceptions=False
    ).output
    assert out.split()[0] == "http://flag"
    bootstrap = runner.invoke(probe, [], env={"DGPU_BOOTSTRAP": "/a /b"}).output
    assert "/a,/b" in bootstrap


def test_missing_and_bad_values_name_the_key_and_the_file() -> None:
    runner = CliRunner()
    missing = runner.invoke(probe, [])
    assert isinstance(missing.exception, ProfileError)
    assert "missing --rpc" in str(missing.exception) and "DGPU_RPC" in str(missing.exception)
    profiles.save(
        profiles.ConfigFile(
            config_file(), "p", {"p": profiles.Profile("p", {"rpc": "http://x", "mint": "nope"})}
        )
    )
    bad = runner.invoke(probe, [])
    assert str(bad.exception) == (
        f"mint in profile 'p' of {config_file()}: 'nope' is not a base58 address"
    )
    env = runner.invoke(probe, [], env={"DGPU_MINT": "zz"})
    assert str(env.exception) == "$DGPU_MINT: 'zz' is not a base58 address"
    typed = runner.invoke(probe, ["--mint", "zz"])
    assert "Invalid value for --mint" in typed.output


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("profile = 3", "profile must be a profile's name"),
        ("[profiles.a]\nrpc = 1", "[profiles.a].rpc must be a string"),
        ("[profiles.a]\nwhat = 'x'", "unknown key 'what' in [profiles.a]"),
        ("[profiles.a.provider]\ngpus = ['x']", "[profiles.a.provider].gpus must be a string"),
        ("profile = 'b'\n[profiles.a]", "no [profiles.b]"),
        ("[profiles.a", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(text: str, error: str) -> None:
    path = config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        profiles.load(path)
    assert str(caught.value).startswith(f"{path}: ") and error in str(caught.value)
    assert "\n" not in str(caught.value)


def test_values_survive_the_writer() -> None:
    odd = 'quote " backslash \\ newline \n ünïcode'
    config = profiles.ConfigFile(
        config_file(),
        "we ird",
        {"we ird": profiles.Profile("we ird", {"rpc": odd, "bootstrap": [odd]}, {"interval": 3})},
    )
    profiles.save(config)
    assert profiles.load(config_file()) == config


def test_provider_init_then_start_reads_the_profile(tmp_path: Path) -> None:
    code, _ = dgpu(
        "provider", "init", "--rpc", "http://127.0.0.1:9", "--mint", MINT,
        "--data-dir", str(tmp_path / "p"), "--allow-image", "img", "--gpus", "1xRTX 4090",
    )  # fmt: skip
    assert code == 0
    profile = profiles.load(config_file()).profiles["default"]
    assert profile.provider["key"] == str(tmp_path / "p" / "key.json")
    assert (tmp_path / "p" / "key.json").exists()
    # start, with no flag at all, gets as far as the chain the profile names
    result = CliRunner().invoke(cli, ["provider", "start"])
    assert "ChainUnavailable('http://127.0.0.1:9" in repr(result.exception)


def test_program_id_from_a_profile_or_the_environment_is_checked(tmp_path: Path) -> None:
    """``program_id`` (issue 14): a profile key and ``$DGPU_PROGRAM_ID`` for every chain
    command (here ``dgpu run reclaim``); a bad value is named by where it came from,
    before any chain is dialled (the RPC URL answers nothing)."""
    from dgpu.protocol.identity import Identity
    from dgpu.protocol.keyfile import save_identity

    save_identity(Identity.generate(), tmp_path / "me.json")
    values: dict[str, profiles.Value] = {
        "rpc": "http://127.0.0.1:9",
        "program_id": "n0t-base58",
        "key": str(tmp_path / "me.json"),
        "data_dir": str(tmp_path / "data"),
    }
    profiles.save(profiles.ConfigFile(config_file(), "p", {"p": profiles.Profile("p", values)}))
    runner = CliRunner()
    bad = runner.invoke(cli, ["run", "reclaim"])
    assert str(bad.exception) == (
        f"program_id in profile 'p' of {config_file()}: 'n0t-base58' is not a base58 address"
    )
    env = runner.invoke(cli, ["run", "reclaim"], env={"DGPU_PROGRAM_ID": "zz"})
    assert str(env.exception) == "$DGPU_PROGRAM_ID: 'zz' is not a base58 address"
    typed = runner.invoke(
        cli,
        [
            "provider",
            "settle",
            "--program-id",
            "zz",
            "--key",
            str(tmp_path / "me.json"),
            "--data-dir",
            str(tmp_path),
            "--rpc",
            "http://127.0.0.1:9",
        ],
    )
    assert "Invalid value for --program-id" in typed.output
    assert "program_id" in dict(profiles.NETWORK_KEYS)
