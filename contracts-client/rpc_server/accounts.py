"""Account methods of the local node: getAccountInfo, getMultipleAccounts, getBalance,
getTokenAccountBalance, getMinimumBalanceForRentExemption."""

from __future__ import annotations

import base64
from typing import Any

import base58
from dgpu.contracts_client.chain import SvmLedger
from dgpu.contracts_client.chain.layout import (
    is_mint,
    is_token_account,
    mint_decimals,
    token_amount,
)
from dgpu.contracts_client.chain.layout import token_mint as token_mint_of
from dgpu.contracts_client.rpc_server import params as p
from solders.account import Account

MAX_MULTIPLE_ACCOUNTS = 100
MAX_BASE58_ACCOUNT_DATA = 128
ACCOUNT_ENCODINGS = ("base58", "base64", "jsonParsed", "base64+zstd", "binary")


def account_view(cfg: dict[str, Any]) -> tuple[str, tuple[int, int] | None]:
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
    encoding, data_slice = account_view(p.config(params, 1))
    return p.with_context(ledger, encode_account(ledger.get_account(key), encoding, data_slice))


def get_multiple_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    keys = p.pubkeys(params[0], "pubkeys", MAX_MULTIPLE_ACCOUNTS)
    encoding, data_slice = account_view(p.config(params, 1))
    accounts = ledger.get_accounts(keys)
    return p.with_context(ledger, [encode_account(a, encoding, data_slice) for a in accounts])


def get_balance(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    return p.with_context(ledger, ledger.balance(p.pubkey(params[0], "pubkey")))


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
    return p.with_context(
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
