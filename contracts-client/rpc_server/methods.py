"""The JSON-RPC methods of the local node, each ``(ledger, params) -> JSON result``.

Results follow the Solana JSON-RPC API so that solana-py, solders and web3.js parse them.
Extensions specific to this local node are prefixed ``dgpu_``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import base58
from dgpu.contracts.chain import ChainError, Landed, Simulation, SvmLedger, error_json
from dgpu.contracts.chain.layout import is_mint, is_token_account, mint_decimals, token_amount
from dgpu.contracts.chain.layout import token_mint as token_mint_of
from dgpu.contracts.rpc_server import params as p
from solders.account import Account
from solders.hash import Hash
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction_status import TransactionErrorFieldless

MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURES = 256
MAX_WARP_SECONDS = 100 * 365 * 24 * 3600
MAX_BASE58_ACCOUNT_DATA = 128
MAX_AIRDROP_LAMPORTS = 10**15
SOLANA_CORE_VERSION = "2.2.0"
FEATURE_SET = 0
GENESIS_HASH = Hash(hashlib.sha256(b"dgpu local chain").digest())

Method = Callable[[SvmLedger, list[Any]], Any]
ACCOUNT_ENCODINGS = ("base58", "base64", "jsonParsed", "base64+zstd", "binary")


def _context(ledger: SvmLedger) -> dict[str, Any]:
    return {"slot": ledger.slot, "apiVersion": SOLANA_CORE_VERSION}


def _with_context(ledger: SvmLedger, value: Any) -> dict[str, Any]:
    return {"context": _context(ledger), "value": value}


# -- accounts ---------------------------------------------------------------------------


def _account_view(cfg: dict[str, Any]) -> tuple[str, tuple[int, int] | None]:
    encoding = p.choice(cfg, "encoding", ACCOUNT_ENCODINGS, "binary")
    if encoding == "base64+zstd":
        raise p.invalid("base64+zstd is not supported by this node; use base64")
    slice_cfg = cfg.get("dataSlice")
    if slice_cfg is None:
        return encoding, None
    if not isinstance(slice_cfg, dict):
        raise p.invalid("dataSlice must be an object")
    offset = p.u64(slice_cfg.get("offset"), "dataSlice.offset")
    length = p.u64(slice_cfg.get("length"), "dataSlice.length")
    return encoding, (offset, length)


def encode_account(
    account: Account | None, encoding: str, data_slice: tuple[int, int] | None
) -> dict[str, Any] | None:
    if account is None:
        return None
    data = bytes(account.data)
    if data_slice is not None:
        data = data[data_slice[0] : data_slice[0] + data_slice[1]]
    encoded: Any
    if encoding in ("base58", "binary"):
        if len(data) > MAX_BASE58_ACCOUNT_DATA:
            raise p.invalid(
                f"encoded binary (base 58) data should be less than {MAX_BASE58_ACCOUNT_DATA} "
                "bytes, please use Base64 encoding"
            )
        text = base58.b58encode(data).decode()
        encoded = text if encoding == "binary" else [text, "base58"]
    else:  # base64, and jsonParsed falls back to base64 for data it cannot parse
        encoded = [base64.b64encode(data).decode(), "base64"]
    return {
        "lamports": account.lamports,
        "data": encoded,
        "owner": str(account.owner),
        "executable": account.executable,
        "rentEpoch": account.rent_epoch,
        "space": len(account.data),
    }


def get_account_info(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    key = p.pubkey(params[0], "pubkey")
    encoding, data_slice = _account_view(p.config(params, 1))
    return _with_context(ledger, encode_account(ledger.get_account(key), encoding, data_slice))


def get_multiple_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    keys = p.pubkeys(params[0], "pubkeys", MAX_MULTIPLE_ACCOUNTS)
    encoding, data_slice = _account_view(p.config(params, 1))
    accounts = ledger.get_accounts(keys)
    return _with_context(ledger, [encode_account(a, encoding, data_slice) for a in accounts])


def get_balance(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    return _with_context(ledger, ledger.balance(p.pubkey(params[0], "pubkey")))


def ui_amount_string(amount: int, decimals: int) -> str:
    whole, frac = divmod(amount, 10**decimals)
    if frac == 0 or decimals == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def get_token_account_balance(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    key = p.pubkey(params[0], "pubkey")
    account = ledger.get_account(key)
    if account is None:
        raise p.invalid("could not find account")
    if not is_token_account(account):
        raise p.invalid("not a Token account")
    mint = ledger.get_account(token_mint_of(account.data))
    if mint is None or not is_mint(mint):
        raise p.invalid("could not find mint")
    amount, decimals = token_amount(account.data), mint_decimals(mint.data)
    text = ui_amount_string(amount, decimals)
    return _with_context(
        ledger,
        {
            "amount": str(amount),
            "decimals": decimals,
            "uiAmount": float(text),  # display field of the standard API; amounts stay ints
            "uiAmountString": text,
        },
    )


def get_minimum_balance_for_rent_exemption(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    size = p.u64(params[0], "size", maximum=10 * 1024 * 1024)
    return ledger.rent_exempt_minimum(size)


# -- transactions -----------------------------------------------------------------------


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
        if account_encoding in ("base58", "binary", "base64+zstd"):
            raise p.invalid("accounts.encoding must be base64 or jsonParsed")
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
    return _with_context(ledger, value)


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
    return _with_context(ledger, [_status_json(x) for x in ledger.statuses(sigs)])


def get_transaction(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    if isinstance(params[1] if len(params) > 1 else None, str):
        cfg: dict[str, Any] = {"encoding": params[1]}  # legacy form: [signature, encoding]
    else:
        cfg = p.config(params, 1)
    encoding = p.choice(cfg, "encoding", ("json", "jsonParsed", "base58", "base64"), "json")
    if encoding in ("json", "jsonParsed"):
        raise p.invalid(f"{encoding} encoding is not supported by this node; use base64")
    max_version = cfg.get("maxSupportedTransactionVersion")
    if max_version is not None:
        p.u64(max_version, "maxSupportedTransactionVersion", maximum=0)
    (landed,) = ledger.statuses([p.signature(params[0], "signature")])
    if landed is None or not landed.wire:
        return None
    if not landed.legacy and max_version is None:
        raise p.RpcFault(
            p.TRANSACTION_VERSION_UNSUPPORTED,
            "Transaction version (0) is not supported by the requesting client. "
            "Please try the request again with the following configuration parameter: "
            '"maxSupportedTransactionVersion": 0',
        )
    wire = (
        base64.b64encode(landed.wire).decode()
        if encoding == "base64"
        else base58.b58encode(landed.wire).decode()
    )
    err = None if landed.err is None else error_json(landed.err)
    return {
        "slot": landed.slot,
        "blockTime": landed.block_time,
        "version": "legacy" if landed.legacy else 0,
        "transaction": [wire, encoding],
        "meta": {
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "fee": landed.fee,
            "preBalances": [],
            "postBalances": [],
            "innerInstructions": [],
            "logMessages": list(landed.logs),
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": []},
            "computeUnitsConsumed": landed.units_consumed,
        },
    }


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


# -- blocks and node --------------------------------------------------------------------


def get_latest_blockhash(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    hash_, last_valid = ledger.latest_blockhash()
    return _with_context(ledger, {"blockhash": str(hash_), "lastValidBlockHeight": last_valid})


def is_blockhash_valid(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    return _with_context(ledger, ledger.is_blockhash_valid(p.blockhash(params[0], "blockhash")))


def get_slot(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    return ledger.slot


def get_block_time(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 1)
    slot = p.u64(params[0], "slot")
    ts = ledger.block_time(slot)
    if ts is None:
        raise p.RpcFault(p.BLOCK_NOT_AVAILABLE, f"Block not available for slot {slot}")
    return ts


def get_version(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return {"solana-core": SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}


def get_health(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return "ok"


def get_genesis_hash(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return str(GENESIS_HASH)


def dgpu_warp(ledger: SvmLedger, params: list[Any]) -> Any:
    """Local-node extension: move the chain clock forward by ``params[0]`` seconds."""
    p.arity(params, 1, 1)
    seconds = p.u64(params[0], "seconds", maximum=MAX_WARP_SECONDS)
    return {"unixTime": ledger.warp(seconds)}


METHODS: dict[str, Method] = {
    "getAccountInfo": get_account_info,
    "getBalance": get_balance,
    "getBlockHeight": get_slot,
    "getBlockTime": get_block_time,
    "getGenesisHash": get_genesis_hash,
    "getHealth": get_health,
    "getLatestBlockhash": get_latest_blockhash,
    "getMinimumBalanceForRentExemption": get_minimum_balance_for_rent_exemption,
    "getMultipleAccounts": get_multiple_accounts,
    "getSignatureStatuses": get_signature_statuses,
    "getSlot": get_slot,
    "getTokenAccountBalance": get_token_account_balance,
    "getTransaction": get_transaction,
    "getVersion": get_version,
    "isBlockhashValid": is_blockhash_valid,
    "requestAirdrop": request_airdrop,
    "sendTransaction": send_transaction,
    "simulateTransaction": simulate_transaction,
    "dgpu_warp": dgpu_warp,
}
