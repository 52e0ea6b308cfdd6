"""Count a kernel's SASS instructions by the SM90 issue pipe that executes them.

The decode GEMM's K loop is bound by instruction issue on one math pipe (Nsight Compute on the
H100: MATH_PIPE_THROTTLE is the top stall), so what matters is not the loop's instruction count
but how many of them each pipe carries: on SM90 the integer/logic pipe (ALU) and the FMA pipe
each accept one warp instruction every two cycles per scheduler, so a loop whose instructions are
spread evenly over the two can issue up to twice as fast as one that loads a single pipe.

The table below is from the CUDA/Nsight Compute pipe descriptions for SM80-SM90 (IMAD and the
packed-half arithmetic run on the FMA pipe, logic/shift/permute/compare on ALU); opcodes it does
not know land in "other" so that an unexpected mix shows up instead of being misfiled.

Used by tests/csrc/test_sass.py, and as a script on a cuobjdump listing:
    python tests/csrc/sass_pipes.py LISTING.sass [NAME_SUBSTRING]
prints every matching kernel's loop counts per pipe.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# Base opcode (before the first ".") -> pipe.
_PIPES = {
    "alu": {"LOP3", "LOP", "SHF", "SEL", "PRMT", "IADD3", "ISETP", "FSETP", "HSETP2", "PLOP3",
            "LEA", "IMNMX", "VIMNMX", "FMNMX", "FSEL", "MOV", "P2R", "R2P", "ICMP", "FLO",
            "POPC", "BMSK", "SGXT", "IABS", "CS2R"},
    "fma": {"IMAD", "IMUL", "FFMA", "FMUL", "FADD", "HFMA2", "HMUL2", "HADD2", "VIADD", "IDP",
            "IMNMX3"},
    "tensor": {"HMMA", "IMMA", "HGMMA", "QGMMA", "IGMMA"},
    "conv": {"F2FP", "F2F", "I2F", "F2I", "I2FP", "F2IP", "FRND"},
    "mem": {"LDG", "LDS", "STS", "STG", "LDGSTS", "LDSM", "LDL", "STL", "LD", "ST", "SHFL",
            "ATOMS", "ATOMG", "RED", "REDG", "LDC", "LDGDEPBAR", "DEPBAR", "MEMBAR"},
    "control": {"BRA", "BSSY", "BSYNC", "WARPSYNC", "EXIT", "NOP", "BAR", "CALL", "RET",
                "YIELD", "S2R", "S2UR", "BPT", "JMP", "WARPGROUP", "ERRBAR"},
}
_PIPE_OF = {op: pipe for pipe, ops in _PIPES.items() for op in ops}

# "        /*0f70*/                   LOP3.LUT R1, ... ;"  (cuobjdump -sass)
_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\.[\w.]+)?\s*(.*?);")


def pipe_of(opcode: str) -> str:
    """The pipe of a base opcode (no modifiers); uniform-datapath (U*) ops are "uniform"."""
    if opcode in _PIPE_OF:
        return _PIPE_OF[opcode]
    if opcode.startswith("U") and opcode[1:] in _PIPE_OF:  # UMOV, UIADD3, ULDC, ...
        return "uniform"
    return "other"


def instructions(sass: str) -> list[tuple[int, str, str]]:
    """(address, base opcode, operands) of every instruction of one function's listing."""
    out = []
    for m in _LINE.finditer(sass):
        out.append((int(m.group(1), 16), m.group(3), m.group(5)))
    return out


def loops(sass: str) -> list[tuple[int, int]]:
    """(first, last) addresses of every backward branch's range, innermost first."""
    found = []
    for addr, op, operands in instructions(sass):
        if op != "BRA":
            continue
        m = re.search(r"0x([0-9a-f]+)", operands)
        if m and int(m.group(1), 16) <= addr:
            found.append((int(m.group(1), 16), addr))
    return sorted(found, key=lambda r: r[1] - r[0])


def loop_with(sass: str, opcode: str) -> tuple[int, int]:
    """The largest loop holding `opcode` (the decode kernels' K loop holds the MMAs)."""
    ins = instructions(sass)
    best = None
    for first, last in loops(sass):
        if any(first <= a <= last and op == opcode for a, op, _ in ins):
            if best is None or last - first > best[1] - best[0]:
                best = (first, last)
    if best is None:
        raise ValueError(f"no loop holds {opcode}")
    return best


def pipe_counts(sass: str, span: tuple[int, int] | None = None) -> Counter:
    """Instructions per pipe (and "total") in [first, last], or in the whole function."""
    counts: Counter = Counter()
    for addr, op, _ in instructions(sass):
        if span is None or span[0] <= addr <= span[1]:
            counts[pipe_of(op)] += 1
            counts["total"] += 1
    return counts


def opcode_counts(sass: str, span: tuple[int, int] | None = None) -> Counter:
    """Instructions per opcode with its first modifier (IMAD.SHL, LOP3.LUT, ...) in the span."""
    counts: Counter = Counter()
    for m in _LINE.finditer(sass):
        addr = int(m.group(1), 16)
        if span is None or span[0] <= addr <= span[1]:
            mod = (m.group(4) or "").split(".")
            counts[m.group(3) + ("." + mod[1] if len(mod) > 1 and mod[1] else "")] += 1
    return counts


def split_functions(listing: str) -> dict[str, str]:
    """{mangled name: its SASS} of a cuobjdump -sass listing (one arch)."""
    out: dict[str, str] = {}
    name = None
    for line in listing.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            name = m.group(1)
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def main(argv: list[str]) -> None:
    listing = open(argv[1]).read()
    marker = argv[2] if len(argv) > 2 else "decode_gemm_kernel"
    for name, sass in split_functions(listing).items():
        if marker not in name:
            continue
        span = loop_with(sass, "HMMA")
        counts = pipe_counts(sass, span)
        print(name)
        print("  loop", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        print("  ", " ".join(f"{k}={v}" for k, v in opcode_counts(sass, span).most_common()))


if __name__ == "__main__":
    main(sys.argv)
