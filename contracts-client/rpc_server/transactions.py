"""Transaction methods of the local node: sendTransaction, simulateTransaction,
getSignatureStatuses, getFeeForMessage, requestAirdrop."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from dgpu.contracts_client.chain import ChainError, Landed, Simulation, SvmLedger, error_json
from dgpu.contracts_client.chain.ledger import LAMPORTS_PER_SIGNATURE
from dgpu.contracts_client.rpc_server import params as p
from dgpu.contracts_client.rpc_server.accounts import ACCOUNT_ENCODINGS, encode_account
from solders.message import from_bytes_versioned
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction_status import TransactionErrorFieldless

MAX_SIGNATURES = 256
MAX_AIRDROP_LAMPORTS = 10**15


def _simulation_value(sim: Simulation) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(
        RpcSimulateTransactionResult(
            err=sim.err, logs=list(sim.logs), units_consumed=sim.units_consumed
        ).to_json()
    )
    return value


def _preflight_fault(sim: Simulation) -> p.RpcFault:
    assert sim.err is not None
    if sim.err == TransactionErrorFieldless.SignatureFailure:
        return p.RpcFault(
            p.SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
        )
    detail = json.dumps(error_json(sim.err), separators=(",", ":"))
    return p.RpcFault(
        p.SEND_PREFLIGHT_FAILURE,
        f"Transaction simulation failed: {detail}",
        _simulation_value(sim),
    )


def send_transaction(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    cfg = p.config(params, 1)
    encoding = p.choice(cfg, "encoding", ("base58", "base64"), "base58")
    skip_preflight = p.flag(cfg, "skipPreflight", False)
    tx = p.transaction(params[0], encoding)
    outcome = ledger.submit(tx, preflight=not skip_preflight)
    if isinstance(outcome, Simulation) and not skip_preflight:
        raise _preflight_fault(outcome)
    # Without preflight a refused transaction is dropped silently, as by a cluster.
    return str(tx.signatures[0])


def simulate_transaction(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    cfg = p.config(params, 1)
    encoding = p.choice(cfg, "encoding", ("base58", "base64"), "base58")
    sig_verify = p.flag(cfg, "sigVerify", False)
    replace = p.flag(cfg, "replaceRecentBlockhash", False)
    if sig_verify and replace:
        raise p.invalid("sigVerify may not be used with replaceRecentBlockhash")
    addresses, account_encoding = [], "base64"
    accounts_cfg = cfg.get("accounts")
    if accounts_cfg is not None:
        if not isinstance(accounts_cfg, dict):
            raise p.invalid("accounts must be an object")
        addresses = p.pubkeys(accounts_cfg.get("addresses"), "accounts.addresses", 64)
        account_encoding = p.choice(accounts_cfg, "encoding", ACCOUNT_ENCODINGS, "base64")
        if account_encoding in ("base58", "binary"):
            raise p.invalid("accounts.encoding must be base64, base64+zstd or jsonParsed")
    tx = p.transaction(params[0], encoding)
    sim = ledger.simulate(tx, sig_verify=sig_verify, replace_blockhash=replace, addresses=addresses)
    value = _simulation_value(sim)
    if accounts_cfg is not None:
        value["accounts"] = [encode_account(a, account_encoding, None) for a in sim.accounts]
    if replace:
        hash_, last_valid = ledger.latest_blockhash()
        value["replacementBlockhash"] = {
            "blockhash": str(hash_),
            "lastValidBlockHeight": last_valid,
        }
    return p.with_context(ledger, value)


def _status_json(landed: Landed | None) -> dict[str, Any] | None:
    if landed is None:
        return None
    err = None if landed.err is None else error_json(landed.err)
    return {
        "slot": landed.slot,
        "confirmations": None,
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "confirmationStatus": "finalized",
    }


def get_signature_statuses(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    cfg = p.config(params, 1)
    p.flag(cfg, "searchTransactionHistory", False)
    raw = params[0]
    if not isinstance(raw, list) or len(raw) > MAX_SIGNATURES:
        raise p.invalid(f"signatures must be an array of at most {MAX_SIGNATURES}")
    sigs = [p.signature(s, f"signatures[{i}]") for i, s in enumerate(raw)]
    return p.with_context(ledger, [_status_json(x) for x in ledger.statuses(sigs)])


def request_airdrop(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 2, 3)
    key = p.pubkey(params[0], "pubkey")
    lamports = p.u64(params[1], "lamports", maximum=MAX_AIRDROP_LAMPORTS)
    p.config(params, 2)
    if lamports == 0:
        raise p.invalid("lamports must be positive")
    try:
        return str(ledger.airdrop(key, lamports).signature)
    except ChainError as exc:
        raise p.RpcFault(p.INTERNAL_ERROR, f"airdrop request failed: {exc}") from None


def get_fee_for_message(ledger: SvmLedger, params: list[Any]) -> Any:
    """The fee of a base64 message: per signature; null once its blockhash expired."""
    p.arity(params, 1, 2)
    p.config(params, 1)
    encoded = params[0]
    if not isinstance(encoded, str) or len(encoded) > p.MAX_BASE64_TX:
        raise p.invalid("the message must be a base64 string within the packet size")
    try:
        message = from_bytes_versioned(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise p.invalid("not a base64 serialized message") from None
    if not ledger.is_blockhash_valid(message.recent_blockhash):
        return p.with_context(ledger, None)
    fee = LAMPORTS_PER_SIGNATURE * int(message.header.num_required_signatures)
    return p.with_context(ledger, fee)
