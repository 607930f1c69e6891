"""The chain layer: one async ``Chain`` interface, an in-process LiteSVM chain and a
JSON-RPC chain. See :mod:`dgpu.contracts_client.chain.errors` for the error tree."""

from dgpu.contracts_client.chain.errors import (
    AccountNotFound,
    ChainError,
    ChainUnavailable,
    ConfirmationTimeout,
    RpcError,
    TransactionFailed,
    custom_code,
    error_json,
    instruction_index,
)
from dgpu.contracts_client.chain.interface import (
    AnyTransaction,
    Chain,
    Simulation,
    send_instructions,
)
from dgpu.contracts_client.chain.journal import LedgerStateError
from dgpu.contracts_client.chain.ledger import Landed, SvmLedger, parse_wire_transaction
from dgpu.contracts_client.chain.rpc import RpcChain
from dgpu.contracts_client.chain.svm import LiteSVMChain, escrow_program, status_of

__all__ = [
    "AccountNotFound",
    "AnyTransaction",
    "Chain",
    "ChainError",
    "ChainUnavailable",
    "ConfirmationTimeout",
    "Landed",
    "LedgerStateError",
    "LiteSVMChain",
    "RpcChain",
    "RpcError",
    "Simulation",
    "SvmLedger",
    "TransactionFailed",
    "custom_code",
    "error_json",
    "escrow_program",
    "instruction_index",
    "parse_wire_transaction",
    "send_instructions",
    "status_of",
]
