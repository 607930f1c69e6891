"""Profiles: named networks and the defaults a renter or provider would otherwise type.

One TOML file in the XDG place (``$XDG_CONFIG_HOME/dgpu/config.toml``, by default
``~/.config/dgpu/config.toml``)::

    profile = "devnet"                    # the profile in use (dgpu config use NAME)

    [profiles.devnet]                     # a network ...
    rpc = "http://127.0.0.1:8899"
    program_id = "…"                      # the escrow's (default: the shipped key's)
    mint = "…"
    coordinator = "http://127.0.0.1:8000"
    bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/…"]
    key = "/root/.dgpu/devnet/keys/renter.json"   # ... and the renter's defaults
    data_dir = "/root/.dgpu/devnet/renter"
    max_price = "3"

    [profiles.devnet.provider]            # what ``dgpu provider start`` uses
    key = "…"
    data_dir = "…"
    gpus = "1xRTX 4090"
    allow_image = ["dgpu/busybox:latest"]

A command reads its values in this order: flags, then ``DGPU_<KEY>`` environment
variables, then the profile (click's ``default_map``; see :class:`ProfileCommand`). This
module is the CLI's edge: the file and the environment are read here and nowhere below.
A bad file, key or value is one line naming the key and the file (:class:`ProfileError`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
from dgpu.protocol.errors import DgpuError

Value = str | int | bool | list[str]

NETWORK_KEYS: Final[dict[str, type]] = {
    "rpc": str,
    "program_id": str,
    "mint": str,
    "coordinator": str,
    "bootstrap": list,
    "psk_file": str,
}
"""What names a network (shared by the renter and the provider of a profile)."""

RENTER_KEYS: Final[dict[str, type]] = {
    "key": str,
    "data_dir": str,
    "max_price": str,
    "duration": int,
    "output_dir": str,
    "mint_authority": str,
}
PROVIDER_KEYS: Final[dict[str, type]] = {
    "key": str,
    "data_dir": str,
    "gpus": str,
    "allow_image": list,
    "allow_any_image": bool,
    "allow_network": bool,
    "allow_ports": bool,
    "max_input_mb": int,
    "price": str,
    "region": str,
    "executor": str,
    "interval": int,
    "grace": int,
    "max_duration": int,
    "bulk_listen": str,
}

PARAM_OF: Final[dict[str, str]] = {
    "rpc": "rpc_url",
    "coordinator": "coordinator_url",
    "key": "key_path",
    "gpus": "gpu_spec",
    "allow_image": "images",
}
"""Profile key -> the click parameter it fills (the same name when not listed)."""
KEY_OF: Final[dict[str, str]] = {param: key for key, param in PARAM_OF.items()}

PROFILE_ENV = "DGPU_PROFILE"
CONFIG_ENV = "DGPU_CONFIG"


def without_profiles(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a child ``dgpu`` that must take every value from its flags (the
    devnet's parts): no ``DGPU_*`` variable, and an empty config file."""
    env = {k: v for k, v in environ.items() if not k.startswith("DGPU_")}
    env[CONFIG_ENV] = os.devnull
    return env


class ProfileError(DgpuError):
    """The config file, a profile or one of its values cannot be used."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DGPU_CONFIG`` if set, else ``$XDG_CONFIG_HOME/dgpu/config.toml`` (``~/.config``
    when unset or not absolute)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "dgpu" / "config.toml"


def env_name(key: str) -> str:
    return "DGPU_" + key.upper()


@dataclass(frozen=True)
class Profile:
    name: str
    values: dict[str, Value] = field(default_factory=dict)
    provider: dict[str, Value] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.values, "provider": dict(self.provider)} if self.provider else self.values


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    current: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)

    def selected(self, name: str | None) -> Profile | None:
        """The profile ``name`` (or the current one); None when neither is set."""
        chosen = name or self.current
        if chosen is None:
            return None
        if chosen not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ProfileError(f"{self.path}: no profile {chosen!r} (profiles: {known})")
        return self.profiles[chosen]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "profile": self.current,
            "profiles": {name: p.to_json() for name, p in sorted(self.profiles.items())},
        }


def _check(path: Path, where: str, table: object, schema: Mapping[str, type]) -> dict[str, Value]:
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: {where} is not a table")
    values: dict[str, Value] = {}
    for key, value in table.items():
        if key == "provider" and schema is not PROVIDER_KEYS:
            continue
        kind = schema.get(key)
        if kind is None:
            raise ProfileError(
                f"{path}: unknown key {key!r} in {where} (known: {', '.join(sorted(schema))})"
            )
        ok = (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
            if kind is list
            else isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        )
        if not ok:
            raise ProfileError(f"{path}: {where}.{key} must be {_kind_name(kind)}, not {value!r}")
        values[key] = value
    return values


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false", list: "a list of strings"}[
        kind
    ]


def load(path: Path) -> ConfigFile:
    """The config file at ``path`` (empty when there is none)."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return ConfigFile(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(raw) - {"profile", "profiles"}
    if unknown:
        raise ProfileError(f"{path}: unknown key {sorted(unknown)[0]!r} (profile, profiles)")
    current = raw.get("profile")
    if current is not None and not isinstance(current, str):
        raise ProfileError(f"{path}: profile must be a profile's name, not {current!r}")
    tables = raw.get("profiles", {})
    if not isinstance(tables, dict):
        raise ProfileError(f"{path}: profiles is not a table")
    profiles: dict[str, Profile] = {}
    for name, table in tables.items():
        where = f"[profiles.{name}]"
        values = _check(path, where, table, {**NETWORK_KEYS, **RENTER_KEYS})
        provider = _check(path, f"{where[:-1]}.provider]", table.get("provider", {}), {
            **NETWORK_KEYS, **PROVIDER_KEYS,
        })  # fmt: skip
        profiles[name] = Profile(name, values, provider)
    if current is not None and current not in profiles:
        raise ProfileError(f"{path}: profile = {current!r}, but there is no [profiles.{current}]")
    return ConfigFile(path, current, profiles)


def _toml_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"
    # a JSON string is a TOML basic string (the same escapes)
    return json.dumps(value, ensure_ascii=False)


def _toml_key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def dumps(config: ConfigFile) -> str:
    lines = ["# dgpu profiles: dgpu config show | set KEY VALUE | use NAME"]
    if config.current is not None:
        lines.append(f"profile = {_toml_value(config.current)}")
    for name, profile in sorted(config.profiles.items()):
        lines += ["", f"[profiles.{_toml_key(name)}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in profile.values.items()]
        if profile.provider:
            lines += ["", f"[profiles.{_toml_key(name)}.provider]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in profile.provider.items()]
    return "\n".join(lines) + "\n"


def save(config: ConfigFile) -> None:
    """Write atomically (a reader sees the old file or the new one, never half)."""
    config.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.path.with_name(config.path.name + ".tmp")
    tmp.write_text(dumps(config))
    tmp.replace(config.path)


def parse_value(key: str, text: tuple[str, ...], schema: Mapping[str, type]) -> Value:
    """A value typed on the command line (``dgpu config set KEY VALUE...``)."""
    kind = schema[key]
    if kind is list:
        return list(text)
    if len(text) != 1:
        raise ProfileError(f"{key} takes one value, got {len(text)}")
    (word,) = text
    if kind is int:
        try:
            return int(word)
        except ValueError as exc:
            raise ProfileError(f"{key} must be an integer, not {word!r}") from exc
    if kind is bool:
        if word.lower() not in ("true", "false"):
            raise ProfileError(f"{key} must be true or false, not {word!r}")
        return word.lower() == "true"
    return word


def with_values(
    config: ConfigFile,
    name: str,
    values: Mapping[str, Value | None],
    *,
    provider: bool = False,
) -> ConfigFile:
    """``config`` with profile ``name`` created or updated (a None value removes a key)."""
    old = config.profiles.get(name, Profile(name))
    target = dict(old.provider if provider else old.values)
    for key, value in values.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    new = (
        Profile(name, dict(old.values), target) if provider else Profile(name, target, old.provider)
    )
    return ConfigFile(config.path, config.current, {**config.profiles, name: new})


def with_current(config: ConfigFile, name: str) -> ConfigFile:
    if name not in config.profiles:
        known = ", ".join(sorted(config.profiles)) or "none yet"
        raise ProfileError(f"{config.path}: no profile {name!r} (profiles: {known})")
    return ConfigFile(config.path, name, config.profiles)


# -- applying a profile to a command ---------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """Where a command's defaults came from, to name the key and file in an error."""

    path: Path
    profile: str | None


class ProfileCommand(click.Command):
    """A command whose options take their defaults from a profile.

    Its options that a profile key fills (``PARAM_OF``) also read ``DGPU_<KEY>``; the
    profile (``--profile``, ``$DGPU_PROFILE`` or the file's current one) becomes click's
    ``default_map``, so the order is flags > environment > profile > built-in default.
    ``section`` is ``"renter"`` or ``"provider"`` (which table of the profile applies).
    """

    section = "renter"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        keys = PROVIDER_KEYS if self.section == "provider" else RENTER_KEYS
        for param in self.params:
            key = KEY_OF.get(param.name or "", param.name or "")
            if isinstance(param, click.Option) and (key in keys or key in NETWORK_KEYS):
                param.envvar = env_name(key)
        self.params.append(
            click.Option(
                ["--profile", "profile_name"],
                envvar=PROFILE_ENV,
                expose_value=False,
                is_eager=True,
                help="Profile of the config file to use (default: its current one).",
            )
        )

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        name = _profile_arg(args) or os.environ.get(PROFILE_ENV) or None
        path = config_path()
        if not any(a in ("-h", "--help") for a in args):
            profile = load(path).selected(name)
            name = profile.name if profile is not None else name
            if profile is not None:
                values = profile.provider if self.section == "provider" else profile.values
                network = {k: v for k, v in profile.values.items() if k in NETWORK_KEYS}
                merged = {**network, **values}
                extra["default_map"] = {PARAM_OF.get(k, k): v for k, v in merged.items()}
            extra.setdefault("obj", Applied(path, profile.name if profile else None))
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.MissingParameter as exc:
            raise _missing(exc, path, name) from None


def _profile_arg(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--":
            return None
        if arg == "--profile" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return None


def _missing(exc: click.MissingParameter, path: Path, name: str | None) -> ProfileError:
    param = exc.param
    if not isinstance(param, click.Option):
        return ProfileError(exc.format_message())
    flag = max(param.opts, key=len)
    key = KEY_OF.get(param.name or "", param.name or "")
    where = f"profile {name!r} of {path}" if name else f"a profile of {path} (none in use)"
    return ProfileError(
        f"missing {flag}: pass it, set {env_name(key)}, or set {key!r} in {where}"
        f" (dgpu config set {key} VALUE)"
    )


def describe(param_name: str, ctx: click.Context | None = None) -> str:
    """Where the value of ``param_name`` came from, in words: ``--mint``, ``$DGPU_MINT``
    or ``mint in profile 'devnet' of /…/config.toml``."""
    ctx = ctx or click.get_current_context(silent=True)
    key = KEY_OF.get(param_name, param_name)
    flag = "--" + key.replace("_", "-")
    if ctx is None:
        return flag
    source = ctx.get_parameter_source(param_name)
    if source is click.core.ParameterSource.ENVIRONMENT:
        return f"${env_name(key)}"
    if source is click.core.ParameterSource.DEFAULT_MAP and isinstance(ctx.obj, Applied):
        return f"{key} in profile {ctx.obj.profile!r} of {ctx.obj.path}"
    return flag


def from_profile(param_name: str, ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return ctx is not None and (
        ctx.get_parameter_source(param_name)
        in (click.core.ParameterSource.DEFAULT_MAP, click.core.ParameterSource.ENVIRONMENT)
    )


class ProviderProfileCommand(ProfileCommand):
    section = "provider"
