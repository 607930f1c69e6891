"""Start the local chain: a LiteSVM ledger with the escrow program and the dGPU mint,
served over JSON-RPC by hypercorn (asyncio).

The state directory holds the chain: ``ledger.sqlite`` (the journal every landed
transaction is committed to before the RPC answers; a restart, also after ``kill -9``,
restores accounts, programs, slot, clock and history from it), the keys of the mint
``mint-authority.json`` and ``mint.json`` (Solana CLI key files, mode 0600), and
``chain.json`` describing the running node. The escrow program and the mint are created
at genesis only; a restored chain keeps the ones it has.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgpu.contracts_client.chain import ChainError, LiteSVMChain, SvmLedger, escrow_program
from dgpu.contracts_client.chain.layout import is_mint, mint_decimals
from dgpu.contracts_client.localnet import DGPU_DECIMALS, TokenMint, create_mint
from dgpu.contracts_client.rpc_server.app import MAX_BODY_BYTES, create_app
from dgpu.contracts_client.rpc_server.pubsub import MAX_MESSAGE_BYTES
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from solders.keypair import Keypair
from solders.pubkey import Pubkey

log = logging.getLogger(__name__)

MINT_AUTHORITY_FILE = "mint-authority.json"
MINT_FILE = "mint.json"
INFO_FILE = "chain.json"
LEDGER_FILE = "ledger.sqlite"
AUTHORITY_LAMPORTS = 1_000 * 10**9
BIND_ATTEMPTS = 50


@dataclass(frozen=True)
class ServeConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8899
    escrow: bool = True
    max_body: int = MAX_BODY_BYTES


@dataclass(frozen=True)
class LocalChain:
    """What the local node holds: the ledger and the preloaded mint and program."""

    ledger: SvmLedger
    mint: TokenMint
    program_id: Pubkey | None


@dataclass(frozen=True)
class ServerInfo:
    rpc_url: str
    mint: Pubkey
    mint_authority: Pubkey
    mint_authority_keyfile: Path
    program_id: Pubkey | None
    decimals: int
    state_dir: Path
    genesis_hash: str = ""
    ws_url: str = ""
    restored: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "mint": str(self.mint),
            "mint_authority": str(self.mint_authority),
            "mint_authority_keyfile": str(self.mint_authority_keyfile),
            "program_id": None if self.program_id is None else str(self.program_id),
            "decimals": self.decimals,
            "state_dir": str(self.state_dir),
            "genesis_hash": self.genesis_hash,
            "ws_url": self.ws_url,
            "restored": self.restored,
        }


def _key(state_dir: Path, name: str) -> Keypair:
    path = state_dir / name
    if not path.exists():
        save_identity(Identity.generate(), path)
    return load_identity(path).to_solders()


def _wall_clock() -> int:
    return int(time.time())


def load_state_keys(state_dir: Path) -> tuple[Keypair, Keypair]:
    """The mint authority and mint keys of ``state_dir``, created on first use."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return _key(state_dir, MINT_AUTHORITY_FILE), _key(state_dir, MINT_FILE)


async def prepare_local_chain(
    authority: Keypair,
    mint_key: Keypair,
    *,
    escrow: bool = True,
    time_source: Callable[[], int] | None = _wall_clock,
    ledger_path: Path | None = None,
) -> LocalChain:
    """The ledger journaled at ``ledger_path`` (a new one, or the one restored from it;
    in memory without a path), its clock following ``time_source``, with the escrow
    program loaded and the dGPU mint ``mint_key`` created; ``authority`` mints it, holds
    SOL and is the escrow's upgrade authority (the only key that may initialize it). A
    restored chain keeps its own program and mint."""
    programs: dict[Pubkey, bytes] = {}
    program_id: Pubkey | None = None
    if escrow:
        program_id, elf = escrow_program()
        programs[program_id] = elf
    # The local chain installs the escrow with its own key as upgrade authority: it alone
    # may initialize the escrow's config (and name its admin).
    ledger = SvmLedger(
        programs=programs,
        upgrade_authority=authority.pubkey(),
        time_source=time_source,
        path=ledger_path,
    )
    chain = LiteSVMChain(ledger=ledger)
    existing = ledger.get_account(mint_key.pubkey())
    if existing is not None and is_mint(existing):
        mint = TokenMint(mint_key.pubkey(), authority, mint_decimals(existing.data))
    else:
        await chain.request_airdrop(authority.pubkey(), AUTHORITY_LAMPORTS)
        mint = await create_mint(chain, authority, mint=mint_key, decimals=DGPU_DECIMALS)
    return LocalChain(ledger, mint, program_id)


def _write_info(info: ServerInfo) -> None:
    path = info.state_dir / INFO_FILE
    path.write_text(json.dumps(info.to_json(), indent=2, sort_keys=True) + "\n")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # queue clients that come before hypercorn starts accepting
    except OSError as exc:
        sock.close()
        raise ChainError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """The RPC socket and the PubSub socket on the next port, where web3.js looks for it
    (both serve JSON-RPC over HTTP and WebSocket). Port 0 retries until a free pair."""
    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        sock = _bind(host, port)
        actual = sock.getsockname()[1]
        try:
            return sock, _bind(host, actual + 1)
        except ChainError:
            sock.close()
            if port != 0:
                raise
    raise ChainError(f"found no two free consecutive ports on {host}")


async def serve(
    config: ServeConfig,
    *,
    on_ready: Callable[[ServerInfo], None],
    shutdown_trigger: Callable[[], Awaitable[object]],
) -> None:
    """Run the local node under asyncio until ``shutdown_trigger`` returns.

    ``on_ready`` gets the node's description once the socket is bound and the mint
    exists (port 0 picks a free port; the URL carries the real one).
    """
    sock, ws_sock = _bind_pair(config.host, config.port)
    try:
        authority, mint_key = load_state_keys(config.state_dir)
        local = await prepare_local_chain(
            authority, mint_key, escrow=config.escrow, ledger_path=config.state_dir / LEDGER_FILE
        )
    except BaseException:
        sock.close()
        ws_sock.close()
        raise
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    info = ServerInfo(
        rpc_url=f"http://{host}:{port}",
        ws_url=f"ws://{host}:{port + 1}",
        mint=local.mint.address,
        mint_authority=local.mint.authority.pubkey(),
        mint_authority_keyfile=config.state_dir / MINT_AUTHORITY_FILE,
        program_id=local.program_id,
        decimals=local.mint.decimals,
        state_dir=config.state_dir,
        genesis_hash=str(local.ledger.genesis_hash),
        restored=local.ledger.restored,
    )
    _write_info(info)
    hyper = HypercornConfig()
    hyper.bind = [f"fd://{sock.detach()}", f"fd://{ws_sock.detach()}"]
    hyper.websocket_max_message_size = MAX_MESSAGE_BYTES
    hyper.accesslog = None
    hyper.errorlog = log
    hyper.graceful_timeout = 2.0
    app: Any = create_app(local.ledger, max_body=config.max_body)  # an ASGI app
    log.info("local chain on %s, mint %s", info.rpc_url, info.mint)
    on_ready(info)
    await hypercorn_serve(app, hyper, shutdown_trigger=shutdown_trigger)
