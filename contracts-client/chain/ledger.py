"""``SvmLedger``: a LiteSVM instance made to behave like a small cluster.

The synchronous core under :class:`~dgpu.contracts_client.chain.svm.LiteSVMChain` and the local
JSON-RPC server. It adds to LiteSVM what a client of a real cluster relies on:

- every landed transaction is a new slot with a new blockhash, and a transaction is
  accepted while its blockhash is among the last ``blockhash_window`` ones (so two equal
  transfers sent one after the other are two transactions, as on a cluster);
- a signature history (slot, error, logs, wire bytes) for ``getSignatureStatuses`` and
  ``getTransaction``; a duplicate signature is refused as ``AlreadyProcessed``;
- preflight: a transaction that fails simulation is refused without landing;
- SlotHashes kept up to date, so address lookup tables can be created and used;
- a clock that follows an injected ``time_source`` (never backwards) and can be set or
  warped by tests.

All access to the LiteSVM instance goes through one lock, so a ledger may be shared by
threads; no method blocks for long (a transaction runs in well under a millisecond to a
few milliseconds). Leaving the lock also resets the x87 FPU, which LiteSVM can leave
"stack full" (see :mod:`dgpu.contracts_client.chain.fpu`): no float result computed after a
ledger call in the same thread is poisoned by it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dgpu.contracts_client.chain.errors import ChainError, error_json
from dgpu.contracts_client.chain.fpu import reset_x87
from dgpu.contracts_client.chain.interface import AnyTransaction, Simulation
from dgpu.contracts_client.chain.upgradeable import install_upgradeable_program
from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import (
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorType,
)

DEFAULT_BLOCKHASH_WINDOW = 300
DEFAULT_HISTORY = 100_000
LAMPORTS_PER_SIGNATURE = 5_000
AIRDROP_POOL_LAMPORTS = 10**18
MAX_ACCOUNT_DATA_LEN = 10 * 1024 * 1024
SLOT_HASHES_KEPT = 512  # what the SlotHashes sysvar holds on a cluster


@dataclass(frozen=True)
class Landed:
    """A transaction recorded on the ledger (successful or failed during execution)."""

    signature: Signature
    slot: int
    block_time: int
    err: TransactionErrorType | None
    logs: tuple[str, ...]
    units_consumed: int
    fee: int
    wire: bytes
    legacy: bool


def _executed(err: TransactionErrorType) -> bool:
    """Whether a failed transaction was executed (and so paid its fee) rather than refused."""
    return isinstance(
        err, TransactionErrorInstructionError | TransactionErrorInsufficientFundsForRent
    )


def _signatures_required(tx: AnyTransaction) -> int:
    return int(tx.message.header.num_required_signatures)


def _load_program(
    svm: LiteSVM, program_id: Pubkey, elf: bytes, authority: Pubkey | None, revoked: bool = False
) -> None:
    try:
        install_upgradeable_program(svm, program_id, elf, authority, revoked=revoked)
    except BaseException as exc:
        # Writing a Program account whose ELF does not load raises LiteSVMError; some
        # failures panic instead (pyo3 PanicException, a BaseException).
        if type(exc).__name__ not in ("LiteSVMError", "PanicException"):
            raise
        raise ChainError(f"program {program_id} could not be loaded: {exc}") from None


class _SvmLock:
    """The ledger's lock: one thread in LiteSVM at a time, and the x87 FPU reset (in the
    thread that used LiteSVM) before the lock is let go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        try:
            reset_x87()
        finally:
            self._lock.release()


class SvmLedger:
    """LiteSVM with slots, blockhash expiry, signature history and a managed clock."""

    def __init__(
        self,
        *,
        programs: Mapping[Pubkey, bytes] | None = None,
        upgrade_authority: Pubkey | None = None,
        time_source: Callable[[], int] | None = None,
        start_time: int | None = None,
        blockhash_window: int = DEFAULT_BLOCKHASH_WINDOW,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        """``programs`` are installed as upgradeable (loader v3) programs whose upgrade
        authority is ``upgrade_authority`` (None: revoked, as after ``--final``)."""
        if blockhash_window < 1 or history < blockhash_window:
            raise ValueError("need 1 <= blockhash_window <= history")
        self._lock = _SvmLock()
        self._time_source = time_source
        self._history_cap = history
        self._history: OrderedDict[Signature, Landed] = OrderedDict()
        self._block_times: OrderedDict[int, int] = OrderedDict()
        self._recent: deque[Hash] = deque(maxlen=blockhash_window)
        self._slot = 1
        self._slot_hashes: deque[tuple[int, Hash]] = deque(maxlen=SLOT_HASHES_KEPT)
        if start_time is None and time_source is not None:
            start_time = time_source()
        with self._lock:
            self._svm = LiteSVM().with_blockhash_check(False).with_lamports(AIRDROP_POOL_LAMPORTS)
            self._recent.append(self._svm.latest_blockhash())
            self._svm.warp_to_slot(self._slot)
            self._publish_slot_hash()
            if start_time is not None:
                self._write_unix_time(start_time)
            self._block_times[self._slot] = self._svm.get_clock().unix_timestamp
            for program_id, elf in (programs or {}).items():
                _load_program(self._svm, program_id, elf, upgrade_authority)

    # -- clock ------------------------------------------------------------------------

    def _write_unix_time(self, ts: int) -> None:
        c = self._svm.get_clock()
        self._svm.set_clock(
            Clock(
                slot=c.slot,
                epoch_start_timestamp=c.epoch_start_timestamp,
                epoch=c.epoch,
                leader_schedule_epoch=c.leader_schedule_epoch,
                unix_timestamp=ts,
            )
        )

    def _sync_clock(self) -> int:
        now = int(self._svm.get_clock().unix_timestamp)
        if self._time_source is not None:
            wall = int(self._time_source())
            if wall > now:
                self._write_unix_time(wall)
                now = wall
        return now

    def unix_time(self) -> int:
        with self._lock:
            return self._sync_clock()

    def set_unix_time(self, ts: int) -> None:
        """Set the chain clock (tests); a ``time_source`` then only moves it forward."""
        with self._lock:
            self._write_unix_time(ts)

    def warp(self, seconds: int) -> int:
        """Move the chain clock ``seconds`` forward; returns the new unix time."""
        if seconds < 0:
            raise ValueError("the clock only warps forward")
        with self._lock:
            now = self._sync_clock() + seconds
            self._write_unix_time(now)
            return now

    # -- blocks -----------------------------------------------------------------------

    @property
    def slot(self) -> int:
        with self._lock:
            return self._slot

    def latest_blockhash(self) -> tuple[Hash, int]:
        """The newest blockhash and the last slot ("block height") it is valid for."""
        with self._lock:
            return self._recent[-1], self._slot + (self._recent.maxlen or 0)

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        with self._lock:
            return blockhash in self._recent

    def block_time(self, slot: int) -> int | None:
        with self._lock:
            return self._block_times.get(slot)

    def _publish_slot_hash(self) -> None:
        """Record the current slot in the SlotHashes sysvar (newest first), so that
        programs that need a recent slot (address lookup tables) accept it."""
        self._slot_hashes.appendleft((self._slot, self._recent[-1]))
        self._svm.set_slot_hashes(list(self._slot_hashes))

    def _new_block(self, landed_time: int) -> int:
        self._svm.expire_blockhash()
        self._recent.append(self._svm.latest_blockhash())
        self._slot += 1
        self._svm.warp_to_slot(self._slot)
        self._publish_slot_hash()
        self._block_times[self._slot] = landed_time
        while len(self._block_times) > self._history_cap:
            self._block_times.popitem(last=False)
        return self._slot

    def _record(
        self,
        tx_wire: bytes,
        legacy: bool,
        meta: TransactionMetadata,
        sig: Signature,
        err: TransactionErrorType | None,
        fee: int,
    ) -> Landed:
        now = int(self._svm.get_clock().unix_timestamp)
        slot = self._new_block(now)
        landed = Landed(
            signature=sig,
            slot=slot,
            block_time=now,
            err=err,
            logs=tuple(meta.logs()),
            units_consumed=int(meta.compute_units_consumed()),
            fee=fee,
            wire=tx_wire,
            legacy=legacy,
        )
        self._history[sig] = landed
        while len(self._history) > self._history_cap:
            self._history.popitem(last=False)
        return landed

    # -- transactions -----------------------------------------------------------------

    def _precheck(self, tx: AnyTransaction, *, check_blockhash: bool) -> Simulation | None:
        if tx.signatures and tx.signatures[0] in self._history:
            return Simulation(TransactionErrorFieldless.AlreadyProcessed, (), 0)
        if check_blockhash and tx.message.recent_blockhash not in self._recent:
            return Simulation(TransactionErrorFieldless.BlockhashNotFound, (), 0)
        return None

    def submit(self, tx: AnyTransaction, *, preflight: bool = True) -> Landed | Simulation:
        """Process ``tx``: a :class:`Landed` if it was recorded (check ``.err``), else the
        :class:`Simulation` that refused it (preflight failure, stale blockhash, bad
        signature, duplicate)."""
        with self._lock:
            self._sync_clock()
            refused = self._precheck(tx, check_blockhash=True)
            if refused is not None:
                return refused
            if preflight:
                sim = self._simulate(tx, ())
                if not sim.ok:
                    return sim
            result = self._svm.send_transaction(tx)
            fee = LAMPORTS_PER_SIGNATURE * _signatures_required(tx)
            legacy = isinstance(tx, Transaction) or isinstance(tx.message, Message)
            if isinstance(result, FailedTransactionMetadata):
                err = result.err()
                meta = result.meta()
                if not _executed(err):
                    return Simulation(err, tuple(meta.logs()), int(meta.compute_units_consumed()))
                return self._record(bytes(tx), legacy, meta, tx.signatures[0], err, fee)
            return self._record(bytes(tx), legacy, result, tx.signatures[0], None, fee)

    def _simulate(self, tx: AnyTransaction, addresses: Sequence[Pubkey]) -> Simulation:
        result = self._svm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            return Simulation(
                result.err(),
                tuple(meta.logs()),
                int(meta.compute_units_consumed()),
                tuple(self._live(a) for a in addresses),
            )
        meta = result.meta()
        post = dict(result.post_accounts())
        accounts = tuple(post[a] if a in post else self._live(a) for a in addresses)
        return Simulation(None, tuple(meta.logs()), int(meta.compute_units_consumed()), accounts)

    def simulate(
        self,
        tx: AnyTransaction,
        *,
        sig_verify: bool = True,
        replace_blockhash: bool = False,
        addresses: Sequence[Pubkey] = (),
    ) -> Simulation:
        """Run ``tx`` without recording it; ``addresses`` asks for their post-state."""
        with self._lock:
            self._sync_clock()
            refused = self._precheck(tx, check_blockhash=not replace_blockhash)
            if refused is not None:
                return refused
            if sig_verify:
                return self._simulate(tx, addresses)
            self._svm.with_sigverify(False)
            try:
                return self._simulate(tx, addresses)
            finally:
                self._svm.with_sigverify(True)

    def airdrop(self, pubkey: Pubkey, lamports: int) -> Landed:
        """Pay ``lamports`` from the ledger's faucet; ChainError if the faucet cannot."""
        if not 0 < lamports < 2**64:
            raise ChainError(f"airdrop of {lamports} lamports is out of range")
        with self._lock:
            self._sync_clock()
            result = self._svm.airdrop(pubkey, lamports)
            if isinstance(result, FailedTransactionMetadata):
                err = result.err()
                raise ChainError(f"airdrop failed: {error_json(err)}")
            landed = self._record(
                b"", False, result, result.signature(), None, LAMPORTS_PER_SIGNATURE
            )
            return landed

    def statuses(self, signatures: Iterable[Signature]) -> list[Landed | None]:
        with self._lock:
            return [self._history.get(s) for s in signatures]

    # -- accounts ---------------------------------------------------------------------

    def _live(self, pubkey: Pubkey) -> Account | None:
        # A cluster purges accounts left with no lamports; LiteSVM keeps them around.
        account = self._svm.get_account(pubkey)
        return account if account is not None and account.lamports > 0 else None

    def get_account(self, pubkey: Pubkey) -> Account | None:
        """The account, or None if it does not exist (or holds no lamports: closed)."""
        with self._lock:
            self._sync_clock()
            return self._live(pubkey)

    def get_accounts(self, pubkeys: Sequence[Pubkey]) -> list[Account | None]:
        with self._lock:
            self._sync_clock()
            return [self._live(p) for p in pubkeys]

    def balance(self, pubkey: Pubkey) -> int:
        with self._lock:
            return int(self._svm.get_balance(pubkey) or 0)

    def rent_exempt_minimum(self, size: int) -> int:
        if not 0 <= size <= MAX_ACCOUNT_DATA_LEN:
            raise ValueError(f"account size {size} out of range 0..{MAX_ACCOUNT_DATA_LEN}")
        with self._lock:
            return int(self._svm.minimum_balance_for_rent_exemption(size))

    def set_account(self, pubkey: Pubkey, account: Account) -> None:
        """Write an account directly, bypassing the runtime (test set-up only)."""
        with self._lock:
            self._svm.set_account(pubkey, account)

    def install_program(
        self,
        program_id: Pubkey,
        elf: bytes,
        *,
        upgrade_authority: Pubkey | None,
        revoked: bool = False,
    ) -> None:
        """Install ``elf`` at ``program_id`` as a loader-v3 program (ProgramData and Program
        accounts written directly; see :mod:`~dgpu.contracts_client.chain.upgradeable`)."""
        with self._lock:
            _load_program(self._svm, program_id, elf, upgrade_authority, revoked)


def parse_wire_transaction(raw: bytes) -> VersionedTransaction:
    """Decode a transaction as sent on the wire (legacy or v0), raising ValueError."""
    try:
        return VersionedTransaction.from_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"not a serialized transaction: {exc}") from None
