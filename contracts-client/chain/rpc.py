"""``RpcChain``: the :class:`Chain` interface over Solana JSON-RPC.

Requests and responses are solders' typed RPC bodies (the ones solana-py uses), carried
by an ``httpx.AsyncClient``; httpx runs on anyio, so this works under trio and asyncio.
solana-py's own ``AsyncClient`` is not used because its confirmation loop sleeps with
asyncio. Transactions are sent with preflight and confirmed by polling
``getSignatureStatuses`` within a bounded time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import anyio
import httpx
from dgpu.contracts_client.chain.errors import (
    AccountNotFound,
    ChainError,
    ChainUnavailable,
    ConfirmationTimeout,
    RpcError,
    TransactionFailed,
)
from dgpu.contracts_client.chain.interface import AnyTransaction, Simulation
from dgpu.contracts_client.chain.layout import clock_unix_timestamp
from solders.account import Account
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcContextConfig,
    RpcRequestAirdropConfig,
    RpcSendTransactionConfig,
    RpcSignatureStatusConfig,
    RpcSimulateTransactionConfig,
    RpcTransactionConfig,
)
from solders.rpc.requests import (
    Body,
    GetAccountInfo,
    GetBalance,
    GetGenesisHash,
    GetLatestBlockhash,
    GetMinimumBalanceForRentExemption,
    GetMultipleAccounts,
    GetSignatureStatuses,
    GetSlot,
    GetTokenAccountBalance,
    GetTransaction,
    RequestAirdrop,
    SendLegacyTransaction,
    SendVersionedTransaction,
    SimulateLegacyTransaction,
    SimulateVersionedTransaction,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetGenesisHashResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetMultipleAccountsResp,
    GetSignatureStatusesResp,
    GetSlotResp,
    GetTokenAccountBalanceResp,
    GetTransactionResp,
    RequestAirdropResp,
    RpcSimulateTransactionResult,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.signature import Signature
from solders.sysvar import CLOCK
from solders.transaction import Transaction
from solders.transaction_status import (
    TransactionConfirmationStatus,
    TransactionErrorFieldless,
    TransactionStatus,
    UiTransactionEncoding,
)

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_ACCOUNTS_PER_CALL = 100
MAX_SIGNATURES_PER_CALL = 256
PREFLIGHT_FAILURE = -32002
SIGNATURE_VERIFICATION_FAILURE = -32003
INVALID_PARAMS = -32602

T = TypeVar("T", covariant=True)


class _Parser(Protocol[T]):
    @staticmethod
    def from_json(raw: str) -> T: ...


class RpcChain:
    """A Solana cluster over JSON-RPC at ``url``.

    ``http`` is borrowed when given (the caller closes it); otherwise the chain makes
    one and :meth:`aclose` closes it. ``confirm_timeout`` bounds how long
    ``send_transaction``/``request_airdrop`` wait for confirmation. With
    ``skip_preflight`` a failing transaction lands (and pays its fee) and the failure is
    read back from ``getSignatureStatuses`` and ``getTransaction``.
    """

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient | None = None,
        *,
        commitment: CommitmentLevel = CommitmentLevel.Confirmed,
        confirm_timeout: float = 60.0,
        poll_interval: float = 0.4,
        request_timeout: float = 30.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        skip_preflight: bool = False,
    ) -> None:
        self.url = url
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=request_timeout)
        self._commitment = commitment
        self._confirm_timeout = confirm_timeout
        self._poll_interval = poll_interval
        self._max_response = max_response_bytes
        self._skip_preflight = skip_preflight

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- transport --------------------------------------------------------------------

    async def _post(self, body: Body) -> tuple[str, dict[str, Any]]:
        """POST one request; return its raw text and decoded envelope, errors converted."""
        try:
            async with self._http.stream(
                "POST",
                self.url,
                content=body.to_json().encode(),
                headers={"content-type": "application/json"},
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_response:
                        raise ChainUnavailable(
                            f"{self.url}: response larger than {self._max_response} bytes"
                        )
                    chunks.append(chunk)
                status = response.status_code
        except httpx.HTTPError as exc:
            raise ChainUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        raw = b"".join(chunks)
        try:
            text = raw.decode()
            envelope = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ChainUnavailable(
                f"{self.url}: HTTP {status} with a body that is not JSON"
            ) from None
        if not isinstance(envelope, dict):
            raise ChainUnavailable(f"{self.url}: HTTP {status}: not a JSON-RPC response object")
        error = envelope.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise ChainUnavailable(f"{self.url}: malformed JSON-RPC error object")
            code = error.get("code")
            message = error.get("message")
            raise RpcError(
                code if isinstance(code, int) else 0,
                message if isinstance(message, str) else "",
                error.get("data"),
            )
        if status != 200 or "result" not in envelope:
            raise ChainUnavailable(f"{self.url}: HTTP {status} without a JSON-RPC result")
        return text, envelope

    async def _call(self, body: Body, parser: type[_Parser[Any]]) -> Any:
        text, _ = await self._post(body)
        try:
            return parser.from_json(text)
        except ValueError as exc:
            raise ChainUnavailable(f"{self.url}: unexpected result shape: {exc}") from None

    # -- Chain ------------------------------------------------------------------------

    async def latest_blockhash(self) -> Hash:
        resp: GetLatestBlockhashResp = await self._call(
            GetLatestBlockhash(RpcContextConfig(commitment=self._commitment)),
            GetLatestBlockhashResp,
        )
        return resp.value.blockhash

    async def genesis_hash(self) -> Hash:
        """The cluster's genesis hash: records made on one chain are meaningless on
        another (a fresh ``dgpu chain serve`` state directory is a new chain)."""
        resp: GetGenesisHashResp = await self._call(GetGenesisHash(), GetGenesisHashResp)
        return resp.value

    async def get_slot(self) -> int:
        resp: GetSlotResp = await self._call(
            GetSlot(RpcContextConfig(commitment=self._commitment)), GetSlotResp
        )
        return int(resp.value)

    async def send_transaction(self, tx: AnyTransaction) -> Signature:
        config = RpcSendTransactionConfig(
            skip_preflight=self._skip_preflight, preflight_commitment=self._commitment
        )
        body: Body = (
            SendLegacyTransaction(tx, config)
            if isinstance(tx, Transaction)
            else SendVersionedTransaction(tx, config)
        )
        try:
            resp: SendTransactionResp = await self._call(body, SendTransactionResp)
        except RpcError as exc:
            if exc.code == SIGNATURE_VERIFICATION_FAILURE:
                raise TransactionFailed(
                    TransactionErrorFieldless.SignatureFailure, (), signature=tx.signatures[0]
                ) from None
            if exc.code == PREFLIGHT_FAILURE and isinstance(exc.data, dict):
                result = _simulation_result(exc.data)
                if result is not None and result.err is not None:
                    raise TransactionFailed(
                        result.err, result.logs or (), signature=tx.signatures[0]
                    ) from None
            raise
        await self._confirm(resp.value)
        return resp.value

    async def _confirm(self, signature: Signature) -> None:
        levels = [
            TransactionConfirmationStatus.Processed,
            TransactionConfirmationStatus.Confirmed,
            TransactionConfirmationStatus.Finalized,
        ]
        if self._commitment == CommitmentLevel.Processed:
            wanted = levels
        elif self._commitment == CommitmentLevel.Finalized:
            wanted = levels[2:]
        else:
            wanted = levels[1:]
        with anyio.move_on_after(self._confirm_timeout):
            while True:
                (status,) = await self.signature_statuses([signature])
                if status is not None:
                    if status.err is not None:
                        logs = await self._logs_of(signature)
                        raise TransactionFailed(status.err, logs, signature=signature, landed=True)
                    if status.confirmation_status in wanted:
                        return
                await anyio.sleep(self._poll_interval)
        raise ConfirmationTimeout(signature, self._confirm_timeout)

    async def _logs_of(self, signature: Signature) -> tuple[str, ...]:
        """Best effort: the log lines of a landed transaction (empty if the node has none)."""
        config = RpcTransactionConfig(
            encoding=UiTransactionEncoding.Base64,
            commitment=self._commitment,
            max_supported_transaction_version=0,
        )
        try:
            resp: GetTransactionResp = await self._call(
                GetTransaction(signature, config), GetTransactionResp
            )
        except ChainError:
            return ()
        if resp.value is None or resp.value.transaction.meta is None:
            return ()
        return tuple(resp.value.transaction.meta.log_messages or ())

    async def simulate_transaction(self, tx: AnyTransaction) -> Simulation:
        config = RpcSimulateTransactionConfig(sig_verify=True, commitment=self._commitment)
        body: Body = (
            SimulateLegacyTransaction(tx, config)
            if isinstance(tx, Transaction)
            else SimulateVersionedTransaction(tx, config)
        )
        resp: SimulateTransactionResp = await self._call(body, SimulateTransactionResp)
        value = resp.value
        return Simulation(value.err, tuple(value.logs or ()), int(value.units_consumed or 0))

    def _account_config(self) -> RpcAccountInfoConfig:
        return RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=self._commitment)

    async def get_account(self, pubkey: Pubkey) -> Account | None:
        resp: GetAccountInfoResp = await self._call(
            GetAccountInfo(pubkey, self._account_config()), GetAccountInfoResp
        )
        return resp.value

    async def get_multiple_accounts(self, pubkeys: Sequence[Pubkey]) -> list[Account | None]:
        accounts: list[Account | None] = []
        for start in range(0, len(pubkeys), MAX_ACCOUNTS_PER_CALL):
            chunk = list(pubkeys[start : start + MAX_ACCOUNTS_PER_CALL])
            resp: GetMultipleAccountsResp = await self._call(
                GetMultipleAccounts(chunk, self._account_config()), GetMultipleAccountsResp
            )
            if len(resp.value) != len(chunk):
                raise ChainUnavailable(f"{self.url}: getMultipleAccounts answered a wrong count")
            accounts.extend(resp.value)
        return accounts

    async def get_balance(self, pubkey: Pubkey) -> int:
        resp: GetBalanceResp = await self._call(
            GetBalance(pubkey, RpcContextConfig(commitment=self._commitment)), GetBalanceResp
        )
        return int(resp.value)

    async def get_token_balance(self, token_account: Pubkey) -> int:
        try:
            resp: GetTokenAccountBalanceResp = await self._call(
                GetTokenAccountBalance(token_account, self._commitment),
                GetTokenAccountBalanceResp,
            )
        except RpcError as exc:
            # For a well-formed address this code means "no such account / not a token account".
            if exc.code == INVALID_PARAMS:
                raise AccountNotFound(token_account, "token account") from exc
            raise
        try:
            return int(resp.value.amount)
        except ValueError:
            raise ChainUnavailable(f"{self.url}: token amount is not an integer") from None

    async def minimum_balance_for_rent_exemption(self, size: int) -> int:
        resp: GetMinimumBalanceForRentExemptionResp = await self._call(
            GetMinimumBalanceForRentExemption(size, self._commitment),
            GetMinimumBalanceForRentExemptionResp,
        )
        return int(resp.value)

    async def unix_time(self) -> int:
        clock = await self.get_account(CLOCK)
        if clock is None:
            raise ChainUnavailable(f"{self.url}: the Clock sysvar is missing")
        try:
            return clock_unix_timestamp(clock.data)
        except ValueError as exc:
            raise ChainUnavailable(f"{self.url}: {exc}") from None

    async def signature_statuses(
        self, signatures: Sequence[Signature]
    ) -> list[TransactionStatus | None]:
        statuses: list[TransactionStatus | None] = []
        config = RpcSignatureStatusConfig(search_transaction_history=True)
        for start in range(0, len(signatures), MAX_SIGNATURES_PER_CALL):
            chunk = list(signatures[start : start + MAX_SIGNATURES_PER_CALL])
            resp: GetSignatureStatusesResp = await self._call(
                GetSignatureStatuses(chunk, config), GetSignatureStatusesResp
            )
            if len(resp.value) != len(chunk):
                raise ChainUnavailable(f"{self.url}: getSignatureStatuses answered a wrong count")
            statuses.extend(resp.value)
        return statuses

    async def request_airdrop(self, pubkey: Pubkey, lamports: int) -> Signature:
        resp: RequestAirdropResp = await self._call(
            RequestAirdrop(pubkey, lamports, RpcRequestAirdropConfig(commitment=self._commitment)),
            RequestAirdropResp,
        )
        await self._confirm(resp.value)
        return resp.value


def _simulation_result(data: dict[str, Any]) -> RpcSimulateTransactionResult | None:
    try:
        return RpcSimulateTransactionResult.from_json(json.dumps(data))
    except ValueError:
        return None
