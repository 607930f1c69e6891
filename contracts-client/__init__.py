"""dgpu.contracts_client: the client side of the escrow program.

- :mod:`~dgpu.contracts_client.chain`: the ``Chain`` interface (LiteSVM, JSON-RPC) and its errors;
- :mod:`~dgpu.contracts_client.idl`: the Anchor IDL driving instruction encoding and account
  decoding (anchorpy's coder), ``ChannelAccount`` and ``ConfigState``;
- :mod:`~dgpu.contracts_client.instructions`: pure builders of the escrow's instructions;
- :mod:`~dgpu.contracts_client.settlement`: batched ``settle`` transactions (Ed25519 precompile,
  v0 messages with an address lookup table) and how many receipts fit one;
- :mod:`~dgpu.contracts_client.escrow`: ``EscrowClient``, the operations as async calls;
- :mod:`~dgpu.contracts_client.money`: the money seam the node, the coordinator and the
  simulations share: one ``Escrow`` interface and ``ChannelState``, the chain-backed and
  the in-memory (proven equal) escrows, and the one ``Settler`` (its own error tree);
- :mod:`~dgpu.contracts_client.pda`, :mod:`~dgpu.contracts_client.ed25519`,
  :mod:`~dgpu.contracts_client.lookup_table`: addresses and low-level instruction builders.

Errors of the escrow client are drawn in :mod:`dgpu.contracts_client.errors`.
"""

from dgpu.contracts_client.ed25519 import ED25519_PROGRAM_ID, SignedMessage, ed25519_instruction
from dgpu.contracts_client.errors import (
    AccountDecodeError,
    BatchTooLarge,
    ChannelNotFound,
    ConfigNotFound,
    EscrowClientError,
    EscrowProgramError,
    ProgramNotDeployed,
)
from dgpu.contracts_client.escrow import EscrowClient, OpenedChannel
from dgpu.contracts_client.idl import (
    ChannelAccount,
    ConfigState,
    EscrowIdl,
    default_idl,
    idl_for,
)
from dgpu.contracts_client.instructions import (
    DEFAULT_BOUNDS,
    DEFAULT_DISPUTE_WINDOW,
    DEFAULT_FEE_BPS,
    ChannelBounds,
)
from dgpu.contracts_client.pda import (
    associated_token_address,
    channel_address,
    config_address,
    vault_address,
)
from dgpu.contracts_client.settlement import (
    PACKET_DATA_SIZE,
    Settlement,
    lookup_table_entries,
    receipts_per_transaction,
    settle_instructions,
    settle_transaction,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_DISPUTE_WINDOW",
    "DEFAULT_FEE_BPS",
    "ED25519_PROGRAM_ID",
    "PACKET_DATA_SIZE",
    "AccountDecodeError",
    "BatchTooLarge",
    "ChannelAccount",
    "ChannelBounds",
    "ChannelNotFound",
    "ConfigNotFound",
    "ConfigState",
    "EscrowClient",
    "EscrowClientError",
    "EscrowIdl",
    "EscrowProgramError",
    "OpenedChannel",
    "ProgramNotDeployed",
    "Settlement",
    "SignedMessage",
    "associated_token_address",
    "channel_address",
    "config_address",
    "default_idl",
    "ed25519_instruction",
    "idl_for",
    "lookup_table_entries",
    "receipts_per_transaction",
    "settle_instructions",
    "settle_transaction",
    "vault_address",
]
