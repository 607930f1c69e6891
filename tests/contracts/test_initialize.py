"""``initialize`` belongs to the program's upgrade authority, read from its ProgramData.

Before, whoever called ``initialize`` first became the admin: a watcher of the deploy could
take the seat. Now only the key in the ProgramData account's authority field may, and not
after the authority is revoked (the loader then clears the flag but leaves the key bytes).
"""

from __future__ import annotations

from dgpu.contracts import PROGRAM_ID, so_path
from dgpu.contracts_client.instructions import initialize_ix
from dgpu.contracts_client.pda import config_address, program_data_address
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from tests.contracts.support import World, expect_refused, make_world, with_meta

AUTHORITY, PROGRAM_DATA = 1, 3  # account indices of initialize


def _initialize(world: World, authority: Pubkey, **kw: object) -> Instruction:
    return initialize_ix(
        authority,
        treasury=world.treasury.pubkey,
        mints=[world.mint.address],
        **kw,  # type: ignore[arg-type]
    )


async def _no_config(world: World) -> None:
    assert await world.chain.get_account(config_address(PROGRAM_ID)) is None


async def test_initialize_by_anyone_but_the_upgrade_authority_is_refused() -> None:
    world = await make_world(initialize=False)
    stranger = await world.party("stranger")
    ix = _initialize(world, stranger.pubkey)
    await expect_refused(world, "NotUpgradeAuthority", world.send([ix], stranger.keypair))
    # naming the real authority without its signature does not help either
    ix = with_meta(
        _initialize(world, world.admin.pubkey(), payer=stranger.pubkey),
        AUTHORITY,
        is_signer=False,
    )
    await expect_refused(world, "MissingSignature", world.send_unchecked([ix], stranger.keypair))
    await _no_config(world)


async def test_the_upgrade_authority_initializes_for_an_admin_it_names() -> None:
    world = await make_world(initialize=False)
    payer = await world.party("payer")
    admin = Keypair()
    ix = _initialize(world, world.admin.pubkey(), admin=admin.pubkey(), payer=payer.pubkey)
    await world.send([ix], payer.keypair, world.admin)
    config = await world.client.read_config()
    assert config.admin == admin.pubkey()
    assert config.settler == admin.pubkey()
    assert config.mints == (world.mint.address,)


async def test_a_revoked_upgrade_authority_cannot_initialize() -> None:
    world = await make_world(initialize=False)
    elf = so_path().read_bytes()
    # the loader leaves the old key in bytes 13..45 with the flag at 0
    world.chain.ledger.install_program(
        PROGRAM_ID, elf, upgrade_authority=world.admin.pubkey(), revoked=True
    )
    account = await world.chain.get_account(program_data_address(PROGRAM_ID))
    assert account is not None
    assert bytes(account.data)[12] == 0 and bytes(account.data)[13:45] == bytes(
        world.admin.pubkey()
    )
    ix = _initialize(world, world.admin.pubkey())
    await expect_refused(world, "NotUpgradeAuthority", world.send([ix], world.admin))
    await _no_config(world)


async def test_another_programs_program_data_is_refused() -> None:
    """The attacker deploys any program of its own (here the escrow again) and passes that
    ProgramData, where it is the authority."""
    world = await make_world(initialize=False)
    stranger = await world.party("stranger")
    theirs = Keypair().pubkey()
    world.chain.ledger.install_program(
        theirs, so_path().read_bytes(), upgrade_authority=stranger.pubkey
    )
    ix = with_meta(
        _initialize(world, stranger.pubkey), PROGRAM_DATA, pubkey=program_data_address(theirs)
    )
    await expect_refused(world, "BadProgramData", world.send([ix], stranger.keypair))
    # an account that is not a ProgramData at all
    ix = with_meta(_initialize(world, stranger.pubkey), PROGRAM_DATA, pubkey=stranger.token)
    await expect_refused(world, "BadProgramData", world.send([ix], stranger.keypair))
    await _no_config(world)
