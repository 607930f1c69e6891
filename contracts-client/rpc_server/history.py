"""History methods of the local node: getTransaction, getSignaturesForAddress, getBlock,
getBlocks, getBlocksWithLimit, getFirstAvailableBlock, getTransactionCount.

Each landed transaction is its own block here (one slot, one transaction), so a block
holds at most one transaction. Everything is read back from the ledger's journal.
"""

from __future__ import annotations

import base64
from typing import Any

import base58
from dgpu.contracts_client.chain import Landed, SvmLedger, parse_wire_transaction
from dgpu.contracts_client.rpc_server import params as p
from solders.message import MessageV0

TX_ENCODINGS = ("json", "jsonParsed", "base58", "base64")
MAX_SIGNATURES_FOR_ADDRESS = 1000
MAX_BLOCK_RANGE = 500_000
UNSUPPORTED_VERSION = (
    "Transaction version (0) is not supported by the requesting client. "
    "Please try the request again with the following configuration parameter: "
    '"maxSupportedTransactionVersion": 0'
)


def _status(err: Any) -> dict[str, Any]:
    return {"Ok": None} if err is None else {"Err": err}


def _message_json(landed: Landed, parsed: bool) -> tuple[list[str], dict[str, Any]]:
    tx = parse_wire_transaction(landed.wire)
    message = tx.message
    header = message.header
    static = [str(k) for k in message.account_keys]
    keys: list[str] = landed.meta.get("accountKeys", static)
    writable: list[bool] = landed.meta.get("writable", [False] * len(keys))
    signed = int(header.num_required_signatures)
    instructions: list[dict[str, Any]] = []
    for ix in message.instructions:
        accounts = list(bytes(ix.accounts))
        data = base58.b58encode(bytes(ix.data)).decode()
        if parsed:
            # the "partially decoded" form a validator uses for programs it cannot parse
            instructions.append(
                {
                    "programId": keys[ix.program_id_index],
                    "accounts": [keys[i] for i in accounts],
                    "data": data,
                    "stackHeight": None,
                }
            )
        else:
            instructions.append(
                {
                    "programIdIndex": int(ix.program_id_index),
                    "accounts": accounts,
                    "data": data,
                    "stackHeight": None,
                }
            )
    out: dict[str, Any] = {
        "header": {
            "numRequiredSignatures": signed,
            "numReadonlySignedAccounts": int(header.num_readonly_signed_accounts),
            "numReadonlyUnsignedAccounts": int(header.num_readonly_unsigned_accounts),
        },
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": instructions,
    }
    if parsed:
        out["accountKeys"] = [
            {
                "pubkey": key,
                "writable": writable[i],
                "signer": i < signed,
                "source": "transaction" if i < len(static) else "lookupTable",
            }
            for i, key in enumerate(keys)
        ]
        del out["header"]
    else:
        out["accountKeys"] = static
    if isinstance(message, MessageV0):
        out["addressTableLookups"] = [
            {
                "accountKey": str(lookup.account_key),
                "writableIndexes": list(bytes(lookup.writable_indexes)),
                "readonlyIndexes": list(bytes(lookup.readonly_indexes)),
            }
            for lookup in message.address_table_lookups
        ]
    return [str(s) for s in tx.signatures], out


def _inner_parsed(landed: Landed) -> list[dict[str, Any]]:
    keys: list[str] = landed.meta.get("accountKeys", [])
    return [
        {
            "index": group["index"],
            "instructions": [
                {
                    "programId": keys[i["programIdIndex"]],
                    "accounts": [keys[a] for a in i["accounts"]],
                    "data": i["data"],
                    "stackHeight": i["stackHeight"],
                }
                for i in group["instructions"]
            ],
        }
        for group in landed.meta.get("innerInstructions", [])
    ]


def transaction_json(landed: Landed, encoding: str, max_version: int | None) -> dict[str, Any]:
    """A landed transaction as ``getTransaction`` and ``getBlock`` spell it."""
    if not landed.legacy and max_version is None:
        raise p.RpcFault(p.TRANSACTION_VERSION_UNSUPPORTED, UNSUPPORTED_VERSION)
    transaction: Any
    if encoding == "base64":
        transaction = [base64.b64encode(landed.wire).decode(), "base64"]
    elif encoding == "base58":
        transaction = [base58.b58encode(landed.wire).decode(), "base58"]
    else:
        signatures, message = _message_json(landed, encoding == "jsonParsed")
        transaction = {"signatures": signatures, "message": message}
    meta = landed.meta
    err = landed.err_json
    out_meta: dict[str, Any] = {
        "err": err,
        "status": _status(err),
        "fee": landed.fee,
        "preBalances": meta.get("preBalances", []),
        "postBalances": meta.get("postBalances", []),
        "innerInstructions": (
            _inner_parsed(landed) if encoding == "jsonParsed" else meta.get("innerInstructions", [])
        ),
        "logMessages": list(landed.logs),
        "preTokenBalances": meta.get("preTokenBalances", []),
        "postTokenBalances": meta.get("postTokenBalances", []),
        "rewards": [],
        "loadedAddresses": meta.get("loadedAddresses", {"writable": [], "readonly": []}),
        "computeUnitsConsumed": landed.units_consumed,
    }
    if "returnData" in meta:
        out_meta["returnData"] = meta["returnData"]
    out: dict[str, Any] = {
        "slot": landed.slot,
        "blockTime": landed.block_time,
        "transaction": transaction,
        "meta": out_meta,
    }
    if max_version is not None:
        out["version"] = "legacy" if landed.legacy else 0
    return out


def _tx_config(params: list[Any], index: int) -> tuple[str, int | None]:
    raw = params[index] if len(params) > index else None
    cfg: dict[str, Any] = {"encoding": raw} if isinstance(raw, str) else p.config(params, index)
    encoding = p.choice(cfg, "encoding", TX_ENCODINGS, "json")
    max_version = cfg.get("maxSupportedTransactionVersion")
    if max_version is not None:
        max_version = p.u64(max_version, "maxSupportedTransactionVersion", maximum=0)
    commitment = cfg.get("commitment")
    if commitment == "processed":
        raise p.invalid("processed commitment is not supported")
    return encoding, max_version


def get_transaction(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    encoding, max_version = _tx_config(params, 1)
    (landed,) = ledger.statuses([p.signature(params[0], "signature")])
    if landed is None:
        return None
    return transaction_json(landed, encoding, max_version)


def get_signatures_for_address(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    address = p.pubkey(params[0], "address")
    cfg = p.config(params, 1)
    limit = p.u64(cfg.get("limit", MAX_SIGNATURES_FOR_ADDRESS), "limit")
    if not 1 <= limit <= MAX_SIGNATURES_FOR_ADDRESS:
        raise p.invalid(f"limit must be in 1..{MAX_SIGNATURES_FOR_ADDRESS}")
    before = None if cfg.get("before") is None else p.signature(cfg["before"], "before")
    until = None if cfg.get("until") is None else p.signature(cfg["until"], "until")
    rows = ledger.signatures_for(address, before=before, until=until, limit=limit)
    return [
        {
            "signature": str(r.signature),
            "slot": r.slot,
            "err": r.err_json,
            "memo": None,
            "blockTime": r.block_time,
            "confirmationStatus": "finalized",
        }
        for r in rows
    ]


def get_block(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    slot = p.u64(params[0], "slot")
    encoding, max_version = _tx_config(params, 1)
    cfg = p.config(params, 1) if len(params) > 1 and isinstance(params[1], dict) else {}
    details = p.choice(
        cfg, "transactionDetails", ("full", "accounts", "signatures", "none"), "full"
    )
    rewards = p.flag(cfg, "rewards", True)
    found = ledger.block(slot)
    if found is None:
        raise p.RpcFault(
            p.BLOCK_NOT_AVAILABLE if slot <= ledger.slot else p.SLOT_SKIPPED,
            f"Block not available for slot {slot}",
        )
    block, landed = found
    out: dict[str, Any] = {
        "blockhash": block.blockhash,
        "previousBlockhash": block.previous_blockhash,
        "parentSlot": block.parent_slot,
        "blockTime": block.block_time,
        "blockHeight": block.slot,
    }
    txs = [] if landed is None else [landed]
    if details == "full":
        out["transactions"] = [transaction_json(t, encoding, max_version) for t in txs]
    elif details == "accounts":
        out["transactions"] = [
            {
                "transaction": {
                    "signatures": [str(t.signature)],
                    "accountKeys": transaction_json(t, "jsonParsed", max_version)["transaction"][
                        "message"
                    ]["accountKeys"],
                },
                "meta": transaction_json(t, "json", max_version)["meta"],
            }
            for t in txs
        ]
    elif details == "signatures":
        out["signatures"] = [str(t.signature) for t in txs]
    if rewards:
        out["rewards"] = []
    return out


def get_blocks(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 3)
    start = p.u64(params[0], "start_slot")
    end = ledger.slot
    if len(params) > 1 and not isinstance(params[1], dict) and params[1] is not None:
        end = min(end, p.u64(params[1], "end_slot"))
    if end - start > MAX_BLOCK_RANGE:
        raise p.invalid(f"slot range too large; max {MAX_BLOCK_RANGE}")
    return ledger.blocks(start, end, MAX_BLOCK_RANGE)


def get_blocks_with_limit(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 2, 3)
    start = p.u64(params[0], "start_slot")
    limit = p.u64(params[1], "limit", maximum=MAX_BLOCK_RANGE)
    return ledger.blocks(start, ledger.slot, limit)


def get_first_available_block(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return ledger.first_available_block()


def get_transaction_count(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    return ledger.transaction_count()
