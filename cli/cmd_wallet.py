"""``dgpu wallet``: the node key's money — SOL for fees, dGPU for jobs.

    dgpu wallet balance [--json]
    dgpu wallet history [--json]          # deposits, payments, settlements, refunds
    dgpu wallet transfer TO AMOUNT [--sol] [--json]
    dgpu wallet airdrop [--sol N] [--dgpu N] [--json]   # a devnet only

Key, data dir, rpc and mint come from the flags, ``DGPU_*`` or the profile.

Where ``history`` comes from: our chain (``dgpu chain serve``) answers no
``getSignaturesForAddress``, so the history is the node's own records (each channel it
opened: deposit and open transaction, the receipts it signed, the refund it took) checked
against the chain's channel account where it still exists (what was settled to the
provider). Transfers made with other tools do not appear; the balance is always the
chain's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from dgpu.cli.nodeopts import (
    CliSetupError,
    bad_value,
    data_option,
    json_option,
    key_option,
    load_key,
    open_escrow,
    open_store,
    parse_address,
    program_id_bytes,
    program_id_option,
)
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import ProfileCommand
from dgpu.contracts_client.money import ChainEscrow
from dgpu.pricing import base_units_to_dgpu, dgpu_to_base_units
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity, address_of

LAMPORTS_PER_SOL = 1_000_000_000
T = TypeVar("T")

_rpc = click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")


def rpc_option(fn: click.decorators.FC) -> click.decorators.FC:
    """--rpc and --program-id: the chain and the escrow on it."""
    return _rpc(program_id_option(fn))


mint_option = click.option("--mint", required=True, help="The dGPU token mint (base58).")


@click.group("wallet")
def command() -> None:
    """Your node key's money: balances, history, transfers, devnet airdrops."""


def _on_chain(
    rpc_url: str,
    program_id: str | None,
    status: str,
    work: Callable[[ChainEscrow], Awaitable[T]],
    *,
    needs_program: bool = True,
) -> T:
    """``work`` over the escrow at ``program_id``; ``needs_program=False`` for what only
    reads or moves tokens and SOL (it works on a chain without the escrow, too)."""
    key = program_id_bytes(program_id)

    async def main() -> T:
        async with open_escrow(rpc_url, program_id=key, verify=needs_program) as escrow:
            with stderr.status(status):
                return await work(escrow)

    return trio.run(main)


async def _balances(escrow: ChainEscrow, identity: Identity, mint: bytes) -> dict[str, int]:
    from solders.pubkey import Pubkey

    lamports = await escrow.chain.get_balance(Pubkey.from_bytes(identity.public_key))
    tokens = await escrow.token_balance(identity.public_key, mint)
    return {"lamports": lamports, "dgpu": tokens}


@command.command("balance", cls=ProfileCommand)
@key_option
@rpc_option
@mint_option
@json_option
def balance(key_path: Path, rpc_url: str, program_id: str | None, mint: str, as_json: bool) -> None:
    """SOL (for fees) and dGPU (for jobs) held by the key."""
    identity = load_key(key_path)
    mint_key = parse_address(mint, "--mint")
    held = _on_chain(
        rpc_url, program_id, "reading balances…", lambda e: _balances(e, identity, mint_key),
        needs_program=False,
    )  # fmt: skip
    info = {"address": identity.address, "mint": mint, **held}
    if as_json:
        emit_json(info)
        return
    click.echo(f"address  {identity.address}")
    click.echo(f"SOL      {Decimal(held['lamports']).scaleb(-9)} ({held['lamports']} lamports)")
    click.echo(f"dGPU     {base_units_to_dgpu(held['dgpu'])} ({held['dgpu']} base units)")


@command.command("history", cls=ProfileCommand)
@key_option
@data_option
@rpc_option
@json_option
def history(
    key_path: Path, data_dir: Path, rpc_url: str, program_id: str | None, as_json: bool
) -> None:
    """Deposits, payments (signed receipts), settlements and refunds of this node."""
    identity = load_key(key_path)
    with open_store(data_dir) as store:
        channels = [c for c in store.channels()]
        signed = {c.channel: store.latest_receipt("renter", c.job_id) for c in channels}
        provider_settled = store.settlements()

    async def read(escrow: ChainEscrow) -> dict[bytes, Any]:
        states: dict[bytes, Any] = {}
        for c in channels:
            try:
                states[c.channel] = await escrow.read_channel(c.channel)
            except DgpuError as exc:
                states[c.channel] = exc
        return states

    states = _on_chain(rpc_url, program_id, "reading channels…", read) if channels else {}
    rows: list[dict[str, Any]] = []
    for c in sorted(channels, key=lambda c: c.updated_at):
        base = {"channel": address_of(c.channel), "job_id": c.job_id.hex()}
        rows.append({**base, "kind": "deposit", "amount": c.deposit, "tx": c.open_signature})
        receipt = signed[c.channel]
        if receipt is not None:
            rows.append({**base, "kind": "payment", "amount": receipt.cumulative, "tx": None})
        state = states.get(c.channel)
        if isinstance(state, DgpuError):
            rows.append({**base, "kind": "settlement", "amount": None, "error": str(state)})
        elif state is not None and state.settled:
            rows.append({**base, "kind": "settlement", "amount": state.settled, "tx": None})
        if c.status == "reclaimed":
            rows.append(
                {**base, "kind": "refund", "amount": c.reclaimed, "tx": c.reclaim_signature}
            )
    for s in provider_settled:  # this data dir is (also) a provider's: money received
        if s.status == "settled":
            rows.append(
                {
                    "channel": address_of(s.channel),
                    "job_id": s.job_id.hex(),
                    "kind": "received",
                    "amount": s.paid_on_chain,
                    "tx": s.signature or None,
                }
            )
    source = "node records (data dir) + channel accounts on chain; no getSignaturesForAddress"
    if as_json:
        emit_json({"address": identity.address, "source": source, "entries": rows})
        return
    stderr.print(f"history of {identity.address} (from {source})", highlight=False)
    if not rows:
        stderr.print("nothing yet")
    for row in rows:
        amount = "?" if row["amount"] is None else f"{base_units_to_dgpu(row['amount'])} dGPU"
        extra = row.get("error") or (f"tx {row['tx']}" if row.get("tx") else "")
        click.echo(f"{row['kind']:10} {amount:>22}  job {row['job_id'][:12]}…  {extra}")


@command.command("transfer", cls=ProfileCommand)
@key_option
@rpc_option
@mint_option
@click.argument("to")
@click.argument("amount")
@click.option("--sol", "in_sol", is_flag=True, help="AMOUNT is SOL, not dGPU.")
@json_option
def transfer(
    key_path: Path,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    to: str,
    amount: str,
    in_sol: bool,
    as_json: bool,
) -> None:
    """Send AMOUNT dGPU (or SOL with --sol) to the address TO."""
    identity = load_key(key_path)
    recipient = parse_address(to, "TO")
    mint_key = parse_address(mint, "--mint")
    try:
        units = dgpu_to_base_units(amount)  # SOL has 9 decimals too
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="AMOUNT") from exc
    if units <= 0:
        raise click.BadParameter("must be more than 0", param_hint="AMOUNT")

    async def send(escrow: ChainEscrow) -> str:
        from dgpu.contracts_client.localnet import (
            associated_token_address,
            create_associated_token_account,
            transfer_sol,
            transfer_tokens,
        )
        from solders.pubkey import Pubkey

        sender = identity.to_solders()
        if in_sol:
            return str(
                await transfer_sol(escrow.chain, sender, Pubkey.from_bytes(recipient), units)
            )
        mint_pk, to_pk = Pubkey.from_bytes(mint_key), Pubkey.from_bytes(recipient)
        source = associated_token_address(sender.pubkey(), mint_pk)
        dest = associated_token_address(to_pk, mint_pk)
        if await escrow.chain.get_account(dest) is None:
            await create_associated_token_account(escrow.chain, sender, to_pk, mint_pk)
        return str(await transfer_tokens(escrow.chain, sender, source, dest, units))

    try:
        signature = _on_chain(rpc_url, program_id, "sending…", send, needs_program=False)
    except DgpuError as exc:
        raise CliSetupError(f"transfer refused by the chain: {exc}") from exc
    unit = "lamports" if in_sol else "base units"
    info = {"to": to, "amount": units, "unit": unit, "signature": signature}
    if as_json:
        emit_json(info)
    else:
        stderr.print(f"sent {amount} {'SOL' if in_sol else 'dGPU'} to {to}: {signature}")


@command.command("airdrop", cls=ProfileCommand)
@key_option
@rpc_option
@mint_option
@click.option("--sol", "sol", default="10", show_default=True, help="SOL to ask for.")
@click.option("--dgpu", "dgpu_amount", default="100", show_default=True, help="dGPU to mint.")
@click.option(
    "--mint-authority",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The mint authority's key (a devnet's; its profile names it).",
)
@json_option
def airdrop(
    key_path: Path,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    sol: str,
    dgpu_amount: str,
    mint_authority: Path | None,
    as_json: bool,
) -> None:
    """On a devnet: SOL from the chain's faucet, dGPU minted by the devnet's authority."""
    identity = load_key(key_path)
    mint_key = parse_address(mint, "--mint")
    try:
        lamports, tokens = dgpu_to_base_units(sol), dgpu_to_base_units(dgpu_amount)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    authority = load_key(mint_authority) if tokens and mint_authority else None
    if tokens and authority is None:
        raise bad_value("--mint-authority", "dGPU can only be minted with the mint authority's key")

    async def drop(escrow: ChainEscrow) -> dict[str, int]:
        from dgpu.contracts_client.localnet import (
            TokenMint,
            associated_token_address,
            create_associated_token_account,
            mint_to,
        )
        from solders.pubkey import Pubkey

        owner, mint_pk = Pubkey.from_bytes(identity.public_key), Pubkey.from_bytes(mint_key)
        if lamports:
            await escrow.chain.request_airdrop(owner, lamports)
        if tokens and authority is not None:
            token_mint = TokenMint(mint_pk, authority.to_solders())
            account = associated_token_address(owner, mint_pk)
            if await escrow.chain.get_account(account) is None:
                await create_associated_token_account(
                    escrow.chain, token_mint.authority, owner, mint_pk
                )
            await mint_to(escrow.chain, token_mint, account, tokens)
        return await _balances(escrow, identity, mint_key)

    try:
        held = _on_chain(rpc_url, program_id, "airdropping…", drop, needs_program=False)
    except DgpuError as exc:
        raise CliSetupError(f"airdrop refused (is this a devnet?): {exc}") from exc
    if as_json:
        emit_json({"address": identity.address, "airdropped_lamports": lamports,
                   "minted": tokens, **held})  # fmt: skip
        return
    stderr.print(
        f"{identity.address} now holds {Decimal(held['lamports']).scaleb(-9)} SOL and"
        f" {base_units_to_dgpu(held['dgpu'])} dGPU",
        highlight=False,
    )
