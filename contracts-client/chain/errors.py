"""Typed errors of the chain layer, and helpers to read a Solana transaction error.

::

    DgpuError
    └── ChainError                 root of dgpu.contracts_client.chain
        ├── TransactionFailed      refused in preflight or failed on chain (err, logs)
        ├── ConfirmationTimeout    sent, but not confirmed within the timeout
        ├── AccountNotFound        no (token) account where one was required
        ├── RpcError               a JSON-RPC error object from the node (code, message)
        └── ChainUnavailable       transport failure or a malformed/oversized answer

Transaction errors are solders ``TransactionErrorType`` values in both implementations
(LiteSVM hands them over directly; over JSON-RPC they are parsed by solders), so callers
can match ``custom_code`` the same way whichever chain they talk to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dgpu.protocol.errors import DgpuError
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorInstructionError,
    TransactionErrorType,
)

MAX_LOG_LINES_IN_MESSAGE = 12


def error_json(err: TransactionErrorType) -> Any:
    """The error as JSON-RPC spells it, e.g. ``{"InstructionError": [1, {"Custom": 6001}]}``."""
    return json.loads(RpcSimulateTransactionResult(err=err).to_json())["err"]


def custom_code(err: TransactionErrorType | None) -> int | None:
    """The program's custom error code (``InstructionError(_, Custom(n))``), if any."""
    if isinstance(err, TransactionErrorInstructionError) and isinstance(
        err.err, InstructionErrorCustom
    ):
        return int(err.err.code)
    return None


def instruction_index(err: TransactionErrorType | None) -> int | None:
    """Index of the failing instruction, if the error names one."""
    if isinstance(err, TransactionErrorInstructionError):
        return int(err.index)
    return None


class ChainError(DgpuError):
    """Root of the errors of :mod:`dgpu.contracts_client.chain`."""


class TransactionFailed(ChainError):
    """A transaction refused in preflight simulation or failed on chain.

    ``landed`` tells whether it was recorded on chain (fee paid) or refused before.
    """

    def __init__(
        self,
        err: TransactionErrorType,
        logs: Sequence[str],
        *,
        signature: Signature | None = None,
        landed: bool = False,
    ) -> None:
        self.err = err
        self.logs = tuple(logs)
        self.signature = signature
        self.landed = landed
        where = "failed on chain" if landed else "refused in preflight"
        tail = list(self.logs[-MAX_LOG_LINES_IN_MESSAGE:])
        detail = json.dumps(error_json(err), separators=(",", ":"))
        message = f"transaction {where}: {detail}"
        if tail:
            message += "\n  " + "\n  ".join(tail)
        super().__init__(message)

    @property
    def custom_code(self) -> int | None:
        """The program's custom error code, if the failure is one."""
        return custom_code(self.err)

    @property
    def instruction_index(self) -> int | None:
        return instruction_index(self.err)


class ConfirmationTimeout(ChainError):
    """A transaction was accepted by the node but not confirmed in time."""

    def __init__(self, signature: Signature, timeout: float) -> None:
        super().__init__(f"transaction {signature} not confirmed within {timeout:g} s")
        self.signature = signature
        self.timeout = timeout


class AccountNotFound(ChainError):
    """No account (or no account of the required kind) at an address."""

    def __init__(self, pubkey: Pubkey, what: str = "account") -> None:
        super().__init__(f"no {what} at {pubkey}")
        self.pubkey = pubkey
        self.what = what


class RpcError(ChainError):
    """A JSON-RPC error object returned by the node."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.rpc_message = message
        self.data = data


class ChainUnavailable(ChainError):
    """The node could not be reached, or answered with something that is not JSON-RPC."""
