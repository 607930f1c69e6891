"""``LiteSVMChain``: the :class:`Chain` interface over an in-process :class:`SvmLedger`.

Used by tests, simulations and the local devnet. Every call is synchronous underneath
and short, so the async methods only add a checkpoint (letting other tasks run) and
work under trio and asyncio alike. Transactions are confirmed when ``send_transaction``
returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio.lowlevel
from dgpu.contracts_client.chain.errors import AccountNotFound, ChainError, TransactionFailed
from dgpu.contracts_client.chain.interface import AnyTransaction, Simulation
from dgpu.contracts_client.chain.layout import is_token_account, token_amount
from dgpu.contracts_client.chain.ledger import Landed, SvmLedger
from solders.account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus


def escrow_program() -> tuple[Pubkey, bytes]:
    """The escrow program id and ELF bytes from :mod:`dgpu.contracts`; ChainError if absent."""
    try:
        escrow = importlib.import_module("dgpu.contracts")
        program_id = escrow.PROGRAM_ID
        so_path = Path(escrow.so_path())
    except (ImportError, AttributeError) as exc:
        raise ChainError(f"the escrow program is not available in dgpu.contracts: {exc}") from None
    if not isinstance(program_id, Pubkey):
        program_id = Pubkey.from_string(str(program_id))
    try:
        return program_id, so_path.read_bytes()
    except OSError as exc:
        raise ChainError(f"cannot read the escrow program {so_path}: {exc.strerror}") from None


def status_of(landed: Landed | None) -> TransactionStatus | None:
    """The JSON-RPC view of a recorded transaction (always finalized here)."""
    if landed is None:
        return None
    return TransactionStatus(
        slot=landed.slot,
        confirmations=None,
        status=landed.err,
        err=landed.err,
        confirmation_status=TransactionConfirmationStatus.Finalized,
    )


class LiteSVMChain:
    """In-process chain; loads the escrow program unless ``escrow=False``.

    Programs are installed as upgradeable (loader v3) programs whose upgrade authority is
    ``upgrade_authority`` (a fresh key unless given, kept in :attr:`upgrade_authority`):
    the escrow's ``initialize`` must be signed by it. With ``ledger`` given, the ledger's
    programs are what they are and :attr:`upgrade_authority` is whatever was passed."""

    def __init__(
        self,
        *,
        escrow: bool = True,
        programs: Mapping[Pubkey, bytes | Path] | None = None,
        upgrade_authority: Keypair | None = None,
        time_source: Callable[[], int] | None = None,
        start_time: int | None = None,
        preflight: bool = True,
        ledger: SvmLedger | None = None,
    ) -> None:
        self.upgrade_authority: Keypair | None = upgrade_authority
        if ledger is None:
            self.upgrade_authority = authority = upgrade_authority or Keypair()
            elves: dict[Pubkey, bytes] = {}
            if escrow:
                program_id, elf = escrow_program()
                elves[program_id] = elf
            for program_id, source in (programs or {}).items():
                elves[program_id] = source.read_bytes() if isinstance(source, Path) else source
            ledger = SvmLedger(
                programs=elves,
                upgrade_authority=authority.pubkey(),
                time_source=time_source,
                start_time=start_time,
            )
        self.ledger = ledger
        self._preflight = preflight

    # -- test helpers (synchronous) ---------------------------------------------------

    def set_unix_time(self, ts: int) -> None:
        self.ledger.set_unix_time(ts)

    def warp(self, seconds: int) -> int:
        return self.ledger.warp(seconds)

    # -- Chain ------------------------------------------------------------------------

    async def latest_blockhash(self) -> Hash:
        await anyio.lowlevel.checkpoint()
        return self.ledger.latest_blockhash()[0]

    async def genesis_hash(self) -> Hash:
        await anyio.lowlevel.checkpoint()
        return self.ledger.genesis_hash

    async def get_slot(self) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.slot

    async def send_transaction(self, tx: AnyTransaction) -> Signature:
        await anyio.lowlevel.checkpoint()
        outcome = self.ledger.submit(tx, preflight=self._preflight)
        if isinstance(outcome, Simulation):
            assert outcome.err is not None
            raise TransactionFailed(outcome.err, outcome.logs, signature=tx.signatures[0])
        if outcome.err is not None:
            raise TransactionFailed(
                outcome.err, outcome.logs, signature=outcome.signature, landed=True
            )
        return outcome.signature

    async def simulate_transaction(self, tx: AnyTransaction) -> Simulation:
        await anyio.lowlevel.checkpoint()
        return self.ledger.simulate(tx)

    async def get_account(self, pubkey: Pubkey) -> Account | None:
        await anyio.lowlevel.checkpoint()
        return self.ledger.get_account(pubkey)

    async def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[Account | None]:
        await anyio.lowlevel.checkpoint()
        return self.ledger.get_accounts(pubkeys)

    async def get_balance(self, pubkey: Pubkey) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.balance(pubkey)

    async def get_token_balance(self, token_account: Pubkey) -> int:
        await anyio.lowlevel.checkpoint()
        account = self.ledger.get_account(token_account)
        if account is None or not is_token_account(account):
            raise AccountNotFound(token_account, "token account")
        return token_amount(account.data)

    async def minimum_balance_for_rent_exemption(self, size: int) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.rent_exempt_minimum(size)

    async def unix_time(self) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.unix_time()

    async def signature_statuses(
        self, signatures: Sequence[Signature]
    ) -> list[TransactionStatus | None]:
        await anyio.lowlevel.checkpoint()
        return [status_of(landed) for landed in self.ledger.statuses(signatures)]

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        await anyio.lowlevel.checkpoint()
        return self.ledger.airdrop(pubkey, lamports).signature

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
