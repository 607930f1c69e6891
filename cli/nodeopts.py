"""Pieces shared by ``dgpu provider`` and ``dgpu run``: keys, the chain, the network,
the coordinator, money on the command line, and signals.

This is the edge where flags become the frozen configs and injected parts of
:mod:`dgpu.node`; nothing below it reads flags or the environment.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
import trio
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import PARAM_OF, describe, from_profile
from dgpu.contracts_client.money import ChainEscrow
from dgpu.node.store import NodeStore
from dgpu.pricing import SECONDS_PER_HOUR, dgpu_to_base_units
from dgpu.pricing.units import ceil_div
from dgpu.protocol.errors import DgpuError, KeyFileError
from dgpu.protocol.identity import Identity, address_of
from dgpu.protocol.keyfile import load_identity

if TYPE_CHECKING:
    from dgpu.node.coordinator_client import CoordinatorClient
    from dgpu.node.net.libp2p import Libp2pNetwork

log = logging.getLogger(__name__)


key_option = click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The node's key file (its wallet and peer identity).",
)
data_option = click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the node keeps its database and job files.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")

DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/0"
"""Renters: every interface, any port. Nobody needs to dial a renter first, but a hole
punch (DCUtR) needs a listener on the interface facing the NAT: its dials leave from the
listen port, which a port-preserving NAT keeps (a loopback listener cannot be punched)."""
PROVIDER_LISTEN = "/ip4/0.0.0.0/tcp/4001"
"""Providers are dialled by strangers: every interface, and a fixed port (a port-preserving
NAT then maps it to the same public port, which hole punching predicts). What is
announced is the interfaces' addresses, never the wildcard (LIBP2P.md hazard 17)."""


class ChannelResult(Protocol):
    """What a per-channel chain operation reports (settlement, reclaim)."""

    @property
    def channel(self) -> bytes: ...
    @property
    def job_id(self) -> bytes: ...
    @property
    def status(self) -> str: ...


class CliSetupError(DgpuError):
    """A flag combination or a file the command cannot work with."""


def load_key(path: Path) -> Identity:
    try:
        return load_identity(path)
    except KeyFileError as exc:
        where = f"{describe('key_path')}: " if from_profile("key_path") else ""
        raise CliSetupError(f"{where}{exc} (create one with: dgpu keys new {path})") from exc


def open_store(data_dir: Path) -> NodeStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    return NodeStore.open(data_dir / "node.sqlite")


def bad_value(flag: str, message: str) -> Exception:
    """The error for a bad value of option ``flag``: click's usage error when it was
    typed, one line naming the key and the file (or the variable) when it came from a
    profile (or the environment)."""
    key = flag.lstrip("-").replace("-", "_")
    param = PARAM_OF.get(key, key)
    if from_profile(param):
        return CliSetupError(f"{describe(param)}: {message}")
    return click.BadParameter(message, param_hint=flag)


def parse_address(value: str, what: str) -> bytes:
    from solders.pubkey import Pubkey

    try:
        return bytes(Pubkey.from_string(value))
    except ValueError as exc:
        raise bad_value(what, f"{value!r} is not a base58 address") from exc


def per_second(dgpu_per_hour: str, what: str) -> int:
    """dGPU per GPU-hour (as typed) -> base units per GPU-second, rounded up."""
    try:
        hourly = dgpu_to_base_units(dgpu_per_hour)
    except (ValueError, ArithmeticError) as exc:
        raise bad_value(what, str(exc)) from exc
    return ceil_div(hourly, SECONDS_PER_HOUR)


program_id_option = click.option(
    "--program-id",
    envvar="DGPU_PROGRAM_ID",
    default=None,
    help="The escrow's program id on this chain (default: the shipped key's; give yours "
    "when the escrow was deployed under your own key with `dgpu chain deploy`).",
)


def program_id_bytes(value: str | None = None) -> bytes:
    """The escrow's program id: ``value`` (``--program-id``, ``$DGPU_PROGRAM_ID`` or a
    profile's ``program_id``) or, when none is given, the shipped key's."""
    if value is None:
        from dgpu.contracts import PROGRAM_ID

        return bytes(PROGRAM_ID)
    return parse_address(value, "--program-id")


def read_psk(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise CliSetupError(f"{path}: not a hex private-network key") from exc
    if len(key) != 32:
        raise CliSetupError(f"{path}: a private-network key is 32 bytes (64 hex characters)")
    return key


class ChainMismatch(CliSetupError):
    """The chain at the URL is not the one the node store's records are on."""

    def __init__(self, data_dir: str, recorded: str, rpc_url: str, genesis: str) -> None:
        super().__init__(
            f"this data dir's channels are on chain {recorded}, but {rpc_url} is chain"
            f" {genesis}: its channels, receipts and balances are not there (a chain"
            " restarted with a new state dir is a new chain). Point --rpc at the chain"
            f" they came from, or use another --data-dir than {data_dir} for this one"
        )
        self.recorded, self.genesis, self.rpc_url = recorded, genesis, rpc_url


@asynccontextmanager
async def open_escrow(
    rpc_url: str,
    *,
    program_id: bytes | None = None,
    store: NodeStore | None = None,
    verify: bool = True,
) -> AsyncIterator[ChainEscrow]:
    """The escrow program deployed under ``program_id`` (:func:`program_id_bytes`) through
    the JSON-RPC chain at ``rpc_url``; :class:`CliSetupError` when no executable program
    lives there (unless not ``verify``: for work that never calls the program). With
    ``store``, the chain must be the one the store's records are on (:func:`check_chain`)."""
    from dgpu.contracts_client.chain import RpcChain
    from dgpu.contracts_client.errors import ProgramNotDeployed
    from dgpu.contracts_client.escrow import EscrowClient
    from solders.pubkey import Pubkey

    chain = RpcChain(rpc_url, confirm_timeout=60.0, poll_interval=0.2)
    try:
        if store is not None:
            await check_chain(store, str(await chain.genesis_hash()), rpc_url)
        key = None if program_id is None else Pubkey.from_bytes(program_id)
        client = EscrowClient(chain, program_id=key)
        try:
            if verify:
                await client.check_deployed()
        except ProgramNotDeployed as exc:
            raise CliSetupError(f"{rpc_url}: {exc}") from exc
        yield ChainEscrow(client)
    finally:
        with trio.CancelScope(shield=True):
            await chain.aclose()


async def check_chain(store: NodeStore, genesis: str, rpc_url: str) -> None:
    """Raise :class:`ChainMismatch` when the store's records are on another chain than
    ``genesis``; record ``genesis`` when the store names none yet (or holds nothing that
    lives on a chain: a data dir that never funded anything may move)."""
    recorded = store.chain()
    if recorded is not None and recorded[0] == genesis:
        return
    if recorded is not None and store.holds_chain_records():
        raise ChainMismatch(str(Path(store.path).parent), recorded[0], rpc_url, genesis)
    if recorded is not None:
        log.info("this data dir moves from chain %s to %s (it held nothing)", recorded[0], genesis)
    store.record_chain(genesis, rpc_url=rpc_url, now=int(time.time()))


def run_on_chain(
    data_dir: Path,
    rpc_url: str,
    status: str,
    work: Callable[[NodeStore, ChainEscrow], Awaitable[Sequence[ChannelResult]]],
    *,
    program_id: bytes | None = None,
    **fields: Callable[[Any], object],
) -> list[dict[str, object]]:
    """Run ``work`` over the node's store and the escrow deployed under ``program_id`` (a
    spinner saying ``status``) and
    turn what it returns, one result per channel, into rows: ``channel`` (base58),
    ``job_id`` (hex), ``status`` and ``fields`` (name -> how to read it from a result)."""

    async def main() -> Sequence[ChannelResult]:
        with open_store(data_dir) as store:
            async with open_escrow(rpc_url, program_id=program_id, store=store) as escrow:
                with stderr.status(status):
                    return await work(store, escrow)

    return [
        {
            "channel": address_of(r.channel),
            "job_id": r.job_id.hex(),
            "status": r.status,
            **{name: read(r) for name, read in fields.items()},
        }
        for r in trio.run(main)
    ]


def print_rows(
    rows: list[dict[str, object]],
    *,
    key: str,
    as_json: bool,
    empty: str,
    line: Callable[[dict[str, object]], str],
) -> None:
    """``{key: rows}`` as JSON, or one line per row for people (``empty`` when none)."""
    if as_json:
        emit_json({key: rows})
        return
    if not rows:
        stderr.print(empty)
    for row in rows:
        stderr.print(line(row), highlight=False)


async def ensure_token_account(escrow: ChainEscrow, identity: Identity, mint: bytes) -> None:
    """Create the node's associated token account for ``mint`` if it has none: the escrow
    pays a provider only into a token account it owns, so without one every settlement of
    its receipts would be refused."""
    from dgpu.contracts_client.chain import ChainError
    from dgpu.contracts_client.localnet import (
        associated_token_address,
        create_associated_token_account,
    )
    from solders.pubkey import Pubkey

    owner, mint_key = Pubkey.from_bytes(identity.public_key), Pubkey.from_bytes(mint)
    if await escrow.chain.get_account(associated_token_address(owner, mint_key)) is not None:
        return
    try:
        await create_associated_token_account(escrow.chain, identity.to_solders(), owner, mint_key)
    except ChainError as exc:
        raise CliSetupError(
            f"cannot create this node's token account for mint {address_of(mint)} "
            f"(it needs a little SOL for rent and fees): {exc}"
        ) from exc
    log.info("created the token account for mint %s", address_of(mint))


@asynccontextmanager
async def open_network(
    identity: Identity,
    *,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk: bytes | None = None,
    default_listen: str = DEFAULT_LISTEN,
    reachable: bool = False,
) -> AsyncIterator[Libp2pNetwork]:
    """``reachable``: the node must be dialable by others (providers): check it by
    dial-back from the bootstrap peers and take relay slots on them when it is not."""
    from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network

    config = Libp2pConfig(
        listen=listen or (default_listen,),
        bootstrap=bootstrap,
        psk=psk,
        reserve_when_unreachable=reachable,
    )
    async with open_libp2p_network(identity, config) as network:
        yield network


@asynccontextmanager
async def open_coordinator(
    url: str | None, identity: Identity
) -> AsyncIterator[CoordinatorClient | None]:
    if url is None:
        yield None
        return
    from dgpu.node.coordinator_client import CoordinatorClient

    async with CoordinatorClient.open(url, identity) as client:
        yield client


async def cancel_on_signals(scope: trio.CancelScope, *, first: trio.Event | None = None) -> None:
    """SIGINT/SIGTERM: set ``first`` (a polite stop) if given, else cancel ``scope``; a
    second signal always cancels ``scope``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if first is not None and not first.is_set():
                log.warning("signal %d: stopping politely (again to force)", signum)
                first.set()
                continue
            scope.cancel()
            return


def common_network_options(fn: click.decorators.FC) -> click.decorators.FC:
    """--listen / --bootstrap / --psk-file."""
    fn = click.option(
        "--psk-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Private-network key (64 hex characters) shared by the swarm.",
    )(fn)
    fn = click.option(
        "--bootstrap",
        multiple=True,
        help="Full multiaddr (/ip4/.../tcp/.../p2p/<peer id>) of a peer to join through.",
    )(fn)
    fn = click.option(
        "--listen",
        multiple=True,
        help=f"Multiaddr to listen on (repeatable; default {DEFAULT_LISTEN} for renters, "
        f"{PROVIDER_LISTEN} for providers).",
    )(fn)
    return fn
