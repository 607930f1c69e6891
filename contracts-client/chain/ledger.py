"""``SvmLedger``: a LiteSVM instance made to behave like a small, persistent cluster.

The synchronous core under :class:`~dgpu.contracts_client.chain.svm.LiteSVMChain` and the local
JSON-RPC server. It adds to LiteSVM what a client of a real cluster relies on:

- every landed transaction is a new slot with a new blockhash from the ledger's *own*
  hash chain (seeded randomly at genesis), and a transaction is accepted while its
  blockhash is among the last ``blockhash_window`` ones. LiteSVM's blockhashes are not
  used: every fresh LiteSVM starts from the same one, so a transaction signed before a
  restart would execute again after it;
- a journal (:mod:`~dgpu.contracts_client.chain.journal`, SQLite) of every landed
  transaction's account changes, metadata and block, committed before the caller hears
  of it; with a ``path`` the ledger is restored from it on the next start (accounts,
  programs, slot, clock, blockhash window, history);
- a signature history for ``getSignatureStatuses``/``getTransaction``; a duplicate
  signature is refused as ``AlreadyProcessed``;
- preflight: a transaction that fails simulation is refused without landing;
- SlotHashes kept up to date, so address lookup tables can be created and used;
- a clock that follows an injected ``time_source`` (never backwards, also across
  restarts) and can be set or warped by tests;
- a faucet account of its own: LiteSVM's airdrop pays from an account no message names,
  which the journal could not restore.

All access to the LiteSVM instance goes through one lock, so a ledger may be shared by
threads; no method blocks for long. Leaving the lock also resets the x87 FPU, which
LiteSVM can leave "stack full" (see :mod:`dgpu.contracts_client.chain.fpu`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgpu.contracts_client.chain import history as h
from dgpu.contracts_client.chain.errors import ChainError, error_json
from dgpu.contracts_client.chain.fpu import reset_x87
from dgpu.contracts_client.chain.interface import AnyTransaction, Simulation
from dgpu.contracts_client.chain.journal import BlockRow, Commit, Journal, LedgerStateError, TxRow
from dgpu.contracts_client.chain.upgradeable import install_upgradeable_program
from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import FeatureSet, LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata
from solders.transaction_status import (
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorType,
    TransactionStatus,
)

DEFAULT_BLOCKHASH_WINDOW = 300
DEFAULT_HISTORY = 100_000
LAMPORTS_PER_SIGNATURE = 5_000
AIRDROP_POOL_LAMPORTS = 10**18
MAX_ACCOUNT_DATA_LEN = 10 * 1024 * 1024
SLOT_HASHES_KEPT = 512  # what the SlotHashes sysvar holds on a cluster
SLOT_HASHES_SYSVAR = Pubkey.from_string("SysvarS1otHashes111111111111111111111111111")
LOOKUP_TABLE_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
# SIMD-0167's "disable new loader-v3 deployments": LiteSVM() turns on every feature, which
# makes DeployWithMaxDataLen fail. Real clusters still deploy through loader v3, so the
# ledger runs with every feature but this one (CHAIN.md).
DISABLE_NEW_LOADER_V3_DEPLOYMENTS = Pubkey.from_string(
    "EmhbpdVtZ2hWRGFWBDjn2i3SJD8Z36z4mpMcZJEnebnP"
)

Listener = Callable[["Landed", Sequence[tuple[Pubkey, Account | None]]], None]


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
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def err_json(self) -> Any:
        return None if self.err is None else error_json(self.err)

    @staticmethod
    def from_row(row: TxRow) -> Landed:
        return Landed(
            signature=Signature.from_bytes(row.signature),
            slot=row.slot,
            block_time=row.block_time,
            err=_parse_err(row.err),
            logs=tuple(row.meta.get("logMessages", ())),
            units_consumed=row.units,
            fee=row.fee,
            wire=row.wire,
            legacy=row.legacy,
            meta=row.meta,
        )


def _parse_err(err: Any) -> TransactionErrorType | None:
    if err is None:
        return None
    status = {"slot": 0, "confirmations": None, "status": {"Err": err}, "err": err}
    return TransactionStatus.from_json(json.dumps(status)).err


def _executed(err: TransactionErrorType) -> bool:
    """Whether a failed transaction was executed (and so paid its fee) rather than refused."""
    return isinstance(
        err, TransactionErrorInstructionError | TransactionErrorInsufficientFundsForRent
    )


def _feature_set() -> FeatureSet:
    all_on = FeatureSet.all_enabled()
    off = DISABLE_NEW_LOADER_V3_DEPLOYMENTS
    return FeatureSet({k: v for k, v in all_on.active.items() if k != off}, {off})


def _load_program(
    svm: LiteSVM, program_id: Pubkey, elf: bytes, authority: Pubkey | None, revoked: bool = False
) -> Pubkey:
    """Install ``elf`` as a loader-v3 program; the address of its ProgramData account."""
    try:
        return install_upgradeable_program(svm, program_id, elf, authority, revoked=revoked)
    except BaseException as exc:
        # Writing a Program account whose ELF does not load raises LiteSVMError; some
        # failures panic instead (pyo3 PanicException, a BaseException).
        if type(exc).__name__ not in ("LiteSVMError", "PanicException"):
            raise
        raise ChainError(f"program {program_id} could not be loaded: {exc}") from None


def _next_blockhash(previous: Hash, slot: int) -> Hash:
    return Hash(hashlib.sha256(bytes(previous) + slot.to_bytes(8, "little")).digest())


def _restore_order(item: tuple[Pubkey, Account]) -> int:
    # A loader-v3 Program account (state tag 2) must come after its ProgramData, or
    # LiteSVM cannot load it: "An account required by the instruction is missing".
    _, account = item
    return int(account.owner == LOADER_V3 and bytes(account.data)[:4] == b"\x02\x00\x00\x00")


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
    """LiteSVM with slots, blockhash expiry, a journaled history and a managed clock.

    ``path`` names the journal file: a new one starts a new chain (genesis), an existing
    one is restored. Without it the ledger lives in memory and keeps ``history`` slots.
    """

    def __init__(
        self,
        *,
        programs: Mapping[Pubkey, bytes] | None = None,
        upgrade_authority: Pubkey | None = None,
        time_source: Callable[[], int] | None = None,
        start_time: int | None = None,
        blockhash_window: int = DEFAULT_BLOCKHASH_WINDOW,
        history: int = DEFAULT_HISTORY,
        path: Path | None = None,
    ) -> None:
        """``programs`` are installed as upgradeable (loader v3) programs whose upgrade
        authority is ``upgrade_authority`` (None: revoked, as after ``--final``)."""
        if blockhash_window < 1 or history < blockhash_window:
            raise ValueError("need 1 <= blockhash_window <= history")
        self._lock = _SvmLock()
        self._time_source = time_source
        self._history_cap = None if path is not None else history
        self._recent: deque[Hash] = deque(maxlen=blockhash_window)
        self._slot_hashes: deque[tuple[int, Hash]] = deque(maxlen=SLOT_HASHES_KEPT)
        self._slot_hashes_stale = False
        self._listeners: list[Listener] = []
        self._journal = Journal(path)
        if start_time is None and time_source is not None:
            start_time = time_source()
        with self._lock:
            self._svm = LiteSVM().with_builtins(_feature_set()).with_blockhash_check(False)
            if self._journal.is_new:
                self._genesis(start_time)
                self.restored = False
            else:
                try:
                    self._restore()
                except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as exc:
                    # a file that opened as a ledger but whose content does not read back
                    raise LedgerStateError(path, f"the ledger is damaged ({exc})") from None
                self.restored = True
            for program_id, elf in (programs or {}).items():
                if self._live(program_id) is None:
                    data = _load_program(self._svm, program_id, elf, upgrade_authority)
                    self._journal_direct([data, program_id])

    # -- genesis and restore ------------------------------------------------------------

    def _genesis(self, start_time: int | None) -> None:
        seed = os.urandom(32)
        self.genesis_hash = Hash(hashlib.sha256(b"dgpu genesis" + seed).digest())
        self._faucet = Keypair()
        self._slot = 1
        self._svm.warp_to_slot(self._slot)
        if start_time is not None:
            self._write_unix_time(start_time)
        self._svm.set_account(
            self._faucet.pubkey(), Account(AIRDROP_POOL_LAMPORTS, b"", SYSTEM_PROGRAM_ID)
        )
        blockhash = _next_blockhash(self.genesis_hash, self._slot)
        self._recent.append(blockhash)
        self._publish_slot_hash()
        now = int(self._svm.get_clock().unix_timestamp)
        block = BlockRow(self._slot, str(blockhash), 0, str(self.genesis_hash), now, None)
        faucet = self._faucet.pubkey()
        self._journal.write(
            Commit([(faucet, self._svm.get_account(faucet))], None, (), block, self._head()),
            meta={"genesis_hash": str(self.genesis_hash), "faucet": bytes(self._faucet).hex()},
        )

    def _restore(self) -> None:
        journal = self._journal
        self.genesis_hash = Hash.from_string(journal.meta("genesis_hash") or "")
        self._faucet = Keypair.from_bytes(bytes.fromhex(journal.meta("faucet") or ""))
        for pubkey, account in sorted(journal.accounts(), key=_restore_order):
            self._svm.set_account(pubkey, account)
        head = journal.head()
        self._slot = int(head["slot"])
        self._svm.warp_to_slot(self._slot)
        self._svm.set_clock(Clock(*head["clock"]))
        blocks = journal.recent_blocks(SLOT_HASHES_KEPT)
        for block in blocks[-(self._recent.maxlen or 1) :]:
            self._recent.append(Hash.from_string(block.blockhash))
        for block in blocks:
            self._slot_hashes.appendleft((block.slot, Hash.from_string(block.blockhash)))
        self._slot_hashes_stale = True

    def _head(self) -> dict[str, Any]:
        c = self._svm.get_clock()
        clock = [c.slot, c.epoch_start_timestamp, c.epoch, c.leader_schedule_epoch]
        return {"slot": self._slot, "clock": [*clock, c.unix_timestamp]}

    def _journal_direct(self, pubkeys: Sequence[Pubkey]) -> None:
        """Journal accounts written outside a transaction (programs, test set-up)."""
        changed = [(k, self._svm.get_account(k)) for k in pubkeys]
        self._journal.write(Commit(changed, None, (), None, self._head()))

    @property
    def journal_path(self) -> Path | None:
        return self._journal.path

    def close(self) -> None:
        with self._lock:
            self._journal.close()

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
            self._journal_direct(())

    def warp(self, seconds: int) -> int:
        """Move the chain clock ``seconds`` forward; returns the new unix time."""
        if seconds < 0:
            raise ValueError("the clock only warps forward")
        with self._lock:
            now = self._sync_clock() + seconds
            self._write_unix_time(now)
            self._journal_direct(())
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
            block = self._journal.block(slot)
            return None if block is None else block.block_time

    def block(self, slot: int) -> tuple[BlockRow, Landed | None] | None:
        """The block at ``slot`` and its transaction (at most one per block here)."""
        with self._lock:
            block = self._journal.block(slot)
            if block is None:
                return None
            row = None if block.signature is None else self._journal.transaction(block.signature)
            return block, None if row is None else Landed.from_row(row)

    def blocks(self, start: int, end: int, limit: int) -> list[int]:
        with self._lock:
            return self._journal.blocks_between(start, end, limit)

    def first_available_block(self) -> int:
        with self._lock:
            return self._journal.first_block() or 0

    def transaction_count(self) -> int:
        with self._lock:
            return self._journal.transaction_count()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(landed, changed_accounts)`` after each commit, in slot order,
        under the ledger's lock: it must only queue work, never call back in."""
        with self._lock:
            self._listeners.append(listener)

    def _publish_slot_hash(self) -> None:
        """Record the current slot for the SlotHashes sysvar (newest first), so that
        programs that need a recent slot (address lookup tables) accept it. Written to
        LiteSVM only when something reads it (:meth:`_flush_slot_hashes`): every sysvar
        write in the LiteSVM that solders 0.26 bundles copies the whole account map, so a
        write per transaction made the chain slower the more accounts it held."""
        self._slot_hashes.appendleft((self._slot, self._recent[-1]))
        self._slot_hashes_stale = True

    def _flush_slot_hashes(self) -> None:
        if self._slot_hashes_stale:
            self._svm.set_slot_hashes(list(self._slot_hashes))
            self._slot_hashes_stale = False

    def _before_running(self, tx: AnyTransaction) -> None:
        """Bring SlotHashes up to date when ``tx`` may read it: it names the sysvar or the
        lookup-table program (create, deactivate, close), or loads addresses from a table
        (whose deactivation is judged against it). Nothing else can read it."""
        message = tx.message
        keys = message.account_keys
        if (
            SLOT_HASHES_SYSVAR in keys
            or LOOKUP_TABLE_PROGRAM in keys
            or getattr(message, "address_table_lookups", None)
        ):
            self._flush_slot_hashes()

    def _record(
        self,
        tx: AnyTransaction,
        meta: TransactionMetadata,
        err: TransactionErrorType | None,
        keys: h.AccountKeys,
        pre_balances: list[int],
        pre_tokens: list[dict[str, Any]],
    ) -> Landed:
        now = int(self._svm.get_clock().unix_timestamp)
        previous = self._recent[-1]
        parent = self._slot
        self._slot += 1
        blockhash = _next_blockhash(previous, self._slot)
        self._recent.append(blockhash)
        self._svm.warp_to_slot(self._slot)
        self._publish_slot_hash()
        post_balances = [int(self._svm.get_balance(k) or 0) for k in keys.keys]
        post_tokens = h.token_balances(keys.keys, self._live)
        stored = h.meta_json(meta, keys, pre_balances, post_balances, pre_tokens, post_tokens)
        sig = tx.signatures[0]
        fee = LAMPORTS_PER_SIGNATURE * int(tx.message.header.num_required_signatures)
        legacy = isinstance(tx, Transaction) or isinstance(tx.message, Message)
        err_json = None if err is None else error_json(err)
        row = TxRow(
            bytes(sig),
            self._slot,
            now,
            err_json,
            fee,
            int(meta.compute_units_consumed()),
            legacy,
            bytes(tx),
            stored,
        )
        block = BlockRow(self._slot, str(blockhash), parent, str(previous), now, bytes(sig))
        changed = [(k, self._svm.get_account(k)) for k in dict.fromkeys(keys.writable_keys)]
        self._journal.write(Commit(changed, row, keys.keys, block, self._head()))
        cap = self._history_cap
        if cap is not None and self._slot % max(1, cap // 16) == 0:
            # in-memory ledgers keep about ``history`` slots (pruned in steps, cheaply)
            self._journal.prune(self._slot - cap + 1)
        landed = Landed.from_row(row)
        for listener in self._listeners:
            listener(landed, changed)
        return landed

    # -- transactions -----------------------------------------------------------------

    def _precheck(self, tx: AnyTransaction, *, check_blockhash: bool) -> Simulation | None:
        if tx.signatures and self._journal.transaction(bytes(tx.signatures[0])) is not None:
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
            return self._submit(tx, preflight=preflight)

    def _submit(self, tx: AnyTransaction, *, preflight: bool) -> Landed | Simulation:
        refused = self._precheck(tx, check_blockhash=True)
        if refused is not None:
            return refused
        if preflight:
            sim = self._simulate(tx, ())
            if not sim.ok:
                return sim
        keys = h.account_keys(tx, self._live)
        pre_balances = [int(self._svm.get_balance(k) or 0) for k in keys.keys]
        pre_tokens = h.token_balances(keys.keys, self._live)
        self._before_running(tx)
        result = self._svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            err = result.err()
            meta = result.meta()
            if not _executed(err):
                return Simulation(err, tuple(meta.logs()), int(meta.compute_units_consumed()))
            return self._record(tx, meta, err, keys, pre_balances, pre_tokens)
        return self._record(tx, result, None, keys, pre_balances, pre_tokens)

    def _simulate(self, tx: AnyTransaction, addresses: Sequence[Pubkey]) -> Simulation:
        self._before_running(tx)
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
            faucet = self._faucet
            ix = transfer(
                TransferParams(from_pubkey=faucet.pubkey(), to_pubkey=pubkey, lamports=lamports)
            )
            tx = Transaction.new_signed_with_payer(
                [ix], faucet.pubkey(), [faucet], self._recent[-1]
            )
            outcome = self._submit(tx, preflight=False)
            if outcome.err is not None:
                raise ChainError(f"airdrop failed: {error_json(outcome.err)}")
            assert isinstance(outcome, Landed)
            return outcome

    def statuses(self, signatures: Iterable[Signature]) -> list[Landed | None]:
        with self._lock:
            rows = self._journal.transactions(bytes(s) for s in signatures)
        return [None if r is None else Landed.from_row(r) for r in rows]

    def signatures_for(
        self,
        address: Pubkey,
        *,
        before: Signature | None = None,
        until: Signature | None = None,
        limit: int = 1000,
    ) -> list[Landed]:
        """Transactions that name ``address``, newest first (``getSignaturesForAddress``)."""
        with self._lock:
            bounds = []
            for sig in (before, until):
                row = None if sig is None else self._journal.transaction(bytes(sig))
                bounds.append(None if row is None else row.slot)
            if before is not None and bounds[0] is None:
                return []
            rows = self._journal.signatures_for(
                address, before_slot=bounds[0], until_slot=bounds[1], limit=limit
            )
        return [Landed.from_row(r) for r in rows]

    # -- accounts ---------------------------------------------------------------------

    def _live(self, pubkey: Pubkey) -> Account | None:
        if pubkey == SLOT_HASHES_SYSVAR:
            self._flush_slot_hashes()
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

    def program_accounts(self, owner: Pubkey) -> list[tuple[Pubkey, Account]]:
        """Every live account owned by ``owner`` (the journal is the ledger's index: every
        account written by a transaction or set-up is in it)."""
        with self._lock:
            return list(self._journal.accounts_owned_by(owner))

    def total_lamports(self) -> int:
        """Lamports held by every account the ledger knows (the faucet included)."""
        with self._lock:
            return self._journal.total_lamports()

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
            self._journal_direct([pubkey])

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
            data = _load_program(self._svm, program_id, elf, upgrade_authority, revoked)
            self._journal_direct([data, program_id])


def parse_wire_transaction(raw: bytes) -> VersionedTransaction:
    """Decode a transaction as sent on the wire (legacy or v0), raising ValueError."""
    try:
        return VersionedTransaction.from_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"not a serialized transaction: {exc}") from None
