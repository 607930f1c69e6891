"""The escrow's IDL in the shape Anchor 0.30+ clients read (IDL spec 0.1.0).

The shipped ``contracts/idl.json`` is in the legacy (pre-0.30) format because anchorpy 0.21,
which drives our own encoding, reads only that one. Anchor TS 0.30+ (``@coral-xyz/anchor``)
reads only the new one: the program ``address`` at the top, ``metadata.spec``, explicit
8-byte ``discriminator`` arrays on instructions and accounts, account structs under
``types``, ``writable``/``signer`` flags, ``pubkey`` for ``publicKey``, ``{"defined":
{"name": …}}``, byte-array ``const`` seeds, and fixed ``address`` fields on the accounts the
program checks against a constant (so Anchor resolves them itself). :func:`anchor_spec`
derives that document from the legacy one, so there is one source of truth; ``dgpu chain
idl --anchor`` prints it.

Discriminators follow the Anchor convention the program implements (``escrow.c``):
``sha256("global:<snake_case name>")[:8]`` for instructions and
``sha256("account:<Name>")[:8]`` for accounts. Names become snake_case, as ``anchor build``
writes them; Anchor TS shows them in camelCase again (``program.methods.openChannel``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from dgpu.contracts_client.errors import IdlConversionError
from pyheck import snake

SPEC_VERSION: Final = "0.1.0"

# Accounts the escrow compares with a constant (escrow.c SYSTEM_PROGRAM, TOKEN_PROGRAM,
# INSTRUCTIONS_SYSVAR): Anchor 0.30 writes them with a fixed address.
FIXED_ADDRESSES: Final[Mapping[str, str]] = {
    "systemProgram": "11111111111111111111111111111111",
    "tokenProgram": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "instructions": "Sysvar1nstructions1111111111111111111111111",
}


def discriminator(namespace: str, name: str) -> list[int]:
    """Anchor's 8-byte discriminator of ``namespace:name``."""
    return list(hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8])


def _type(legacy: Any) -> Any:
    if isinstance(legacy, str):
        return "pubkey" if legacy == "publicKey" else legacy
    if isinstance(legacy, dict) and len(legacy) == 1:
        ((kind, inner),) = legacy.items()
        if kind in ("vec", "option", "coption"):
            return {kind: _type(inner)}
        if kind == "array" and isinstance(inner, list) and len(inner) == 2:
            return {"array": [_type(inner[0]), inner[1]]}
        if kind == "defined" and isinstance(inner, str):
            return {"defined": {"name": inner}}
    raise IdlConversionError(f"IDL type {legacy!r} has no Anchor 0.30 form here")


def _docs(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"docs": list(item["docs"])} if item.get("docs") else {}


def _field(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": snake(item["name"]), **_docs(item), "type": _type(item["type"])}


def _seed(seed: Mapping[str, Any]) -> dict[str, Any]:
    kind = seed.get("kind")
    if kind == "const" and seed.get("type") == "string":
        return {"kind": "const", "value": list(str(seed["value"]).encode())}
    if kind in ("account", "arg"):
        return {"kind": kind, "path": snake(seed["path"])}
    raise IdlConversionError(f"PDA seed {dict(seed)!r} has no Anchor 0.30 form here")


def _account_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    if "accounts" in meta:
        raise IdlConversionError(f"nested account group {meta['name']!r} is not supported")
    out: dict[str, Any] = {"name": snake(meta["name"]), **_docs(meta)}
    if meta.get("isMut"):
        out["writable"] = True
    if meta.get("isSigner"):
        out["signer"] = True
    if meta.get("isOptional"):
        out["optional"] = True
    if meta["name"] in FIXED_ADDRESSES:
        out["address"] = FIXED_ADDRESSES[meta["name"]]
    pda = meta.get("pda")
    if pda is not None:
        if "programId" in pda:
            raise IdlConversionError(f"PDA of another program ({meta['name']!r})")
        out["pda"] = {"seeds": [_seed(s) for s in pda["seeds"]]}
    return out


def _instruction(ix: Mapping[str, Any]) -> dict[str, Any]:
    name = snake(ix["name"])
    return {
        "name": name,
        **_docs(ix),
        "discriminator": discriminator("global", name),
        "accounts": [_account_meta(a) for a in ix["accounts"]],
        "args": [_field(a) for a in ix["args"]],
    }


def _typedef(item: Mapping[str, Any]) -> dict[str, Any]:
    body = item["type"]
    if body.get("kind") != "struct":
        raise IdlConversionError(f"type {item['name']!r}: only structs are carried over")
    return {
        "name": item["name"],
        **_docs(item),
        "type": {"kind": "struct", "fields": [_field(f) for f in body["fields"]]},
    }


def anchor_spec(legacy: Mapping[str, Any]) -> dict[str, Any]:
    """The Anchor 0.30+ (spec 0.1.0) IDL of a legacy-format IDL with ``metadata.address``."""
    try:
        address = legacy["metadata"]["address"]
        for unsupported in ("events", "constants", "state"):
            if legacy.get(unsupported):
                raise IdlConversionError(f"legacy IDL section {unsupported!r} is not supported")
        accounts = list(legacy.get("accounts", []))
        return {
            "address": address,
            "metadata": {
                "name": legacy["name"],
                "version": legacy["version"],
                "spec": SPEC_VERSION,
                **({"description": " ".join(legacy["docs"])} if legacy.get("docs") else {}),
            },
            "instructions": [_instruction(ix) for ix in legacy["instructions"]],
            "accounts": [
                {"name": a["name"], "discriminator": discriminator("account", a["name"])}
                for a in accounts
            ],
            "errors": [dict(e) for e in legacy.get("errors", [])],
            "types": [_typedef(t) for t in [*accounts, *legacy.get("types", [])]],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise IdlConversionError(f"not a legacy Anchor IDL: missing or malformed {exc}") from None
