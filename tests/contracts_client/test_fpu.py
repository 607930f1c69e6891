"""LiteSVM leaves the x87 FPU "stack full" after running the associated-token program;
the ledger resets it after every call, so float results computed after a chain call in
the same thread are right (see :mod:`dgpu.contracts_client.chain.fpu`).

Each test checks the very first x87 user after the chain call: a poisoned FPU only
spoils one result before it drains, so a check done later would prove nothing."""

from __future__ import annotations

import os
import platform
import sqlite3
import warnings

import numpy
from dgpu.contracts_client.chain import LiteSVMChain, fpu
from dgpu.contracts_client.localnet import create_associated_token_account, create_mint
from solders.keypair import Keypair

SOL = 10**9


async def _create_an_associated_token_account() -> None:
    chain = LiteSVMChain(escrow=False)
    payer = Keypair()
    await chain.request_airdrop(payer.pubkey(), SOL)
    mint = await create_mint(chain, payer)
    await create_associated_token_account(chain, payer, Keypair().pubkey(), mint.address)


async def test_sqlite_compares_floats_right_after_an_associated_token_account() -> None:
    await _create_an_associated_token_account()
    # sqlite parses "0.2" with long double arithmetic (x87).
    assert sqlite3.connect(":memory:").execute("select 0.2 > 0.0").fetchone() == (1,)


async def test_numpy_floor_division_right_after_an_associated_token_account() -> None:
    await _create_an_associated_token_account()
    # numpy's float floor division goes through glibc's fmod (x87 fprem on x86-64).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quotient = numpy.float64(-0.075) // numpy.float64(0.025)
    assert [str(w.message) for w in caught] == []
    assert quotient == -3.0


def test_the_reset_is_mapped_wherever_there_is_an_x87() -> None:
    x86_64 = platform.machine().lower() in {"x86_64", "amd64"} and os.name == "posix"
    assert fpu.AVAILABLE is x86_64
    fpu.reset_x87()  # harmless to call at any time
    assert sqlite3.connect(":memory:").execute("select 0.2 > 0.0").fetchone() == (1,)
