"""``dgpu config``: the profiles a renter or provider uses instead of typing every flag.

    dgpu config show [--profile NAME] [--json]    # the file, its profiles, the one in use
    dgpu config set KEY VALUE... [--profile NAME] # e.g. rpc URL; bootstrap ADDR ADDR
    dgpu config set provider.gpus "1xRTX 4090"    # the profile's provider table
    dgpu config unset KEY [--profile NAME]
    dgpu config use NAME                          # make NAME the current profile

The file is ``$XDG_CONFIG_HOME/dgpu/config.toml`` (``~/.config/dgpu/config.toml``); see
:mod:`dgpu.cli.profile` for its layout and for the order flags > ``DGPU_*`` > profile.
"""

from __future__ import annotations

import os

import click
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import (
    NETWORK_KEYS,
    PROFILE_ENV,
    PROVIDER_KEYS,
    RENTER_KEYS,
    ConfigFile,
    ProfileError,
    Value,
    config_path,
    load,
    parse_value,
    save,
    with_current,
    with_values,
)

profile_option = click.option(
    "--profile",
    "profile_name",
    envvar=PROFILE_ENV,
    help="The profile to act on (default: the current one, else 'default').",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group("config")
def command() -> None:
    """Profiles: named networks (rpc, mint, coordinator, bootstrap) and your defaults."""


def _target(config: ConfigFile, name: str | None) -> str:
    return name or config.current or "default"


def _split(key: str) -> tuple[str, bool]:
    """``provider.gpus`` -> (``gpus``, provider table); checks the key exists."""
    provider = key.startswith("provider.")
    bare = key.removeprefix("provider.")
    schema = {**NETWORK_KEYS, **(PROVIDER_KEYS if provider else RENTER_KEYS)}
    if bare not in schema:
        table = "provider." if provider else ""
        known = ", ".join(table + k for k in sorted(schema))
        raise ProfileError(f"unknown key {key!r} (known: {known})")
    return bare, provider


@command.command("show")
@profile_option
@json_option
def show(profile_name: str | None, as_json: bool) -> None:
    """The config file, its profiles and the one in use."""
    config = load(config_path())
    if profile_name is not None:
        config.selected(profile_name)  # says so when there is no such profile
        config = ConfigFile(
            config.path, config.current, {profile_name: config.profiles[profile_name]}
        )
    if as_json:
        emit_json({**config.to_json(), "env": _env_overrides()})
        return
    click.echo(f"# {config.path}" + ("" if config.path.exists() else " (not written yet)"))
    if not config.profiles:
        stderr.print("no profile yet: `dgpu config set rpc URL` creates one (or `dgpu devnet`)")
    for name, profile in sorted(config.profiles.items()):
        mark = " (current)" if name == config.current else ""
        click.echo(f"[{name}]{mark}")
        for key, value in profile.values.items():
            click.echo(f"  {key:16} {_show(value)}")
        for key, value in profile.provider.items():
            click.echo(f"  provider.{key:7} {_show(value)}")
    for name, value in _env_overrides().items():
        click.echo(f"overridden by the environment: {name}={value}")


def _show(value: Value) -> str:
    return (
        " ".join(value)
        if isinstance(value, list)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def _env_overrides() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("DGPU_")}


@command.command("set")
@profile_option
@click.argument("key")
@click.argument("values", nargs=-1, required=True)
@json_option
def set_(profile_name: str | None, key: str, values: tuple[str, ...], as_json: bool) -> None:
    """Set KEY of a profile (created if new; the current one, if none is, too)."""
    config = load(config_path())
    bare, provider = _split(key)
    schema = {**NETWORK_KEYS, **(PROVIDER_KEYS if provider else RENTER_KEYS)}
    value = parse_value(bare, values, schema)
    name = _target(config, profile_name)
    config = with_values(config, name, {bare: value}, provider=provider)
    if config.current is None:
        config = with_current(config, name)
    save(config)
    _done(as_json, config, name, f"{name}: {key} = {_show(value)}")


@command.command("unset")
@profile_option
@click.argument("key")
@json_option
def unset(profile_name: str | None, key: str, as_json: bool) -> None:
    """Remove KEY from a profile."""
    config = load(config_path())
    bare, provider = _split(key)
    name = _target(config, profile_name)
    config.selected(name)
    config = with_values(config, name, {bare: None}, provider=provider)
    save(config)
    _done(as_json, config, name, f"{name}: {key} removed")


@command.command("use")
@click.argument("name")
@json_option
def use(name: str, as_json: bool) -> None:
    """Make NAME the profile commands use (``--profile`` or $DGPU_PROFILE still win)."""
    config = with_current(load(config_path()), name)
    save(config)
    _done(as_json, config, name, f"now using profile {name!r}")


def _done(as_json: bool, config: ConfigFile, name: str, line: str) -> None:
    if as_json:
        emit_json({"path": str(config.path), "profile": name, "current": config.current})
    else:
        stderr.print(f"{line} ({config.path})", highlight=False)
