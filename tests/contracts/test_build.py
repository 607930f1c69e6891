"""The verifiable build: the committed ``.so`` is what the sources compile to, the IDL, the
generated header and the program id agree, and the relinker refuses what SBPF v0 cannot
run."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pytest
from dgpu.contracts import (
    PROGRAM_ID,
    idl_path,
    program_keypair_path,
    so_path,
    so_sha256,
    source_dir,
)
from dgpu.contracts.build import CFLAGS, HEADER, compile_object, render_header
from dgpu.contracts.errors import LintError, RelinkError
from dgpu.contracts.relink import lint_text, relink
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from solders.keypair import Keypair


def test_rebuild_reproduces_the_committed_program() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dgpu.contracts.build", "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert so_sha256() in proc.stdout


def test_recorded_sha256_is_the_program() -> None:
    assert hashlib.sha256(so_path().read_bytes()).hexdigest() == so_sha256()


def test_program_id_agrees_everywhere() -> None:
    secret = json.loads(program_keypair_path().read_text())
    assert Keypair.from_bytes(bytes(secret)).pubkey() == PROGRAM_ID
    assert json.loads(idl_path().read_text())["metadata"]["address"] == str(PROGRAM_ID)


def test_generated_header_matches_the_idl() -> None:
    idl = json.loads(idl_path().read_text())
    assert (source_dir() / HEADER).read_text() == render_header(idl)
    header = render_header(idl)
    settle = hashlib.sha256(b"global:settle").digest()[:8]
    assert f"#define IX_SETTLE 0x{int.from_bytes(settle, 'little'):016x}ULL" in header
    assert "#define ACCOUNT_CHANNEL_LEN 208" in header


def test_program_is_an_sbpf_v0_shared_object() -> None:
    with so_path().open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_DYN"
        assert elf["e_machine"] == "EM_BPF"
        assert elf["e_flags"] == 0
        names = [s.name for s in elf.iter_sections()]
        assert names.count(".text") == 1
        assert {".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn"} <= set(names)
        for section in elf.iter_sections():
            if section["sh_flags"] & 2:  # SHF_ALLOC: loaded at its file offset
                assert section["sh_addr"] == section["sh_offset"], section.name
        assert not any(s["sh_flags"] & 1 for s in elf.iter_sections())  # nothing writable
        table = elf.get_section_by_name(".dynsym")
        assert isinstance(table, SymbolTableSection)
        dynsym = {s.name for s in table.iter_symbols()}
        assert {"entrypoint", "sol_invoke_signed_c", "sol_memcmp_"} <= dynsym
    text = so_path().read_bytes()
    assert lint_text(_text_of(text)) == []


def _text_of(so: bytes) -> bytes:
    section = ELFFile(BytesIO(so)).get_section_by_name(".text")
    assert section is not None
    return bytes(section.data())


def _insn(opcode: int, offset: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", opcode, 0, offset, imm)


@pytest.mark.parametrize(
    ("insn", "why"),
    [
        (_insn(0x16), "jmp32"),  # jeq32
        (_insn(0x04, imm=1), "alu32"),  # add32
        (_insn(0x3F, offset=1), "cpu=v4 signed"),  # sdiv64
        (_insn(0xD7, imm=16), "byte swap"),
        (_insn(0x81), "sign-extending load"),  # ldxsb
        (_insn(0xDB), "atomic"),
        (_insn(0x8D), "callx"),
        (_insn(0x20), "legacy packet load"),
    ],
)
def test_lint_refuses_what_sbpf_v0_cannot_run(insn: bytes, why: str) -> None:
    problems = lint_text(_insn(0xB7, imm=1) + insn + _insn(0x95))
    assert len(problems) == 1
    assert why in problems[0]
    assert problems[0].startswith(".text+0x8:")


def test_lint_accepts_plain_code() -> None:
    lddw = struct.pack("<BBhi", 0x18, 1, 0, 5) + bytes(8)
    assert lint_text(_insn(0xB7, imm=1) + lddw + _insn(0xB4, imm=2) + _insn(0x95)) == []


def _compile(tmp_path: Path, source: str, *extra: str) -> bytes:
    (tmp_path / "escrow.c").write_text(source)
    flags = [f for f in CFLAGS if f != "-mcpu=v2"]
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "-target",
        "bpfel-freestanding",
        *flags,
        *extra,
        "-c",
        "escrow.c",
        "-o",
        "out.o",
    ]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=240)
    return (tmp_path / "out.o").read_bytes()


def test_relinker_refuses_writable_globals(tmp_path: Path) -> None:
    obj = _compile(
        tmp_path, "long counter;\nlong entrypoint(void) { return ++counter; }\n", "-mcpu=v2"
    )
    with pytest.raises(RelinkError, match="writable section"):
        relink([("counter.o", obj)])


def test_relinker_refuses_alu32_code(tmp_path: Path) -> None:
    source = "unsigned entrypoint(unsigned long long *p) { return (unsigned)p[0] * 3u + 7u; }\n"
    obj = _compile(tmp_path, source, "-mcpu=v3")
    with pytest.raises(LintError) as refused:
        relink([("alu32.o", obj)])
    assert any("alu32" in p or "jmp32" in p for p in refused.value.problems)


def test_relinker_refuses_libcalls_and_missing_entry(tmp_path: Path) -> None:
    source = (
        "void memcpy_like(char *d, const char *s);\n"
        "long f(char *d) { memcpy_like(d, d); return 0; }\n"
    )
    obj = _compile(tmp_path, source, "-mcpu=v2")
    with pytest.raises(RelinkError, match="memcpy_like"):
        relink([("libcall.o", obj)])
    obj = _compile(tmp_path, "long f(long x) { return x + 1; }\n", "-mcpu=v2")
    with pytest.raises(RelinkError, match="entrypoint"):
        relink([("noentry.o", obj)])


def test_the_sources_compile_to_the_committed_text(tmp_path: Path) -> None:
    program = relink([("escrow.o", compile_object(source_dir(), tmp_path))])
    assert program.so == so_path().read_bytes()
    assert "sol_invoke_signed_c" in program.syscalls
