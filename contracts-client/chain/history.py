"""What the ledger records about a transaction beyond LiteSVM's metadata.

LiteSVM's ``TransactionMetadata`` has logs, compute units, inner instructions and return
data, but no account list of v0 messages, no pre/post balances and no token balances;
a validator's ``getTransaction`` has them all. They are computed here around the
execution and stored as the JSON the RPC answers with.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import base58
from dgpu.contracts_client.chain.interface import AnyTransaction
from solders.account import Account
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction_metadata import TransactionMetadata
from spl.token.constants import ACCOUNT_LEN, TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

LOOKUP_TABLE_META_SIZE = 56
TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)
_TOKEN_STATE_OFFSET = 108
_MINT_DECIMALS_OFFSET = 44

Reader = Callable[[Pubkey], Account | None]


@dataclass(frozen=True)
class AccountKeys:
    """The message's accounts in execution order: static keys, then those loaded from
    lookup tables (writable ones first), with their writability."""

    keys: tuple[Pubkey, ...]
    writable: tuple[bool, ...]
    loaded_writable: tuple[Pubkey, ...]
    loaded_readonly: tuple[Pubkey, ...]

    @property
    def writable_keys(self) -> list[Pubkey]:
        return [k for k, w in zip(self.keys, self.writable, strict=True) if w]


def _table_addresses(account: Account | None) -> list[Pubkey]:
    if account is None:
        return []
    data = bytes(account.data)[LOOKUP_TABLE_META_SIZE:]
    return [Pubkey.from_bytes(data[i : i + 32]) for i in range(0, len(data) - 31, 32)]


def account_keys(tx: AnyTransaction, read: Reader) -> AccountKeys:
    """Resolve every account ``tx`` names (lookup tables read through ``read``)."""
    message = tx.message
    static = list(message.account_keys)
    header = message.header
    signed = int(header.num_required_signatures)
    ro_signed = int(header.num_readonly_signed_accounts)
    ro_unsigned = int(header.num_readonly_unsigned_accounts)
    writable = [
        i < signed - ro_signed if i < signed else i < len(static) - ro_unsigned
        for i in range(len(static))
    ]
    loaded_w: list[Pubkey] = []
    loaded_r: list[Pubkey] = []
    if isinstance(message, MessageV0):
        for lookup in message.address_table_lookups:
            table = _table_addresses(read(lookup.account_key))
            loaded_w += [table[i] for i in bytes(lookup.writable_indexes) if i < len(table)]
            loaded_r += [table[i] for i in bytes(lookup.readonly_indexes) if i < len(table)]
    keys = tuple(static + loaded_w + loaded_r)
    flags = tuple(writable + [True] * len(loaded_w) + [False] * len(loaded_r))
    return AccountKeys(keys, flags, tuple(loaded_w), tuple(loaded_r))


def ui_amount_string(amount: int, decimals: int) -> str:
    whole, frac = divmod(amount, 10**decimals)
    if frac == 0 or decimals == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    text = ui_amount_string(amount, decimals)
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": float(text),  # display field of the standard API; amounts stay ints
        "uiAmountString": text,
    }


def token_balances(keys: Sequence[Pubkey], read: Reader) -> list[dict[str, Any]]:
    """``preTokenBalances``/``postTokenBalances`` entries for the token accounts in ``keys``."""
    out: list[dict[str, Any]] = []
    decimals: dict[Pubkey, int | None] = {}
    for index, key in enumerate(keys):
        account = read(key)
        if account is None or account.owner not in TOKEN_PROGRAMS:
            continue
        data = bytes(account.data)
        if len(data) < ACCOUNT_LEN or data[_TOKEN_STATE_OFFSET] == 0:
            continue
        mint = Pubkey.from_bytes(data[0:32])
        if mint not in decimals:
            mint_account = read(mint)
            decimals[mint] = (
                None if mint_account is None else bytes(mint_account.data)[_MINT_DECIMALS_OFFSET]
            )
        places = decimals[mint]
        if places is None:
            continue
        out.append(
            {
                "accountIndex": index,
                "mint": str(mint),
                "owner": str(Pubkey.from_bytes(data[32:64])),
                "programId": str(account.owner),
                "uiTokenAmount": ui_token_amount(int.from_bytes(data[64:72], "little"), places),
            }
        )
    return out


def meta_json(
    meta: TransactionMetadata,
    keys: AccountKeys,
    pre_balances: list[int],
    post_balances: list[int],
    pre_tokens: list[dict[str, Any]],
    post_tokens: list[dict[str, Any]],
) -> dict[str, Any]:
    """The stored part of a transaction's RPC ``meta`` (status, fee and err come apart)."""
    inner = []
    for index, instructions in enumerate(meta.inner_instructions()):
        if not instructions:
            continue
        inner.append(
            {
                "index": index,
                "instructions": [
                    {
                        "programIdIndex": int(c.program_id_index),
                        "accounts": list(bytes(c.accounts)),
                        "data": base58.b58encode(bytes(c.data)).decode(),
                        "stackHeight": i.stack_height(),  # type: ignore[attr-defined]  # a method at runtime, missing in the stubs
                    }
                    for i in instructions
                    for c in (i.instruction(),)
                ],
            }
        )
    out: dict[str, Any] = {
        "preBalances": pre_balances,
        "postBalances": post_balances,
        "preTokenBalances": pre_tokens,
        "postTokenBalances": post_tokens,
        "innerInstructions": inner,
        "logMessages": list(meta.logs()),
        "loadedAddresses": {
            "writable": [str(k) for k in keys.loaded_writable],
            "readonly": [str(k) for k in keys.loaded_readonly],
        },
        "accountKeys": [str(k) for k in keys.keys],
        "writable": list(keys.writable),
    }
    returned = meta.return_data()  # type: ignore[attr-defined]  # missing in the stubs
    if returned is not None and bytes(returned.data):
        out["returnData"] = {
            "programId": str(returned.program_id),
            "data": [base64.b64encode(bytes(returned.data)).decode(), "base64"],
        }
    return out
