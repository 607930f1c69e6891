"""One suite for every ``Chain``: LiteSVMChain in process and RpcChain against a real
``dgpu chain serve`` child, each driven from trio and from asyncio."""

from __future__ import annotations

import struct
import time

import anyio
import pytest
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import (
    AccountNotFound,
    Chain,
    TransactionFailed,
    send_instructions,
)
from dgpu.contracts_client.chain.layout import mint_decimals
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_status import TransactionErrorFieldless
from spl.token.constants import ACCOUNT_LEN, TOKEN_PROGRAM_ID

from tests.contracts_client.support import COMBO_IDS, COMBOS, SOL, Scenario, funded, run_scenario

FEE = 5_000  # lamports per signature on the local chain


def _transfer_tx(sender: Keypair, to: Pubkey, lamports: int, blockhash: Hash) -> Transaction:
    ix = transfer(TransferParams(from_pubkey=sender.pubkey(), to_pubkey=to, lamports=lamports))
    return Transaction.new_signed_with_payer([ix], sender.pubkey(), [sender], blockhash)


async def transfer_sol(chain: Chain) -> None:
    alice = await funded(chain, 10 * SOL)
    bob = Keypair()
    assert await chain.get_balance(bob.pubkey()) == 0
    # twice the very same transfer: two transactions, as on a cluster
    first = await localnet.transfer_sol(chain, alice, bob.pubkey(), SOL)
    second = await localnet.transfer_sol(chain, alice, bob.pubkey(), SOL)
    assert first != second
    assert await chain.get_balance(bob.pubkey()) == 2 * SOL
    assert await chain.get_balance(alice.pubkey()) == 8 * SOL - 2 * FEE
    statuses = await chain.signature_statuses([first, second, Signature.new_unique()])
    assert statuses[0] is not None and statuses[0].err is None
    assert statuses[1] is not None and statuses[1].slot > statuses[0].slot
    assert statuses[2] is None


async def versioned_transaction(chain: Chain) -> None:
    alice = await funded(chain)
    bob = Keypair()
    ix = transfer(TransferParams(from_pubkey=alice.pubkey(), to_pubkey=bob.pubkey(), lamports=7))
    msg = Message.new_with_blockhash([ix], alice.pubkey(), await chain.latest_blockhash())
    sig = await chain.send_transaction(VersionedTransaction(msg, [alice]))
    assert await chain.get_balance(bob.pubkey()) == 7
    (status,) = await chain.signature_statuses([sig])
    assert status is not None and status.err is None


async def mint_and_move_tokens(chain: Chain) -> None:
    payer = await funded(chain)
    mint = await localnet.create_mint(chain, payer)
    account = await chain.get_account(mint.address)
    assert account is not None and account.owner == TOKEN_PROGRAM_ID
    assert mint_decimals(account.data) == localnet.DGPU_DECIMALS == 9
    alice, bob = Keypair(), Keypair()
    alice_ata = await localnet.fund_wallet(
        chain, alice.pubkey(), lamports=SOL, mint=mint, tokens=5 * 10**9
    )
    assert alice_ata == localnet.associated_token_address(alice.pubkey(), mint.address)
    bob_ata = await localnet.create_associated_token_account(
        chain, payer, bob.pubkey(), mint.address
    )
    # creating it again is harmless (idempotent instruction)
    assert bob_ata == await localnet.create_associated_token_account(
        chain, payer, bob.pubkey(), mint.address
    )
    await localnet.transfer_tokens(chain, alice, alice_ata, bob_ata, 1_500_000_001)
    assert await chain.get_token_balance(alice_ata) == 5 * 10**9 - 1_500_000_001
    assert await chain.get_token_balance(bob_ata) == 1_500_000_001
    await localnet.mint_to(chain, mint, bob_ata, 9)
    assert await chain.get_token_balance(bob_ata) == 1_500_000_010


async def failed_transaction_raises_with_logs(chain: Chain) -> None:
    payer = await funded(chain)
    mint = await localnet.create_mint(chain, payer)
    rich, poor = Keypair(), Keypair()
    rich_ata = await localnet.fund_wallet(chain, rich.pubkey(), mint=mint, tokens=10)
    poor_ata = await localnet.fund_wallet(chain, poor.pubkey(), mint=mint, tokens=0)
    assert rich_ata is not None and poor_ata is not None
    before = await chain.get_balance(payer.pubkey())
    with pytest.raises(TransactionFailed) as caught:
        await localnet.transfer_tokens(chain, poor, poor_ata, rich_ata, 1, payer=payer)
    failure = caught.value
    assert failure.custom_code == 1  # spl-token: insufficient funds
    assert failure.instruction_index == 0
    assert any("insufficient funds" in line for line in failure.logs)
    assert not failure.landed
    assert "insufficient funds" in str(failure)
    # refused in preflight: nothing moved, no fee paid
    assert await chain.get_token_balance(rich_ata) == 10
    assert await chain.get_token_balance(poor_ata) == 0
    assert await chain.get_balance(payer.pubkey()) == before


async def overdraft_of_sol_fails(chain: Chain) -> None:
    alice = await funded(chain, SOL)
    with pytest.raises(TransactionFailed) as caught:
        await localnet.transfer_sol(chain, alice, Keypair().pubkey(), 2 * SOL)
    assert caught.value.custom_code == 1  # system program: insufficient lamports
    assert any("insufficient lamports" in line for line in caught.value.logs)
    assert await chain.get_balance(alice.pubkey()) == SOL


async def stale_blockhash_is_refused(chain: Chain) -> None:
    alice = await funded(chain)
    tx = _transfer_tx(alice, Keypair().pubkey(), 1, Hash.new_unique())
    with pytest.raises(TransactionFailed) as caught:
        await chain.send_transaction(tx)
    assert caught.value.err == TransactionErrorFieldless.BlockhashNotFound


async def bad_signature_is_refused(chain: Chain) -> None:
    alice = await funded(chain)
    good = _transfer_tx(alice, Keypair().pubkey(), 1, await chain.latest_blockhash())
    forged = Transaction.populate(good.message, [Signature.new_unique()])
    with pytest.raises(TransactionFailed) as caught:
        await chain.send_transaction(forged)
    assert caught.value.err == TransactionErrorFieldless.SignatureFailure


async def duplicate_is_refused(chain: Chain) -> None:
    alice = await funded(chain)
    bob = Keypair()
    tx = _transfer_tx(alice, bob.pubkey(), 100, await chain.latest_blockhash())
    await chain.send_transaction(tx)
    with pytest.raises(TransactionFailed) as caught:
        await chain.send_transaction(tx)
    assert caught.value.err == TransactionErrorFieldless.AlreadyProcessed
    assert await chain.get_balance(bob.pubkey()) == 100


async def simulate_changes_nothing(chain: Chain) -> None:
    alice = await funded(chain)
    bob = Keypair()
    ok = await chain.simulate_transaction(
        _transfer_tx(alice, bob.pubkey(), SOL, await chain.latest_blockhash())
    )
    assert ok.ok and ok.units_consumed > 0
    assert any("success" in line for line in ok.logs)
    failing = await chain.simulate_transaction(
        _transfer_tx(alice, bob.pubkey(), 100 * SOL, await chain.latest_blockhash())
    )
    assert not failing.ok and failing.err is not None
    assert await chain.get_balance(bob.pubkey()) == 0


async def accounts_and_rent(chain: Chain) -> None:
    alice = await funded(chain, 3 * SOL)
    missing = Keypair().pubkey()
    assert await chain.get_account(missing) is None
    account = await chain.get_account(alice.pubkey())
    assert account is not None and account.lamports == 3 * SOL
    keys = [alice.pubkey() if i % 50 == 0 else Keypair().pubkey() for i in range(150)]
    accounts = await chain.get_multiple_accounts(keys)
    assert len(accounts) == 150
    assert [i for i, a in enumerate(accounts) if a is not None] == [0, 50, 100]
    assert await chain.minimum_balance_for_rent_exemption(ACCOUNT_LEN) == 2_039_280
    assert await chain.minimum_balance_for_rent_exemption(0) == 890_880


async def drained_account_disappears(chain: Chain) -> None:
    """An account left with no lamports is gone, as a cluster purges it."""
    alice = await funded(chain, SOL)
    await localnet.transfer_sol(chain, alice, Keypair().pubkey(), SOL - FEE)
    assert await chain.get_account(alice.pubkey()) is None
    assert await chain.get_multiple_accounts([alice.pubkey()]) == [None]
    assert await chain.get_balance(alice.pubkey()) == 0


async def token_balance_of_non_token_account(chain: Chain) -> None:
    alice = await funded(chain)
    with pytest.raises(AccountNotFound):
        await chain.get_token_balance(alice.pubkey())
    with pytest.raises(AccountNotFound):
        await chain.get_token_balance(Keypair().pubkey())


async def clock_is_readable(chain: Chain) -> None:
    first = await chain.unix_time()
    await funded(chain)
    assert await chain.unix_time() >= first


async def send_instructions_with_extra_signer(chain: Chain) -> None:
    payer = await funded(chain)
    owner = await funded(chain, SOL)
    dest = Keypair().pubkey()
    ix = transfer(TransferParams(from_pubkey=owner.pubkey(), to_pubkey=dest, lamports=42))
    await send_instructions(chain, [ix], payer, [owner, payer])
    assert await chain.get_balance(dest) == 42
    assert await chain.get_balance(owner.pubkey()) == SOL - 42  # the payer paid the fee


LOOKUP_TABLE_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")


async def lookup_table_transaction(chain: Chain) -> None:
    """Create and extend an address lookup table, then pay through a v0 message using it
    (the chain keeps SlotHashes, so a recent slot is accepted)."""
    payer = await funded(chain)
    slot = await chain.get_slot()
    table, bump = Pubkey.find_program_address(
        [bytes(payer.pubkey()), slot.to_bytes(8, "little")], LOOKUP_TABLE_PROGRAM
    )
    owner_metas = [
        AccountMeta(payer.pubkey(), is_signer=True, is_writable=False),
        AccountMeta(payer.pubkey(), is_signer=True, is_writable=True),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
    ]
    create = Instruction(
        LOOKUP_TABLE_PROGRAM,
        struct.pack("<IQB", 0, slot, bump),
        [AccountMeta(table, is_signer=False, is_writable=True), *owner_metas],
    )
    await send_instructions(chain, [create], payer)
    bob, carol = Keypair().pubkey(), Keypair().pubkey()
    extend = Instruction(
        LOOKUP_TABLE_PROGRAM,
        struct.pack("<IQ", 2, 2) + bytes(bob) + bytes(carol),
        [AccountMeta(table, is_signer=False, is_writable=True), *owner_metas],
    )
    await send_instructions(chain, [extend], payer)
    pays = [
        transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=to, lamports=n))
        for to, n in ((bob, 3_000_000), (carol, 4_000_000))
    ]
    lookup = AddressLookupTableAccount(table, [bob, carol])
    msg = MessageV0.try_compile(payer.pubkey(), pays, [lookup], await chain.latest_blockhash())
    assert len(msg.address_table_lookups) == 1
    await chain.send_transaction(VersionedTransaction(msg, [payer]))
    assert await chain.get_balance(bob) == 3_000_000
    assert await chain.get_balance(carol) == 4_000_000


async def concurrent_senders(chain: Chain) -> None:
    """Many tasks sending at once (one lock serializes the ledger underneath)."""
    sink = Keypair().pubkey()
    senders = [await funded(chain, SOL) for _ in range(8)]
    async with anyio.create_task_group() as tg:
        for sender in senders:
            tg.start_soon(localnet.transfer_sol, chain, sender, sink, 1_000)
    assert await chain.get_balance(sink) == 8_000


SCENARIOS: list[Scenario] = [
    lookup_table_transaction,
    concurrent_senders,
    transfer_sol,
    versioned_transaction,
    mint_and_move_tokens,
    failed_transaction_raises_with_logs,
    overdraft_of_sol_fails,
    stale_blockhash_is_refused,
    bad_signature_is_refused,
    duplicate_is_refused,
    simulate_changes_nothing,
    accounts_and_rent,
    token_balance_of_non_token_account,
    drained_account_disappears,
    clock_is_readable,
    send_instructions_with_extra_signer,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
@pytest.mark.parametrize(("impl", "loop"), COMBOS, ids=COMBO_IDS)
def test_chain(impl: str, loop: str, scenario: Scenario, request: pytest.FixtureRequest) -> None:
    node = request.getfixturevalue("node") if impl == "rpc" else None
    run_scenario(impl, loop, scenario, node)


def test_rpc_clock_follows_wall_time(request: pytest.FixtureRequest) -> None:
    node = request.getfixturevalue("node")
    seen: list[int] = []

    async def read(chain: Chain) -> None:
        seen.append(await chain.unix_time())

    before = int(time.time())
    run_scenario("rpc", "trio", read, node)
    assert before <= seen[0] <= int(time.time()) + 1
