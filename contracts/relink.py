"""Relink upstream-LLVM BPF objects (``ET_REL``) into a Solana SBPF v0 shared object.

LLVM's BPF backend emits eBPF relocatable objects; Solana's v0 loader wants an ``ET_DYN``
ELF with a fixed set of sections. This module merges the objects and writes that ELF::

    ehdr | phdrs | .text | .rodata | .dynamic | .dynsym | .dynstr | .rel.dyn | .shstrtab | shdrs

with every section's virtual address equal to its file offset. Relocations:

- ``R_BPF_64_64`` (``lddw`` of a text/rodata address) and ``R_BPF_64_ABS64`` (a pointer in
  rodata) are resolved here to ``MM_PROGRAM_START + vaddr``: no runtime relocation.
- ``R_BPF_64_32`` on a ``call`` to a defined function becomes a pc-relative immediate.
- ``R_BPF_64_32`` on a ``call`` to an undefined ``sol_*`` function (a syscall) becomes
  ``call -1`` plus a ``.rel.dyn`` entry against an undefined ``.dynsym`` symbol; the loader
  resolves it by the murmur3 hash of the name.

Before writing, ``.text`` is linted for encodings SBPF v0 rejects or, worse, runs
differently from eBPF (see ``SBPF.md``); the relinker refuses them with the offset.

Run as ``python -m dgpu.contracts.relink -o out.so a.o [b.o ...]``.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dgpu.contracts.errors import EscrowError, LintError, RelinkError
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

MM_PROGRAM_START: Final = 1 << 32
EM_BPF: Final = 247
ET_DYN: Final = 3
SBPF_V0_FLAGS: Final = 0

R_BPF_64_64: Final = 1
R_BPF_64_ABS64: Final = 2
R_BPF_64_32: Final = 10

SHT_PROGBITS, SHT_STRTAB, SHT_DYNAMIC, SHT_REL, SHT_DYNSYM = 1, 3, 6, 9, 11
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
PT_LOAD, PT_DYNAMIC = 1, 2
PF_X, PF_R = 1, 4
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT = 0, 5, 6, 10, 11
DT_REL, DT_RELSZ, DT_RELENT, DT_TEXTREL = 17, 18, 19, 22

SYSCALL_PREFIXES: Final = ("sol_", "abort")
_EHDR, _PHDR, _SHDR, _SYM, _REL, _DYN = 64, 56, 64, 24, 16, 16
_LDDW: Final = 0x18
_CALL: Final = 0x85
_CALLX: Final = 0x8D

# alu32 opcodes SBPF v0 runs like eBPF: mov32 imm zero-extends; le/be byte swaps.
_ALU32_SAFE: Final = frozenset({0xB4, 0xD4, 0xDC})


def _align(value: int, to: int) -> int:
    return (value + to - 1) & ~(to - 1)


def lint_text(text: bytes) -> list[str]:
    """Problems of ``.text`` for SBPF v0, each as ``".text+0x..: opcode 0x..: why"``."""
    problems: list[str] = []
    pc = 0
    while pc + 8 <= len(text):
        opcode = text[pc]
        offset = struct.unpack_from("<h", text, pc + 2)[0]
        why = _forbidden(opcode, offset)
        if why is not None:
            problems.append(f".text+{pc:#x}: opcode {opcode:#04x}: {why}")
        pc += 16 if opcode == _LDDW else 8
    if pc != len(text):
        problems.append(f".text size {len(text)} is not a whole number of instructions")
    return problems


def _forbidden(opcode: int, offset: int) -> str | None:
    cls = opcode & 0x07
    if cls == 0 and opcode != _LDDW:
        return "legacy packet load (BPF_LD abs/ind)"
    if cls == 6:
        return "jmp32 class: compile with -mcpu=v1 or v2, never v3/v4"
    if cls == 4 and opcode not in _ALU32_SAFE:
        return "alu32 op: SBPF v0 sign-extends 32-bit results where eBPF zero-extends"
    if cls == 7 and offset != 0:
        return "cpu=v4 signed div/mod or movsx: SBPF v0 would run it as the plain op"
    if opcode == 0xD7:
        return "cpu=v4 unconditional byte swap"
    if cls == 1 and (opcode & 0xE0) == 0x80:
        return "cpu=v4 sign-extending load"
    if cls == 3 and (opcode & 0xE0) == 0xC0:
        return "atomic operation: not supported by SBPF"
    if opcode == _CALLX:
        return "callx (function pointer call): not supported by this relinker"
    return None


def check_text(text: bytes) -> None:
    """Raise :class:`LintError` unless ``text`` is safe SBPF v0."""
    problems = lint_text(text)
    if problems:
        raise LintError(problems)


@dataclass
class _Object:
    name: str
    elf: Any  # elftools.elf.elffile.ELFFile (untyped library)
    placed: dict[int, tuple[str, int]] = field(default_factory=dict)  # shndx -> (region, off)


@dataclass
class _Image:
    text: bytearray = field(default_factory=bytearray)
    rodata: bytearray = field(default_factory=bytearray)
    text_off: int = 0
    rodata_off: int = 0
    syscalls: list[str] = field(default_factory=list)
    dynrels: list[tuple[int, int]] = field(default_factory=list)  # (insn file offset, symidx)

    def region(self, name: str) -> bytearray:
        return self.text if name == "text" else self.rodata

    def base(self, name: str) -> int:
        return self.text_off if name == "text" else self.rodata_off


@dataclass(frozen=True)
class _Section:
    name: str
    kind: int
    flags: int
    offset: int
    data: bytes
    link: int = 0
    info: int = 0
    entsize: int = 0
    align: int = 8


@dataclass(frozen=True)
class Program:
    """A relinked program: the ``.so`` bytes and what went into them."""

    so: bytes
    text_size: int
    rodata_size: int
    syscalls: tuple[str, ...]
    entry: int


def relink(objects: Sequence[tuple[str, bytes]], *, entry: str = "entrypoint") -> Program:
    """Link ``(name, object bytes)`` pairs into an SBPF v0 program entered at ``entry``."""
    objs = [_open(name, data) for name, data in objects]
    image = _Image()
    for obj in objs:
        _place_sections(obj, image)
    if not image.text:
        raise RelinkError("no executable code: the objects have no .text")
    header_end = _EHDR + _PHDR * 4
    image.text_off = _align(header_end, 8)
    image.rodata_off = _align(image.text_off + len(image.text), 8)
    symbols = _global_symbols(objs, image)
    for obj in objs:
        _apply_relocations(obj, image, symbols)
    check_text(bytes(image.text))
    if entry not in symbols:
        raise RelinkError(f"no global function {entry!r}: declare it without 'static'")
    so = _write_elf(image, entry, symbols[entry])
    return Program(so, len(image.text), len(image.rodata), tuple(image.syscalls), symbols[entry])


def _open(name: str, data: bytes) -> _Object:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError as exc:
        raise RelinkError(f"{name}: not an ELF file ({exc})") from exc
    if elf["e_machine"] != "EM_BPF" or elf["e_type"] != "ET_REL":
        raise RelinkError(f"{name}: not a BPF relocatable object (compile with -c -target bpf)")
    return _Object(name, elf)


def _place_sections(obj: _Object, image: _Image) -> None:
    for index, section in enumerate(obj.elf.iter_sections()):
        flags, name = section["sh_flags"], section.name
        if not flags & SHF_ALLOC or section["sh_size"] == 0:
            continue
        if name.startswith(".eh_frame"):
            raise RelinkError(
                f"{obj.name}: {name}: compile with -fno-unwind-tables "
                "-fno-asynchronous-unwind-tables"
            )
        if flags & SHF_WRITE:
            raise RelinkError(
                f"{obj.name}: writable section {name}: SBPF programs have no mutable "
                "globals (make them const, or keep state in accounts or on the heap)"
            )
        if section["sh_type"] != "SHT_PROGBITS":
            raise RelinkError(f"{obj.name}: unsupported section {name} ({section['sh_type']})")
        region = "text" if flags & SHF_EXECINSTR else "rodata"
        buf = image.region(region)
        alignment = max(8 if region == "text" else 1, section["sh_addralign"] or 1)
        buf.extend(bytes(_align(len(buf), alignment) - len(buf)))
        obj.placed[index] = (region, len(buf))
        buf.extend(section.data())


def _global_symbols(objs: Sequence[_Object], image: _Image) -> dict[str, int]:
    symbols: dict[str, int] = {}
    for obj in objs:
        for sym in obj.elf.get_section_by_name(".symtab").iter_symbols():
            bind, shndx = sym["st_info"]["bind"], sym["st_shndx"]
            if bind not in ("STB_GLOBAL", "STB_WEAK") or not isinstance(shndx, int):
                continue
            if shndx not in obj.placed:
                raise RelinkError(f"{obj.name}: global {sym.name!r} is in a non-loadable section")
            if sym.name in symbols and bind == "STB_GLOBAL":
                raise RelinkError(f"{obj.name}: duplicate global symbol {sym.name!r}")
            region, off = obj.placed[shndx]
            symbols[sym.name] = image.base(region) + off + sym["st_value"]
    return symbols


def _symbol_address(obj: _Object, sym: Any, image: _Image, symbols: dict[str, int]) -> int | None:
    shndx = sym["st_shndx"]
    if shndx == "SHN_UNDEF":
        return symbols.get(sym.name)
    if not isinstance(shndx, int) or shndx not in obj.placed:
        raise RelinkError(f"{obj.name}: symbol {sym.name!r} lives in unsupported section {shndx}")
    region, off = obj.placed[shndx]
    return int(image.base(region) + off + sym["st_value"])


def _apply_relocations(obj: _Object, image: _Image, symbols: dict[str, int]) -> None:
    symtab = obj.elf.get_section_by_name(".symtab")
    for rel_section in obj.elf.iter_sections():
        if rel_section["sh_type"] != "SHT_REL" or rel_section["sh_info"] not in obj.placed:
            continue  # relocations of debug or BTF sections: those sections are dropped
        region, section_off = obj.placed[rel_section["sh_info"]]
        buf = image.region(region)
        for rel in rel_section.iter_relocations():
            sym = symtab.get_symbol(rel["r_info_sym"])
            loc = section_off + rel["r_offset"]
            where = f"{obj.name}: {region}+{loc:#x}"
            target = _symbol_address(obj, sym, image, symbols)
            kind = rel["r_info_type"]
            if kind == R_BPF_64_64:
                if region != "text" or buf[loc] != _LDDW:
                    raise RelinkError(f"{where}: R_BPF_64_64 not on an lddw")
                if target is None:
                    raise RelinkError(f"{where}: undefined data symbol {sym.name!r}")
                addend = struct.unpack_from("<i", buf, loc + 4)[0]
                value = MM_PROGRAM_START + target + addend
                struct.pack_into("<I", buf, loc + 4, value & 0xFFFFFFFF)
                struct.pack_into("<I", buf, loc + 12, value >> 32)
            elif kind == R_BPF_64_ABS64:
                if target is None:
                    raise RelinkError(f"{where}: undefined data symbol {sym.name!r}")
                addend = struct.unpack_from("<q", buf, loc)[0]
                struct.pack_into("<Q", buf, loc, MM_PROGRAM_START + target + addend)
            elif kind == R_BPF_64_32:
                _relocate_call(buf, loc, where, sym, target, image)
            else:
                raise RelinkError(f"{where}: unsupported relocation type {kind} ({sym.name!r})")


def _relocate_call(
    buf: bytearray, loc: int, where: str, sym: Any, target: int | None, image: _Image
) -> None:
    if buf is not image.text or buf[loc] != _CALL:
        raise RelinkError(f"{where}: R_BPF_64_32 not on a call instruction")
    if target is not None:
        if sym["st_info"]["type"] == "STT_SECTION":
            # call to a static function: the immediate holds its slot in the section
            target += (struct.unpack_from("<i", buf, loc + 4)[0] + 1) * 8
        slots = (target - (image.text_off + loc + 8)) // 8
        struct.pack_into("<i", buf, loc + 4, slots)
        return
    if not sym.name.startswith(SYSCALL_PREFIXES):
        raise RelinkError(
            f"{where}: call to undefined function {sym.name!r} "
            "(an LLVM libcall such as memcpy? use the sol_* syscall instead)"
        )
    if sym.name not in image.syscalls:
        image.syscalls.append(sym.name)
    struct.pack_into("<i", buf, loc + 4, -1)
    image.dynrels.append((image.text_off + loc, 1 + image.syscalls.index(sym.name)))


def _write_elf(image: _Image, entry_name: str, entry: int) -> bytes:
    dynstr = bytearray(b"\0")

    def intern(name: str) -> int:
        off = len(dynstr)
        dynstr.extend(name.encode() + b"\0")
        return off

    dynsym = bytearray(_SYM)  # the null symbol
    for name in image.syscalls:  # STB_GLOBAL | STT_NOTYPE, undefined: a syscall
        dynsym += struct.pack("<IBBHQQ", intern(name), 0x10, 0, 0, 0, 0)
    dynsym += struct.pack("<IBBHQQ", intern(entry_name), 0x12, 0, 1, entry, 0)
    reldyn = b"".join(
        struct.pack("<QQ", off, (symidx << 32) | R_BPF_64_32) for off, symidx in image.dynrels
    )

    dynamic_off = _align(image.rodata_off + len(image.rodata), 8)
    entries = 10 if reldyn else 6
    dynsym_off = dynamic_off + _DYN * entries
    dynstr_off = dynsym_off + len(dynsym)
    reldyn_off = _align(dynstr_off + len(dynstr), 8)
    tags = [(DT_SYMTAB, dynsym_off), (DT_STRTAB, dynstr_off), (DT_STRSZ, len(dynstr))]
    tags.append((DT_SYMENT, _SYM))
    if reldyn:
        tags += [(DT_REL, reldyn_off), (DT_RELSZ, len(reldyn)), (DT_RELENT, _REL)]
        tags.append((DT_TEXTREL, 0))
    tags += [(DT_NULL, 0)] * (entries - len(tags))
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in tags)

    text = bytes(image.text)
    sections = [_Section(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, image.text_off, text)]
    if image.rodata:
        sections.append(
            _Section(".rodata", SHT_PROGBITS, SHF_ALLOC, image.rodata_off, bytes(image.rodata))
        )
    dynstr_index = len(sections) + 3  # section indexes are 1-based
    sections += [
        _Section(".dynamic", SHT_DYNAMIC, SHF_ALLOC, dynamic_off, dynamic, dynstr_index, 0, _DYN),
        _Section(
            ".dynsym", SHT_DYNSYM, SHF_ALLOC, dynsym_off, bytes(dynsym), dynstr_index, 1, _SYM
        ),
        _Section(".dynstr", SHT_STRTAB, SHF_ALLOC, dynstr_off, bytes(dynstr), align=1),
    ]
    if reldyn:
        sections.append(
            _Section(".rel.dyn", SHT_REL, SHF_ALLOC, reldyn_off, reldyn, len(sections) - 1, 0, _REL)
        )
    load_end = sections[-1].offset + len(sections[-1].data)
    shstrtab = bytearray(b"\0")
    names = []
    for name in [s.name for s in sections] + [".shstrtab"]:
        names.append(len(shstrtab))
        shstrtab.extend(name.encode() + b"\0")
    sections.append(_Section(".shstrtab", SHT_STRTAB, 0, load_end, bytes(shstrtab), align=1))
    shdr_off = _align(load_end + len(shstrtab), 8)
    count = len(sections) + 1

    out = bytearray(shdr_off + _SHDR * count)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # ELF64, LE, version 1, SysV ABI
    struct.pack_into(
        "<16sHHIQQQIHHHHHH",
        out,
        0,
        ident,
        ET_DYN,
        EM_BPF,
        1,
        entry,
        _EHDR,
        shdr_off,
        SBPF_V0_FLAGS,
        _EHDR,
        _PHDR,
        4,
        _SHDR,
        count,
        count - 1,
    )
    segments = [
        (PT_LOAD, PF_R | PF_X, image.text_off, len(image.text)),
        (PT_LOAD, PF_R, image.rodata_off, len(image.rodata)),
        (PT_LOAD, PF_R, dynamic_off, load_end - dynamic_off),
        (PT_DYNAMIC, PF_R, dynamic_off, len(dynamic)),
    ]
    for i, (kind, flags, off, size) in enumerate(segments):
        struct.pack_into(
            "<IIQQQQQQ", out, _EHDR + i * _PHDR, kind, flags, off, off, off, size, size, 8
        )
    for i, sec in enumerate(sections, 1):
        out[sec.offset : sec.offset + len(sec.data)] = sec.data
        addr = sec.offset if sec.flags & SHF_ALLOC else 0
        struct.pack_into(
            "<IIQQQQIIQQ",
            out,
            shdr_off + i * _SHDR,
            names[i - 1],
            sec.kind,
            sec.flags,
            addr,
            sec.offset,
            len(sec.data),
            sec.link,
            sec.info,
            sec.align,
            sec.entsize,
        )
    return bytes(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgpu.contracts.relink", description=__doc__)
    parser.add_argument("objects", nargs="+", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--entry", default="entrypoint")
    args = parser.parse_args(argv)
    try:
        program = relink([(str(p), p.read_bytes()) for p in args.objects], entry=args.entry)
    except EscrowError as exc:
        print(f"relink: error: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(program.so)
    print(
        f"relink: {args.output}: text={program.text_size}B rodata={program.rodata_size}B "
        f"syscalls={list(program.syscalls)} entry={program.entry:#x}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
