"""Account methods of the local node: getAccountInfo, getMultipleAccounts, getBalance,
getProgramAccounts, getTokenAccountBalance, getTokenAccountsByOwner/ByDelegate,
getTokenSupply, getTokenLargestAccounts, getMinimumBalanceForRentExemption.

``jsonParsed`` parses SPL token accounts and mints (the "spl-token" parser of a
validator) and falls back to base64 for anything else, as a validator does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import base58
import zstandard
from dgpu.contracts_client.chain import SvmLedger
from dgpu.contracts_client.chain.history import TOKEN_PROGRAMS, ui_token_amount
from dgpu.contracts_client.chain.layout import (
    is_mint,
    is_token_account,
    mint_decimals,
    token_amount,
)
from dgpu.contracts_client.chain.layout import token_mint as token_mint_of
from dgpu.contracts_client.rpc_server import params as p
from solders.account import Account
from solders.pubkey import Pubkey
from spl.token.constants import ACCOUNT_LEN, MINT_LEN

MAX_MULTIPLE_ACCOUNTS = 100
MAX_BASE58_ACCOUNT_DATA = 128
MAX_FILTERS = 4
MAX_MEMCMP_BYTES = 128
MAX_LARGEST_ACCOUNTS = 20
ACCOUNT_ENCODINGS = ("base58", "base64", "jsonParsed", "base64+zstd", "binary")

Reader = Callable[[Pubkey], Account | None]
Filter = Callable[[Account], bool]


def account_view(cfg: dict[str, Any]) -> tuple[str, tuple[int, int] | None]:
    encoding = p.choice(cfg, "encoding", ACCOUNT_ENCODINGS, "binary")
    slice_cfg = cfg.get("dataSlice")
    if slice_cfg is None:
        return encoding, None
    if not isinstance(slice_cfg, dict):
        raise p.invalid("dataSlice must be an object")
    offset = p.u64(slice_cfg.get("offset"), "dataSlice.offset")
    length = p.u64(slice_cfg.get("length"), "dataSlice.length")
    return encoding, (offset, length)


def _coption_key(data: bytes, at: int) -> str | None:
    if data[at : at + 4] == b"\x00\x00\x00\x00":
        return None
    return str(Pubkey.from_bytes(data[at + 4 : at + 36]))


def parse_token(account: Account, read: Reader | None) -> dict[str, Any] | None:
    """The ``spl-token`` jsonParsed form of a mint or token account, or None."""
    if account.owner not in TOKEN_PROGRAMS:
        return None
    data = bytes(account.data)
    if len(data) == MINT_LEN and data[45]:
        info: dict[str, Any] = {
            "decimals": data[44],
            "freezeAuthority": _coption_key(data, 46),
            "isInitialized": True,
            "mintAuthority": _coption_key(data, 0),
            "supply": str(int.from_bytes(data[36:44], "little")),
        }
        kind = "mint"
    elif len(data) >= ACCOUNT_LEN and data[108] and read is not None:
        mint_account = read(Pubkey.from_bytes(data[0:32]))
        if mint_account is None or len(mint_account.data) < MINT_LEN:
            return None
        decimals = bytes(mint_account.data)[44]
        is_native = data[109:113] != b"\x00\x00\x00\x00"
        info = {
            "isNative": is_native,
            "mint": str(Pubkey.from_bytes(data[0:32])),
            "owner": str(Pubkey.from_bytes(data[32:64])),
            "state": "frozen" if data[108] == 2 else "initialized",
            "tokenAmount": ui_token_amount(int.from_bytes(data[64:72], "little"), decimals),
        }
        delegate = _coption_key(data, 72)
        if delegate is not None:
            info["delegate"] = delegate
            delegated = int.from_bytes(data[121:129], "little")
            info["delegatedAmount"] = ui_token_amount(delegated, decimals)
        close_authority = _coption_key(data, 129)
        if close_authority is not None:
            info["closeAuthority"] = close_authority
        if is_native:
            reserve = int.from_bytes(data[113:121], "little")
            info["rentExemptReserve"] = ui_token_amount(reserve, 9)
        kind = "account"
    else:
        return None
    program = "spl-token" if account.owner == TOKEN_PROGRAMS[0] else "spl-token-2022"
    return {"program": program, "parsed": {"info": info, "type": kind}, "space": len(data)}


def encode_account(
    account: Account | None,
    encoding: str,
    data_slice: tuple[int, int] | None,
    read: Reader | None = None,
) -> dict[str, Any] | None:
    if account is None:
        return None
    data = bytes(account.data)
    encoded: Any = None
    if encoding == "jsonParsed":
        encoded = parse_token(account, read)
    if data_slice is not None:
        data = data[data_slice[0] : data_slice[0] + data_slice[1]]
    if encoded is None and encoding in ("base58", "binary"):
        if len(data) > MAX_BASE58_ACCOUNT_DATA:
            raise p.invalid(
                f"encoded binary (base 58) data should be less than {MAX_BASE58_ACCOUNT_DATA} "
                "bytes, please use Base64 encoding"
            )
        text = base58.b58encode(data).decode()
        encoded = text if encoding == "binary" else [text, "base58"]
    elif encoded is None and encoding == "base64+zstd":
        encoded = [base64.b64encode(zstandard.compress(data)).decode(), "base64+zstd"]
    elif encoded is None:  # base64, and jsonParsed falls back to base64 for data it cannot parse
        encoded = [base64.b64encode(data).decode(), "base64"]
    return {
        "lamports": account.lamports,
        "data": encoded,
        "owner": str(account.owner),
        "executable": account.executable,
        "rentEpoch": account.rent_epoch,
        "space": len(account.data),
    }


def _memcmp(spec: Any) -> Filter:
    if not isinstance(spec, dict):
        raise p.invalid("memcmp must be an object")
    offset = p.u64(spec.get("offset"), "memcmp.offset")
    raw = spec.get("bytes")
    encoding = spec.get("encoding", "base58")
    if not isinstance(raw, str) or encoding not in ("base58", "base64"):
        raise p.invalid("memcmp.bytes must be a base58 or base64 string")
    try:
        wanted = base58.b58decode(raw) if encoding == "base58" else base64.b64decode(raw)
    except ValueError:
        raise p.invalid(f"memcmp.bytes is not valid {encoding}") from None
    if len(wanted) > MAX_MEMCMP_BYTES:
        raise p.invalid(f"memcmp.bytes longer than {MAX_MEMCMP_BYTES} bytes")
    end = offset + len(wanted)
    return lambda a: bytes(a.data)[offset:end] == wanted


def parse_filters(raw: Any) -> list[Filter]:
    """getProgramAccounts/programSubscribe filters: memcmp, dataSize, tokenAccountState."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_FILTERS:
        raise p.invalid(f"filters must be an array of at most {MAX_FILTERS}")
    out: list[Filter] = []
    for spec in raw:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise p.invalid("each filter must be an object with one key")
        if "memcmp" in spec:
            out.append(_memcmp(spec["memcmp"]))
        elif "dataSize" in spec:
            size = p.u64(spec["dataSize"], "dataSize")
            out.append(lambda a, size=size: len(a.data) == size)  # type: ignore[misc]
        elif "tokenAccountState" in spec:
            out.append(lambda a: len(a.data) == ACCOUNT_LEN and bytes(a.data)[108] != 0)
        else:
            raise p.invalid(f"unknown filter {next(iter(spec))}")
    return out


def get_account_info(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    key = p.pubkey(params[0], "pubkey")
    encoding, data_slice = account_view(p.config(params, 1))
    account = ledger.get_account(key)
    return p.with_context(ledger, encode_account(account, encoding, data_slice, ledger.get_account))


def get_multiple_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    keys = p.pubkeys(params[0], "pubkeys", MAX_MULTIPLE_ACCOUNTS)
    encoding, data_slice = account_view(p.config(params, 1))
    accounts = ledger.get_accounts(keys)
    return p.with_context(
        ledger, [encode_account(a, encoding, data_slice, ledger.get_account) for a in accounts]
    )


def _keyed(
    ledger: SvmLedger,
    found: Sequence[tuple[Pubkey, Account]],
    encoding: str,
    data_slice: tuple[int, int] | None,
) -> list[dict[str, Any]]:
    return [
        {"pubkey": str(k), "account": encode_account(a, encoding, data_slice, ledger.get_account)}
        for k, a in found
    ]


def get_program_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    owner = p.pubkey(params[0], "program id")
    cfg = p.config(params, 1)
    encoding, data_slice = account_view(cfg)
    filters = parse_filters(cfg.get("filters"))
    found = [(k, a) for k, a in ledger.program_accounts(owner) if all(f(a) for f in filters)]
    value = _keyed(ledger, found, encoding, data_slice)
    return p.with_context(ledger, value) if p.flag(cfg, "withContext", False) else value


def _token_accounts(ledger: SvmLedger, params: list[Any], offset: int, what: str) -> Any:
    p.arity(params, 2, 3)
    key = p.pubkey(params[0], what)
    selector = params[1]
    if not isinstance(selector, dict) or len(selector) != 1:
        raise p.invalid('expected {"mint": <pubkey>} or {"programId": <pubkey>}')
    programs: tuple[Pubkey, ...] = TOKEN_PROGRAMS
    mint: Pubkey | None = None
    if "mint" in selector:
        mint = p.pubkey(selector["mint"], "mint")
        mint_account = ledger.get_account(mint)
        if mint_account is None or mint_account.owner not in TOKEN_PROGRAMS:
            raise p.invalid("Token mint could not be unpacked")
        programs = (mint_account.owner,)
    elif "programId" in selector:
        program = p.pubkey(selector["programId"], "programId")
        if program not in TOKEN_PROGRAMS:
            raise p.invalid("unrecognized Token program id")
        programs = (program,)
    else:
        raise p.invalid('expected {"mint": <pubkey>} or {"programId": <pubkey>}')
    encoding, data_slice = account_view(p.config(params, 2))
    found = []
    for program in programs:
        for k, a in ledger.program_accounts(program):
            data = bytes(a.data)
            if len(data) < ACCOUNT_LEN or data[108] == 0:
                continue
            if offset == 72 and data[72:76] == b"\x00\x00\x00\x00":
                continue  # no delegate
            field_at = offset + 4 if offset == 72 else offset
            if data[field_at : field_at + 32] != bytes(key):
                continue
            if mint is not None and data[0:32] != bytes(mint):
                continue
            found.append((k, a))
    return p.with_context(ledger, _keyed(ledger, found, encoding, data_slice))


def get_token_accounts_by_owner(ledger: SvmLedger, params: list[Any]) -> Any:
    return _token_accounts(ledger, params, 32, "owner")


def get_token_accounts_by_delegate(ledger: SvmLedger, params: list[Any]) -> Any:
    return _token_accounts(ledger, params, 72, "delegate")


def _mint(ledger: SvmLedger, value: Any) -> tuple[Pubkey, Account]:
    key = p.pubkey(value, "mint")
    account = ledger.get_account(key)
    if account is None or not is_mint(account):
        raise p.invalid("Token mint could not be unpacked")
    return key, account


def get_token_supply(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    _, account = _mint(ledger, params[0])
    data = bytes(account.data)
    supply = int.from_bytes(data[36:44], "little")
    return p.with_context(ledger, ui_token_amount(supply, mint_decimals(data)))


def get_token_largest_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    key, account = _mint(ledger, params[0])
    decimals = mint_decimals(account.data)
    holders = [
        (token_amount(bytes(a.data)), k)
        for k, a in ledger.program_accounts(account.owner)
        if is_token_account(a) and token_mint_of(bytes(a.data)) == key
    ]
    holders.sort(key=lambda h: (-h[0], bytes(h[1])))
    value = [
        {"address": str(k), **ui_token_amount(amount, decimals)}
        for amount, k in holders[:MAX_LARGEST_ACCOUNTS]
    ]
    return p.with_context(ledger, value)


def get_balance(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    return p.with_context(ledger, ledger.balance(p.pubkey(params[0], "pubkey")))


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
    return p.with_context(ledger, ui_token_amount(amount, decimals))


def get_minimum_balance_for_rent_exemption(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    size = p.u64(params[0], "size", maximum=10 * 1024 * 1024)
    return ledger.rent_exempt_minimum(size)
