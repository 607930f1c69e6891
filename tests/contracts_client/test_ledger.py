"""SvmLedger and LiteSVMChain specifics: blockhash expiry, landed failures, the clock,
program loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from dgpu.contracts import PROGRAM_ID, so_path
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import (
    ChainError,
    Landed,
    LiteSVMChain,
    Simulation,
    SvmLedger,
    TransactionFailed,
    escrow_program,
)
from dgpu.contracts_client.chain.ledger import SLOT_HASHES_SYSVAR
from dgpu.contracts_client.lookup_table import create_lookup_table
from solders.hash import Hash
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from solders.transaction_status import TransactionErrorFieldless

from tests.contracts_client.support import SOL, funded


def _transfer(ledger: SvmLedger, payer: Keypair, lamports: int, blockhash: Hash) -> Transaction:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports)
    )
    return Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)


def test_blockhash_expires_after_the_window() -> None:
    ledger = SvmLedger(blockhash_window=3, history=10)
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), SOL)
    old, _ = ledger.latest_blockhash()
    slot = ledger.slot
    for _ in range(2):
        outcome = ledger.submit(_transfer(ledger, payer, 1, ledger.latest_blockhash()[0]))
        assert not isinstance(outcome, Simulation) and outcome.err is None
    assert ledger.slot == slot + 2
    assert ledger.is_blockhash_valid(old)
    assert ledger.submit(_transfer(ledger, payer, 2, old)).err is None  # still in the window
    stale = ledger.submit(_transfer(ledger, payer, 3, old))
    assert isinstance(stale, Simulation)
    assert stale.err == TransactionErrorFieldless.BlockhashNotFound


def test_window_must_fit_history() -> None:
    with pytest.raises(ValueError, match="blockhash_window"):
        SvmLedger(blockhash_window=10, history=5)


async def test_failure_without_preflight_lands_and_pays_the_fee() -> None:
    chain = LiteSVMChain(escrow=False, preflight=False)
    payer = await funded(chain, SOL)
    with pytest.raises(TransactionFailed) as caught:
        await localnet.transfer_sol(chain, payer, Keypair().pubkey(), 2 * SOL)
    failure = caught.value
    assert failure.landed and failure.signature is not None
    (status,) = await chain.signature_statuses([failure.signature])
    assert status is not None and status.err == failure.err
    assert await chain.get_balance(payer.pubkey()) == SOL - 5_000


async def test_clock_follows_the_time_source_forward_only() -> None:
    now = [1_700_000_000]
    chain = LiteSVMChain(escrow=False, time_source=lambda: now[0])
    assert await chain.unix_time() == 1_700_000_000
    now[0] += 90
    assert await chain.unix_time() == 1_700_000_090
    assert chain.warp(10) == 1_700_000_100
    now[0] += 5  # the source is behind the warped clock: the clock does not go back
    assert await chain.unix_time() == 1_700_000_100
    chain.set_unix_time(5)
    assert await chain.unix_time() == 1_700_000_095
    with pytest.raises(ValueError, match="forward"):
        chain.warp(-1)


async def test_manual_clock() -> None:
    chain = LiteSVMChain(escrow=False, start_time=1_000)
    assert await chain.unix_time() == 1_000
    chain.set_unix_time(50)
    assert await chain.unix_time() == 50
    assert chain.warp(25) == 75


async def test_escrow_program_is_loaded() -> None:
    program_id, elf = escrow_program()
    assert program_id == PROGRAM_ID and elf == so_path().read_bytes()
    chain = LiteSVMChain()
    account = await chain.get_account(PROGRAM_ID)
    assert account is not None and account.executable


def test_unloadable_program_is_a_chain_error() -> None:
    with pytest.raises(ChainError, match="could not be loaded"):
        SvmLedger(programs={Keypair().pubkey(): b"\x7fELF not really"})


def test_airdrop_out_of_range() -> None:
    ledger = SvmLedger()
    with pytest.raises(ChainError, match="out of range"):
        ledger.airdrop(Keypair().pubkey(), 0)


def test_history_is_bounded() -> None:
    ledger = SvmLedger(blockhash_window=2, history=3)
    payer = Keypair()
    first = ledger.airdrop(payer.pubkey(), SOL).signature
    for _ in range(3):
        ledger.submit(_transfer(ledger, payer, 1, ledger.latest_blockhash()[0]))
    assert ledger.statuses([first]) == [None]


def _slot_hashes(ledger: SvmLedger) -> list[tuple[int, Hash]]:
    account = ledger.get_account(SLOT_HASHES_SYSVAR)
    assert account is not None
    data = bytes(account.data)
    count = int.from_bytes(data[:8], "little")
    entries = [data[8 + 40 * i : 48 + 40 * i] for i in range(count)]
    return [(int.from_bytes(e[:8], "little"), Hash(e[8:])) for e in entries]


def test_slot_hashes_are_current_whenever_they_can_be_read(tmp_path: Path) -> None:
    """SlotHashes is written to LiteSVM lazily (each write costs O(accounts)); a read,
    a lookup-table instruction and a restart still see every slot, newest first."""
    ledger = SvmLedger(path=tmp_path / "ledger.sqlite")
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), SOL)
    for i in range(5):
        ix = transfer(
            TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=i + 1)
        )
        blockhash = ledger.latest_blockhash()[0]
        tx = Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)
        landed = ledger.submit(tx)
        assert isinstance(landed, Landed) and landed.err is None
        seen = _slot_hashes(ledger)
        assert seen[0] == (ledger.slot, blockhash_of(ledger, ledger.slot))
        assert [s for s, _ in seen] == list(range(ledger.slot, 0, -1))
    # one more slot nobody read, then a lookup table made at it: the program finds it
    ledger.airdrop(Keypair().pubkey(), SOL)
    recent = ledger.slot
    create, _table = create_lookup_table(payer.pubkey(), payer.pubkey(), recent)
    tx = Transaction.new_signed_with_payer(
        [create], payer.pubkey(), [payer], ledger.latest_blockhash()[0]
    )
    landed = ledger.submit(tx)
    assert isinstance(landed, Landed) and landed.err is None
    before = _slot_hashes(ledger)
    ledger.close()
    reopened = SvmLedger(path=tmp_path / "ledger.sqlite")
    assert _slot_hashes(reopened) == before


def blockhash_of(ledger: SvmLedger, slot: int) -> Hash:
    found = ledger.block(slot)
    assert found is not None
    return Hash.from_string(found[0].blockhash)
