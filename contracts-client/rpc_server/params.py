"""Strict readers for JSON-RPC positional parameters, the error a method raises, and
the ``{context, value}`` envelope of results.

Every value comes from an untrusted HTTP body: each reader checks type and range and
raises :class:`RpcFault` with the standard code and a message naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import base58
from dgpu.contracts_client.chain import SvmLedger, parse_wire_transaction
from dgpu.protocol.errors import DgpuError
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Solana's server error codes
BLOCK_NOT_AVAILABLE = -32004
SEND_PREFLIGHT_FAILURE = -32002
SLOT_SKIPPED = -32007
NO_SNAPSHOT = -32008
MIN_CONTEXT_SLOT_NOT_REACHED = -32016
SIGNATURE_VERIFICATION_FAILURE = -32003
TRANSACTION_VERSION_UNSUPPORTED = -32015

PACKET_DATA_SIZE = 1232
MAX_BASE64_TX = 1644
MAX_BASE58_TX = 1683
U64_MAX = 2**64 - 1
SOLANA_CORE_VERSION = "2.2.0"


class RpcFault(DgpuError):
    """A JSON-RPC error object to answer with (not a bug of the server)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj


def invalid(message: str) -> RpcFault:
    return RpcFault(INVALID_PARAMS, f"Invalid params: {message}")


def arity(params: list[Any], minimum: int, maximum: int) -> None:
    if not minimum <= len(params) <= maximum:
        want = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
        raise invalid(f"expected {want} parameters, got {len(params)}")


def pubkey(value: Any, name: str) -> Pubkey:
    if not isinstance(value, str) or not 32 <= len(value) <= 44:
        raise invalid(f"{name} must be a base58 public key")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise invalid(f"{name} is not a valid public key") from None


def pubkeys(value: Any, name: str, limit: int) -> list[Pubkey]:
    if not isinstance(value, list):
        raise invalid(f"{name} must be an array of public keys")
    if len(value) > limit:
        raise invalid(f"{name}: at most {limit} entries")
    return [pubkey(v, f"{name}[{i}]") for i, v in enumerate(value)]


def signature(value: Any, name: str) -> Signature:
    if not isinstance(value, str) or not 64 <= len(value) <= 88:
        raise invalid(f"{name} must be a base58 signature")
    try:
        return Signature.from_string(value)
    except ValueError:
        raise invalid(f"{name} is not a valid signature") from None


def blockhash(value: Any, name: str) -> Hash:
    if not isinstance(value, str) or not 32 <= len(value) <= 44:
        raise invalid(f"{name} must be a base58 hash")
    try:
        return Hash.from_string(value)
    except ValueError:
        raise invalid(f"{name} is not a valid hash") from None


def u64(value: Any, name: str, *, maximum: int = U64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise invalid(f"{name} must be an integer in 0..{maximum}")
    return value


def config(params: list[Any], index: int) -> dict[str, Any]:
    """The optional configuration object at ``index`` ({} when absent or null)."""
    if len(params) <= index or params[index] is None:
        return {}
    value = params[index]
    if not isinstance(value, dict):
        raise invalid(f"parameter {index} must be a configuration object")
    # clients (solana-py) send null for every option they leave unset
    return {k: v for k, v in value.items() if v is not None}


def flag(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.get(key)
    if value is None:  # clients send null for options they leave unset
        return default
    if not isinstance(value, bool):
        raise invalid(f"{key} must be a boolean")
    return value


def choice(cfg: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise invalid(f"{key} must be one of {', '.join(allowed)}")
    return value


def transaction(value: Any, encoding: str) -> VersionedTransaction:
    """Decode a wire transaction sent as base58 or base64, within the packet size."""
    if not isinstance(value, str):
        raise invalid("the transaction must be an encoded string")
    limit = MAX_BASE64_TX if encoding == "base64" else MAX_BASE58_TX
    if len(value) > limit:
        raise invalid(
            f"{encoding} encoded transaction too large: {len(value)} characters "
            f"(max {limit} encoded / {PACKET_DATA_SIZE} raw bytes)"
        )
    try:
        raw = (
            base64.b64decode(value, validate=True)
            if encoding == "base64"
            else base58.b58decode(value)
        )
    except (binascii.Error, ValueError):
        raise invalid(f"the transaction is not valid {encoding}") from None
    if len(raw) > PACKET_DATA_SIZE:
        raise invalid(f"transaction of {len(raw)} bytes exceeds {PACKET_DATA_SIZE}")
    try:
        tx = parse_wire_transaction(raw)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if not tx.signatures:
        raise invalid("the transaction has no signature")
    return tx


def with_context(ledger: SvmLedger, value: Any) -> dict[str, Any]:
    """A result in the ``{"context": {"slot", "apiVersion"}, "value"}`` envelope."""
    return {"context": {"slot": ledger.slot, "apiVersion": SOLANA_CORE_VERSION}, "value": value}
