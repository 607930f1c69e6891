"""The JSON-RPC methods of the local node, each ``(ledger, params) -> JSON result``.

Results follow the Solana JSON-RPC API so that solana-py, solders and web3.js parse them.
Account and transaction methods live in their own modules; this one holds the block and
node methods and the method table. Extensions of this local node are prefixed ``dgpu_``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dgpu.contracts_client.chain import SvmLedger
from dgpu.contracts_client.rpc_server import accounts, cluster, history, transactions
from dgpu.contracts_client.rpc_server import params as p

MAX_WARP_SECONDS = 100 * 365 * 24 * 3600
FEATURE_SET = 0
SLOTS_PER_EPOCH = 432_000

Method = Callable[[SvmLedger, list[Any]], Any]


def get_latest_blockhash(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    hash_, last_valid = ledger.latest_blockhash()
    return p.with_context(ledger, {"blockhash": str(hash_), "lastValidBlockHeight": last_valid})


def is_blockhash_valid(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    p.config(params, 1)
    return p.with_context(ledger, ledger.is_blockhash_valid(p.blockhash(params[0], "blockhash")))


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


def get_epoch_info(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    slot = ledger.slot
    return {
        "absoluteSlot": slot,
        "blockHeight": slot,
        "epoch": slot // SLOTS_PER_EPOCH,
        "slotIndex": slot % SLOTS_PER_EPOCH,
        "slotsInEpoch": SLOTS_PER_EPOCH,
        "transactionCount": ledger.transaction_count(),
    }


def get_version(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return {"solana-core": p.SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}


def get_health(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return "ok"


def get_genesis_hash(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return str(ledger.genesis_hash)


def dgpu_warp(ledger: SvmLedger, params: list[Any]) -> Any:
    """Local-node extension: move the chain clock forward by ``params[0]`` seconds."""
    p.arity(params, 1, 1)
    seconds = p.u64(params[0], "seconds", maximum=MAX_WARP_SECONDS)
    return {"unixTime": ledger.warp(seconds)}


METHODS: dict[str, Method] = {
    "getAccountInfo": accounts.get_account_info,
    "getBalance": accounts.get_balance,
    "getBlockHeight": get_slot,
    "getBlock": history.get_block,
    "getBlocks": history.get_blocks,
    "getBlocksWithLimit": history.get_blocks_with_limit,
    "getBlockTime": get_block_time,
    "getEpochInfo": get_epoch_info,
    "getFeeForMessage": transactions.get_fee_for_message,
    "getFirstAvailableBlock": history.get_first_available_block,
    "getGenesisHash": get_genesis_hash,
    "getHealth": get_health,
    "getLatestBlockhash": get_latest_blockhash,
    "getMinimumBalanceForRentExemption": accounts.get_minimum_balance_for_rent_exemption,
    "getMultipleAccounts": accounts.get_multiple_accounts,
    "getProgramAccounts": accounts.get_program_accounts,
    "getSignatureStatuses": transactions.get_signature_statuses,
    "getSignaturesForAddress": history.get_signatures_for_address,
    "getSlot": get_slot,
    "getTokenAccountBalance": accounts.get_token_account_balance,
    "getTokenAccountsByDelegate": accounts.get_token_accounts_by_delegate,
    "getTokenAccountsByOwner": accounts.get_token_accounts_by_owner,
    "getTokenLargestAccounts": accounts.get_token_largest_accounts,
    "getTokenSupply": accounts.get_token_supply,
    "getTransaction": history.get_transaction,
    "getTransactionCount": history.get_transaction_count,
    "getVersion": get_version,
    "isBlockhashValid": is_blockhash_valid,
    "requestAirdrop": transactions.request_airdrop,
    "sendTransaction": transactions.send_transaction,
    "simulateTransaction": transactions.simulate_transaction,
    "dgpu_warp": dgpu_warp,
    **cluster.METHODS,
}
