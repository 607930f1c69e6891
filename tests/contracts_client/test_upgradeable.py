"""The loader-v3 fixture writes what a deploy leaves: ProgramData, then an executable
Program pointing at it; the escrow runs from it."""

from __future__ import annotations

import pytest
from dgpu.contracts import PROGRAM_ID, so_path
from dgpu.contracts_client.chain import ChainError, LiteSVMChain, SvmLedger
from dgpu.contracts_client.chain.upgradeable import (
    PROGRAM_DATA_META_LEN,
    program_bytes,
    upgrade_authority_of,
)
from dgpu.contracts_client.pda import BPF_LOADER_UPGRADEABLE_ID, program_data_address
from solders.keypair import Keypair


async def test_the_chain_installs_the_escrow_as_an_upgradeable_program() -> None:
    authority = Keypair()
    chain = LiteSVMChain(upgrade_authority=authority)
    assert chain.upgrade_authority is authority
    program = await chain.get_account(PROGRAM_ID)
    data = await chain.get_account(program_data_address(PROGRAM_ID))
    assert program is not None and data is not None
    assert program.executable and program.owner == BPF_LOADER_UPGRADEABLE_ID
    assert bytes(program.data) == program_bytes(PROGRAM_ID)
    assert data.owner == BPF_LOADER_UPGRADEABLE_ID
    assert upgrade_authority_of(data) == authority.pubkey()
    assert len(data.data) > PROGRAM_DATA_META_LEN


def test_a_revoked_authority_reads_as_none() -> None:
    ledger = SvmLedger()
    key = Keypair().pubkey()
    ledger.install_program(PROGRAM_ID, so_path().read_bytes(), upgrade_authority=key, revoked=True)
    data = ledger.get_account(program_data_address(PROGRAM_ID))
    assert data is not None
    assert upgrade_authority_of(data) is None
    assert bytes(data.data)[13:45] == bytes(key)  # the loader's trap: the key bytes stay


def test_an_elf_that_does_not_load_is_a_chain_error() -> None:
    with pytest.raises(ChainError, match="could not be loaded"):
        SvmLedger().install_program(PROGRAM_ID, b"\x7fELF no", upgrade_authority=None)
