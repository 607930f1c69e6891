"""``dgpu chain serve``: a local Solana JSON-RPC node over LiteSVM.

The escrow program and a dGPU SPL mint are preloaded; the methods implemented are those
dgpu and standard clients need (see :data:`~dgpu.contracts_client.rpc_server.methods.METHODS`),
so the JSON-RPC path that talks to a real cluster is exercised here.
"""

from dgpu.contracts_client.rpc_server.app import MAX_BATCH, MAX_BODY_BYTES, create_app, handle_body
from dgpu.contracts_client.rpc_server.methods import METHODS
from dgpu.contracts_client.rpc_server.serve import (
    INFO_FILE,
    MINT_AUTHORITY_FILE,
    MINT_FILE,
    LocalChain,
    ServeConfig,
    ServerInfo,
    load_state_keys,
    prepare_local_chain,
    serve,
)

__all__ = [
    "INFO_FILE",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "METHODS",
    "MINT_AUTHORITY_FILE",
    "MINT_FILE",
    "LocalChain",
    "ServeConfig",
    "ServerInfo",
    "create_app",
    "handle_body",
    "load_state_keys",
    "prepare_local_chain",
    "serve",
]
