"""Cluster methods that mean little on a single-node chain, answered the way
solana-test-validator answers them: one node (this one) leads every slot, no stake, no
votes, no inflation, every slot is a root. Clients call several of them in ordinary use
(web3.js ``getEpochSchedule``, ``getRecentPrioritizationFees`` for priority fees, wallets
``getSupply``), so a "Method not found" would break them for no reason."""

from __future__ import annotations

import hashlib
from typing import Any

from dgpu.contracts_client.chain import SvmLedger
from dgpu.contracts_client.rpc_server import params as p
from solders.pubkey import Pubkey

SLOTS_PER_EPOCH = 432_000
MAX_SLOT_LEADERS = 5000
MAX_PRIORITIZATION_ADDRESSES = 128


def identity(ledger: SvmLedger) -> Pubkey:
    """This node's identity: stable for a chain (derived from its genesis hash)."""
    return Pubkey(hashlib.sha256(b"dgpu node identity" + bytes(ledger.genesis_hash)).digest())


def get_identity(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return {"identity": str(identity(ledger))}


def get_cluster_nodes(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return [
        {
            "pubkey": str(identity(ledger)),
            "gossip": None,
            "tpu": None,
            "rpc": None,
            "version": p.SOLANA_CORE_VERSION,
            "featureSet": 0,
            "shredVersion": 0,
        }
    ]


def get_epoch_schedule(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return {
        "slotsPerEpoch": SLOTS_PER_EPOCH,
        "leaderScheduleSlotOffset": SLOTS_PER_EPOCH,
        "warmup": False,
        "firstNormalEpoch": 0,
        "firstNormalSlot": 0,
    }


def get_slot_leader(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    return str(identity(ledger))


def get_slot_leaders(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 2, 2)
    p.u64(params[0], "start_slot")
    limit = p.u64(params[1], "limit", maximum=MAX_SLOT_LEADERS)
    return [str(identity(ledger))] * limit


def get_leader_schedule(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 2)
    # every slot of the epoch is this node's; the list is cut to the latest slots
    index = ledger.slot % SLOTS_PER_EPOCH
    return {str(identity(ledger)): list(range(max(0, index - MAX_SLOT_LEADERS + 1), index + 1))}


def get_vote_accounts(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    return {"current": [], "delinquent": []}


def get_supply(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    total = ledger.total_lamports()
    return p.with_context(
        ledger,
        {"total": total, "circulating": total, "nonCirculating": 0, "nonCirculatingAccounts": []},
    )


def get_inflation_rate(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    epoch = ledger.slot // SLOTS_PER_EPOCH
    return {"total": 0.0, "validator": 0.0, "foundation": 0.0, "epoch": epoch}


def get_inflation_governor(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    return {
        "initial": 0.0,
        "terminal": 0.0,
        "taper": 0.0,
        "foundation": 0.0,
        "foundationTerm": 0.0,
    }


def get_inflation_reward(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 2)
    addresses = p.pubkeys(params[0], "addresses", MAX_PRIORITIZATION_ADDRESSES)
    return [None for _ in addresses]


def get_stake_minimum_delegation(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    return p.with_context(ledger, 1_000_000_000)


def get_recent_prioritization_fees(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    if params:
        p.pubkeys(params[0], "addresses", MAX_PRIORITIZATION_ADDRESSES)
    return [{"slot": ledger.slot, "prioritizationFee": 0}]


def get_recent_performance_samples(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    if params:
        p.u64(params[0], "limit", maximum=720)
    return []


def get_slot_root(ledger: SvmLedger, params: list[Any]) -> Any:
    """getMaxRetransmitSlot, getMaxShredInsertSlot, getHighestSnapshotSlot's full."""
    p.arity(params, 0, 0)
    return ledger.slot


def minimum_ledger_slot(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    return ledger.first_available_block()


def get_highest_snapshot_slot(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 0)
    raise p.RpcFault(p.NO_SNAPSHOT, "No snapshot")


def get_block_commitment(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 1, 1)
    p.u64(params[0], "slot")
    return {"commitment": None, "totalStake": 0}


def get_block_production(ledger: SvmLedger, params: list[Any]) -> Any:
    p.arity(params, 0, 1)
    p.config(params, 0)
    first = ledger.first_available_block()
    last = ledger.slot
    produced = last - first + 1
    return p.with_context(
        ledger,
        {
            "byIdentity": {str(identity(ledger)): [produced, produced]},
            "range": {"firstSlot": first, "lastSlot": last},
        },
    )


METHODS = {
    "getBlockCommitment": get_block_commitment,
    "getBlockProduction": get_block_production,
    "getClusterNodes": get_cluster_nodes,
    "getEpochSchedule": get_epoch_schedule,
    "getHighestSnapshotSlot": get_highest_snapshot_slot,
    "getIdentity": get_identity,
    "getInflationGovernor": get_inflation_governor,
    "getInflationRate": get_inflation_rate,
    "getInflationReward": get_inflation_reward,
    "getLeaderSchedule": get_leader_schedule,
    "getMaxRetransmitSlot": get_slot_root,
    "getMaxShredInsertSlot": get_slot_root,
    "getRecentPerformanceSamples": get_recent_performance_samples,
    "getRecentPrioritizationFees": get_recent_prioritization_fees,
    "getSlotLeader": get_slot_leader,
    "getSlotLeaders": get_slot_leaders,
    "getStakeMinimumDelegation": get_stake_minimum_delegation,
    "getSupply": get_supply,
    "getVoteAccounts": get_vote_accounts,
    "minimumLedgerSlot": minimum_ledger_slot,
}
