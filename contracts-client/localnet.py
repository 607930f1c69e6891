"""SPL-token and SOL set-up over any :class:`~dgpu.contracts_client.chain.Chain`.

Creating the dGPU mint (9 decimals), associated token accounts, minting, and funding
wallets with SOL and tokens: used by ``dgpu chain serve``, the devnet, tests and
simulations. Instructions come from solana-py's ``spl.token`` builders and solders.
"""

from __future__ import annotations

from dataclasses import dataclass

from dgpu.contracts_client.chain import Chain, send_instructions
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import (
    CreateAccountParams,
    TransferParams,
    create_account,
    transfer,
)
from spl.token import instructions as spl
from spl.token.constants import MINT_LEN, TOKEN_PROGRAM_ID

DGPU_DECIMALS = 9
CREATE_IDEMPOTENT = bytes([1])


@dataclass(frozen=True)
class TokenMint:
    """An SPL mint and the key allowed to mint it."""

    address: Pubkey
    authority: Keypair
    decimals: int = DGPU_DECIMALS


def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    return spl.get_associated_token_address(owner, mint)


def create_associated_token_account_ix(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
    """The associated-token-account ``CreateIdempotent`` instruction (a no-op if it exists)."""
    ix = spl.create_associated_token_account(payer, owner, mint)
    return Instruction(ix.program_id, CREATE_IDEMPOTENT, ix.accounts)


async def create_mint(
    chain: Chain,
    payer: Keypair,
    *,
    authority: Keypair | None = None,
    decimals: int = DGPU_DECIMALS,
    mint: Keypair | None = None,
) -> TokenMint:
    """Create and initialize a mint (no freeze authority); ``payer`` pays the rent."""
    mint = mint or Keypair()
    authority = authority or payer
    rent = await chain.minimum_balance_for_rent_exemption(MINT_LEN)
    instructions = [
        create_account(
            CreateAccountParams(
                from_pubkey=payer.pubkey(),
                to_pubkey=mint.pubkey(),
                lamports=rent,
                space=MINT_LEN,
                owner=TOKEN_PROGRAM_ID,
            )
        ),
        spl.initialize_mint(
            spl.InitializeMintParams(
                decimals=decimals,
                program_id=TOKEN_PROGRAM_ID,
                mint=mint.pubkey(),
                mint_authority=authority.pubkey(),
                freeze_authority=None,
            )
        ),
    ]
    await send_instructions(chain, instructions, payer, [mint])
    return TokenMint(mint.pubkey(), authority, decimals)


async def create_associated_token_account(
    chain: Chain, payer: Keypair, owner: Pubkey, mint: Pubkey
) -> Pubkey:
    """Make sure ``owner``'s associated token account for ``mint`` exists; return it."""
    ix = create_associated_token_account_ix(payer.pubkey(), owner, mint)
    await send_instructions(chain, [ix], payer)
    return associated_token_address(owner, mint)


async def mint_to(
    chain: Chain,
    mint: TokenMint,
    destination: Pubkey,
    amount: int,
    *,
    payer: Keypair | None = None,
) -> Signature:
    """Mint ``amount`` base units into the token account ``destination``."""
    payer = payer or mint.authority
    ix = spl.mint_to(
        spl.MintToParams(
            program_id=TOKEN_PROGRAM_ID,
            mint=mint.address,
            dest=destination,
            mint_authority=mint.authority.pubkey(),
            amount=amount,
        )
    )
    return await send_instructions(chain, [ix], payer, [mint.authority])


async def transfer_sol(
    chain: Chain, sender: Keypair, recipient: Pubkey, lamports: int
) -> Signature:
    ix = transfer(
        TransferParams(from_pubkey=sender.pubkey(), to_pubkey=recipient, lamports=lamports)
    )
    return await send_instructions(chain, [ix], sender)


async def transfer_tokens(
    chain: Chain,
    owner: Keypair,
    source: Pubkey,
    destination: Pubkey,
    amount: int,
    *,
    payer: Keypair | None = None,
) -> Signature:
    """Move ``amount`` base units between two token accounts of the same mint."""
    ix = spl.transfer(
        spl.TransferParams(
            program_id=TOKEN_PROGRAM_ID,
            source=source,
            dest=destination,
            owner=owner.pubkey(),
            amount=amount,
        )
    )
    return await send_instructions(chain, [ix], payer or owner, [owner])


async def fund_wallet(
    chain: Chain,
    wallet: Pubkey,
    *,
    lamports: int = 0,
    mint: TokenMint | None = None,
    tokens: int = 0,
) -> Pubkey | None:
    """Airdrop ``lamports`` and, with a ``mint``, create the wallet's associated token
    account (paid by the mint authority) and mint ``tokens`` into it; returns that account."""
    if lamports > 0:
        await chain.request_airdrop(wallet, lamports)
    if mint is None:
        return None
    account = await create_associated_token_account(chain, mint.authority, wallet, mint.address)
    if tokens > 0:
        await mint_to(chain, mint, account, tokens)
    return account
