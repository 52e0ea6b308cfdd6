"""tests/csrc/sass_pipes.py (the per-pipe SASS counter test_sass.py uses) on a hand-written
cuobjdump-style listing: it finds the loop holding the MMA and files each opcode under its pipe."""

from __future__ import annotations

from sass_pipes import loop_with, opcode_counts, pipe_counts, pipe_of, split_functions

LISTING = """
        Function : kernel_a
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/                   IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28] ;
        /*0020*/                   SHF.R.U32.HI R2, RZ, 0x6, R0 ;
        /*0030*/                   LOP3.LUT R3, R2, 0x22002200, R0, 0xe2, !PT ;
        /*0040*/                   IMAD.SHL.U32 R4, R3, 0x40, RZ ;
        /*0050*/                   HMUL2.BF16_V2 R4, R4, R5.H0_H0 ;
        /*0060*/                   HMMA.16816.F32.BF16 R8, R4, R12, R8 ;
        /*0070*/               @!P0 BRA 0x20 ;
        /*0080*/                   PRMT R6, R8, 0x5410, R9 ;
        /*0090*/               @P1 BRA 0x80 ;
        /*00a0*/                   EXIT ;
        Function : kernel_b
        /*0000*/                   EXIT ;
"""


def test_loop_holding_the_mma_and_its_pipes():
    funcs = split_functions(LISTING)
    assert sorted(funcs) == ["kernel_a", "kernel_b"]
    sass = funcs["kernel_a"]
    span = loop_with(sass, "HMMA")
    assert span == (0x20, 0x70)  # not the PRMT loop at 0x80, which holds no MMA
    counts = pipe_counts(sass, span)
    assert counts == {"alu": 2, "fma": 2, "tensor": 1, "control": 1, "total": 6}
    ops = opcode_counts(sass, span)
    assert ops["IMAD.SHL"] == 1 and ops["HMUL2.BF16_V2"] == 1 and ops["BRA"] == 1
    assert pipe_counts(sass)["total"] == 11


def test_unknown_opcodes_are_not_misfiled():
    assert pipe_of("PRMT") == "alu" and pipe_of("IMAD") == "fma" and pipe_of("HMMA") == "tensor"
    assert pipe_of("UIADD3") == "uniform"
    assert pipe_of("FOOBAR") == "other"
