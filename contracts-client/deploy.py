"""Deploy a program through the upgradeable BPF loader (loader v3), as ``solana program
deploy`` does, over any :class:`~dgpu.contracts_client.chain.Chain`.

Steps: create a buffer account and ``InitializeBuffer`` (authority = the payer), ``Write``
the ELF in chunks that fit a packet, then in one transaction create the program account
and ``DeployWithMaxDataLen`` (ProgramData sized for twice the ELF, so a larger build can
be deployed later without ``ExtendProgram``). The deployed bytes are read back from
ProgramData and compared with the ELF before success is reported.

Neither solders nor solana-py has loader-v3 instruction helpers, so they are packed here
(bincode: a u32 LE tag, then the fields). Layouts: ``CHAIN.md`` of the design notes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from dgpu.contracts_client.chain import Chain, ChainError, send_instructions
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account

LOADER_V3 = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")
SYSVAR_RENT = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
SYSVAR_CLOCK = Pubkey.from_string("SysvarC1ock11111111111111111111111111111111")
BUFFER_META = 37  # tag u32 | Option<Pubkey>
PROGRAM_SIZE = 36  # tag u32 | ProgramData address
PROGRAMDATA_META = 45  # tag u32 | slot u64 | Option<Pubkey>
PACKET_DATA_SIZE = 1232
# A Write with the payer as buffer authority: signatures, header, three keys, blockhash,
# instruction count, the instruction (program index, 2 account indexes, data length,
# tag + offset + length): 1,012 bytes of ELF per transaction.
WRITE_CHUNK = PACKET_DATA_SIZE - (1 + 64) - 3 - (1 + 32 * 3) - 32 - 1 - (1 + 1 + 2 + 2 + 16)
_INITIALIZE_BUFFER, _WRITE, _DEPLOY_WITH_MAX_DATA_LEN = 0, 1, 2


class DeployError(ChainError):
    """The program could not be deployed, or what is deployed is not what was asked."""


def programdata_address(program_id: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([bytes(program_id)], LOADER_V3)[0]


def ix_initialize_buffer(buffer: Pubkey, authority: Pubkey) -> Instruction:
    metas = [AccountMeta(buffer, False, True), AccountMeta(authority, False, False)]
    return Instruction(LOADER_V3, struct.pack("<I", _INITIALIZE_BUFFER), metas)


def ix_write(buffer: Pubkey, authority: Pubkey, offset: int, chunk: bytes) -> Instruction:
    data = struct.pack("<IIQ", _WRITE, offset, len(chunk)) + chunk
    metas = [AccountMeta(buffer, False, True), AccountMeta(authority, True, False)]
    return Instruction(LOADER_V3, data, metas)


def ix_deploy_with_max_data_len(
    payer: Pubkey, program: Pubkey, buffer: Pubkey, authority: Pubkey, max_data_len: int
) -> Instruction:
    metas = [
        AccountMeta(payer, True, True),
        AccountMeta(programdata_address(program), False, True),
        AccountMeta(program, False, True),
        AccountMeta(buffer, False, True),
        AccountMeta(SYSVAR_RENT, False, False),
        AccountMeta(SYSVAR_CLOCK, False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        AccountMeta(authority, True, False),
    ]
    return Instruction(
        LOADER_V3, struct.pack("<IQ", _DEPLOY_WITH_MAX_DATA_LEN, max_data_len), metas
    )


@dataclass(frozen=True)
class ProgramData:
    """The parsed ProgramData account of a loader-v3 program."""

    slot: int
    authority: Pubkey | None
    elf: bytes


def parse_programdata(data: bytes) -> ProgramData:
    if len(data) < PROGRAMDATA_META or data[:4] != struct.pack("<I", 3):
        raise DeployError("not a loader-v3 ProgramData account")
    (slot,) = struct.unpack_from("<Q", data, 4)
    # byte 12 says whether an authority is set; after revocation 13..45 keep the old key
    authority = Pubkey.from_bytes(data[13:45]) if data[12] == 1 else None
    return ProgramData(slot, authority, data[PROGRAMDATA_META:])


@dataclass(frozen=True)
class Deployment:
    program_id: Pubkey
    programdata: Pubkey
    authority: Pubkey | None
    sha256: str
    loader: str = "bpf-loader-upgradeable (v3)"
    already_deployed: bool = False
    signatures: tuple[Signature, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "program_id": str(self.program_id),
            "programdata": str(self.programdata),
            "authority": None if self.authority is None else str(self.authority),
            "loader": self.loader,
            "sha256": self.sha256,
            "already_deployed": self.already_deployed,
            "signatures": [str(s) for s in self.signatures],
        }


async def read_deployed(chain: Chain, program_id: Pubkey) -> ProgramData | None:
    """The ProgramData of ``program_id`` if it is a loader-v3 program, else None."""
    program = await chain.get_account(program_id)
    if program is None:
        return None
    data = bytes(program.data)
    if program.owner != LOADER_V3 or len(data) < PROGRAM_SIZE or data[:4] != b"\x02\0\0\0":
        raise DeployError(
            f"{program_id} exists but is not a loader-v3 program (owner {program.owner})"
        )
    programdata = await chain.get_account(Pubkey.from_bytes(data[4:36]))
    if programdata is None:
        raise DeployError(f"{program_id}: its ProgramData account is missing")
    return parse_programdata(bytes(programdata.data))


async def deploy_program(
    chain: Chain, payer: Keypair, program: Keypair, elf: bytes, *, max_len_factor: int = 2
) -> Deployment:
    """Deploy ``elf`` at ``program``'s address with ``payer`` as fee payer and upgrade
    authority; idempotent when the same bytes are already there (``already_deployed``)."""
    sha = hashlib.sha256(elf).hexdigest()
    program_id = program.pubkey()
    programdata = programdata_address(program_id)
    existing = await read_deployed(chain, program_id)
    if existing is not None:
        if existing.elf[: len(elf)] != elf or any(existing.elf[len(elf) :]):
            raise DeployError(
                f"{program_id} is deployed with other bytes; upgrading is not supported here"
            )
        return Deployment(program_id, programdata, existing.authority, sha, already_deployed=True)

    signatures: list[Signature] = []
    buffer = Keypair()
    buffer_len = BUFFER_META + len(elf)
    rent = await chain.minimum_balance_for_rent_exemption(buffer_len)
    create_buffer = create_account(
        CreateAccountParams(
            from_pubkey=payer.pubkey(),
            to_pubkey=buffer.pubkey(),
            lamports=rent,
            space=buffer_len,
            owner=LOADER_V3,
        )
    )
    init = ix_initialize_buffer(buffer.pubkey(), payer.pubkey())
    signatures.append(await send_instructions(chain, [create_buffer, init], payer, [buffer]))
    for offset in range(0, len(elf), WRITE_CHUNK):
        chunk = elf[offset : offset + WRITE_CHUNK]
        write = ix_write(buffer.pubkey(), payer.pubkey(), offset, chunk)
        signatures.append(await send_instructions(chain, [write], payer))

    program_rent = await chain.minimum_balance_for_rent_exemption(PROGRAM_SIZE)
    create_program = create_account(
        CreateAccountParams(
            from_pubkey=payer.pubkey(),
            to_pubkey=program_id,
            lamports=program_rent,
            space=PROGRAM_SIZE,
            owner=LOADER_V3,
        )
    )
    deploy = ix_deploy_with_max_data_len(
        payer.pubkey(), program_id, buffer.pubkey(), payer.pubkey(), max_len_factor * len(elf)
    )
    signatures.append(await send_instructions(chain, [create_program, deploy], payer, [program]))

    deployed = await read_deployed(chain, program_id)
    if deployed is None or deployed.elf[: len(elf)] != elf:
        raise DeployError(f"{program_id}: the deployed bytes differ from the ELF (sha256 {sha})")
    return Deployment(
        program_id, programdata, deployed.authority, sha, signatures=tuple(signatures)
    )


async def deploy_escrow(
    chain: Chain, payer: Keypair, *, program: Keypair | None = None
) -> Deployment:
    """Deploy the escrow shipped in :mod:`dgpu.contracts` (its ``.so`` checked against
    the recorded sha256) at ``program``'s address, by default the shipped program key."""
    contracts = importlib.import_module("dgpu.contracts")
    elf = contracts.so_path().read_bytes()
    if hashlib.sha256(elf).hexdigest() != contracts.so_sha256():
        raise DeployError(f"{contracts.so_path()} does not match its recorded sha256")
    if program is None:
        # the shipped program key is public on purpose (mode 0644): read it directly
        secret = json.loads(contracts.program_keypair_path().read_text())
        program = Keypair.from_bytes(bytes(secret))
    return await deploy_program(chain, payer, program, elf)
