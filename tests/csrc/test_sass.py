"""The built extension's SASS holds the instructions the SM100/SM120 paths exist for.

These paths cannot run here (no Blackwell GPU); this is the proof that they were compiled to the
FP4 tensor-core and E2M1-conversion instructions rather than to a fallback. Skips only when the
extension is not built; an arch missing from the build skips that arch's checks with the reason.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nvfp4_kernels import _extension

C = _extension.extension()
pytestmark = pytest.mark.skipif(C is None, reason=f"extension not built: {_extension.why_missing()}")

# Exact opcodes, read from cuobjdump 13.x output of this build:
# SM120 warp-level block-scaled MMA: m16n8k64, f32 accumulate, E2M1 x E2M1, UE4M3 scale per 16.
SM120_FP4_MMA = "OMMA.SF.16864.F32.E2M1.E2M1.UE4M3.4X"
# SM100 tcgen05 block-scaled FP4 MMA (scale vector 4X = one scale per 16 values); the 2-SM
# configuration issues the .2CTA form.
SM100_FP4_MMA = re.compile(r"\bUTCOMMA(\.2CTA)?\.4X\b")
# cvt.rn.satfinite.e2m1x2.f32 (two float32 -> two E2M1 codes in one byte): 8 per 16-value block,
# 16 per quantize kernel (two blocks per thread).
HW_E2M1 = re.compile(r"\bF2FP\.SATFINITE\.E2M1\.F32\.PACK_AB_MERGE_C\b")
GEMM_CONFIGS_PER_ARCH = 3
QUANTIZE = "15quantize_kernel"  # mangled name; a plain "quantize_kernel" also matches dequantize
COMPUTED_SCALE_QUANTIZE = "30quantize_computed_scale_kernel"
AMAX = "11amax_kernel"


def _cuobjdump() -> str:
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:  # pip install nvidia-cuda-cuobjdump puts it under nvidia/cu13/bin
        import nvidia
        for root in nvidia.__path__:
            for cand in Path(root).glob("cu*/bin/cuobjdump"):
                return str(cand)
    except ImportError:
        pass
    pytest.fail("extension is built but cuobjdump is not found: pip install "
                "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm (or put the CUDA toolkit on PATH)")


@functools.cache
def _sass() -> dict[str, dict[str, str]]:
    """{arch: {mangled function name: its SASS}} for the whole extension."""
    tool = _cuobjdump()
    env = dict(os.environ)
    env["PATH"] = f"{Path(tool).parent}{os.pathsep}{env.get('PATH', '')}"  # cuobjdump runs nvdisasm
    text = subprocess.run([tool, "-sass", C.__file__], capture_output=True, text=True, check=True,
                          env=env).stdout
    out: dict[str, dict[str, str]] = {}
    arch, name = None, None
    for line in text.splitlines():
        m = re.match(r"\s*arch = (sm_\w+)", line)
        if m:
            arch, name = m.group(1), None
            out.setdefault(arch, {})
            continue
        m = re.match(r"\s*Function : (\S+)", line)
        if m and arch:
            name = m.group(1)
            out[arch][name] = ""
            continue
        if arch and name:
            out[arch][name] += line + "\n"
    return out


def _functions(arch: str, marker: str) -> dict[str, str]:
    if arch not in C.COMPILED_ARCHS:
        pytest.skip(f"this build has no {arch} (archs: {list(C.COMPILED_ARCHS)})")
    sass = _sass()
    assert arch in sass, f"cuobjdump shows no {arch} code; it has {sorted(sass)}"
    return {n: s for n, s in sass[arch].items() if marker in n}


def test_sm120_gemm_uses_block_scaled_fp4_mma():
    kernels = _functions("sm_120a", "GemmUniversal")
    assert len(kernels) == GEMM_CONFIGS_PER_ARCH, sorted(kernels)
    for name, sass in kernels.items():
        assert SM120_FP4_MMA in sass, f"{name[:120]}... has no {SM120_FP4_MMA}"


def test_sm100_gemm_uses_tcgen05_block_scaled_fp4_mma():
    kernels = _functions("sm_100a", "GemmUniversal")
    assert len(kernels) == GEMM_CONFIGS_PER_ARCH, sorted(kernels)
    forms = set()
    for name, sass in kernels.items():
        found = SM100_FP4_MMA.findall(sass)
        assert found, f"{name[:120]}... has no UTCOMMA.4X (tcgen05 block-scaled FP4 MMA)"
        forms.update(found)
    assert forms == {"", ".2CTA"}, f"expected 1-SM and 2-SM MMA forms, got {forms}"


@pytest.mark.parametrize("marker", [QUANTIZE, COMPUTED_SCALE_QUANTIZE])
@pytest.mark.parametrize("arch", ["sm_100a", "sm_120a"])
def test_blackwell_quantize_uses_hardware_e2m1(arch, marker):
    kernels = _functions(arch, marker)
    assert len(kernels) == 6, sorted(kernels)  # bf16, fp16, fp32 inputs x vector/scalar loads
    for name, sass in kernels.items():
        n = len(HW_E2M1.findall(sass))
        # one per pair: 8 per 16-value block, two blocks per thread (quantize.cuh)
        assert n == 16, f"{arch} {name}: {n} hardware E2M1 conversions, expected 16"


@pytest.mark.parametrize("marker", [QUANTIZE, COMPUTED_SCALE_QUANTIZE])
def test_sm90_quantize_uses_bit_manipulation(marker):
    """No E2M1 instruction exists on sm_90a: the encode is nvfp4/e2m1_encode.h's, whose FFMA by
    2^22 rounds each value onto the E2M1 grid (16 per block, two blocks per thread: 32 in the
    fast path); no spills."""
    kernels = _functions("sm_90a", marker)
    assert len(kernels) == 6, sorted(kernels)  # bf16, fp16, fp32 inputs x vector/scalar loads
    for name, sass in kernels.items():
        assert "E2M1" not in sass, f"sm_90a {name} unexpectedly has an E2M1 instruction"
        n = len(re.findall(r"\bFFMA R\d+, R\d+(?:\.reuse)?, 4194304, R\d+", sass))
        assert n == 32, f"sm_90a {name}: {n} FFMA-by-2^22 roundings, expected 32"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"


def test_sm90_computed_scale_kernels_vectorized_one_atomic_no_spills():
    """csrc/include/nvfp4/quantize.cuh, computed global scale: the amax pass uses 16-byte loads
    in its vector variants and sends one atomic max per block; neither kernel spills."""
    amax = _functions("sm_90a", AMAX)
    assert len(amax) == 6, sorted(amax)  # bf16, fp16, fp32 inputs x vector/scalar loads
    for name, sass in amax.items():
        assert ("LDG.E.128" in sass) == ("Lb1E" in name), f"{name}: 16-byte loads iff VEC"
        assert len(re.findall(r"\bREDG\.E\.MAX\b", sass)) == 1, f"{name}: one atomic per block"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"
    quantize = _functions("sm_90a", COMPUTED_SCALE_QUANTIZE)
    assert len(quantize) == 6, sorted(quantize)
    for name, sass in quantize.items():
        assert "E2M1" not in sass, f"sm_90a {name} unexpectedly has an E2M1 instruction"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"


def test_gemm_kernels_only_in_their_arch():
    for arch in C.COMPILED_ARCHS:
        if arch in ("sm_100a", "sm_120a"):
            continue
        assert not _functions(arch, "GemmUniversal"), f"{arch} has GEMM kernels"


def test_sm90_dequantize_is_vectorized_and_spill_free():
    """csrc/include/nvfp4/dequantize.cuh: 32-bit word loads, one 16-byte store per word (bf16 and
    fp16; float32 two; e4m3 one 8-byte store), fp16x2 multiplies for the scale, no local memory.
    Plain kernels (lut * s / gs): bf16/fp16/fp32 x swizzled/linear x 32/64-bit offsets; scaled
    ones (the prefill route's lut * s * factor) add e4m3 and convert with F2FP to e4m3 pairs."""
    kernels = _functions("sm_90a", "dequantize_kernel")
    plain = {n: s for n, s in kernels.items() if re.search(r"Lb[01]ELb0E", n)}
    scaled = {n: s for n, s in kernels.items() if re.search(r"Lb[01]ELb1E", n)}
    assert len(plain) == 12 and len(scaled) == 16, sorted(kernels)
    assert not any("fp8" in name for name in plain), sorted(plain)
    for name, sass in kernels.items():
        wide = "STG.E.64" if "fp8_e4m3" in name else "STG.E.128"
        assert wide in sass, f"{name}: no {wide} stores"
        assert re.search(r"\bHMUL2\b", sass), f"{name}: no packed fp16 scale multiply"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"
        if "fp8_e4m3" in name:
            assert re.search(r"\bF2FP\.SATFINITE\.E4M3\.F32\.PACK_AB", sass), \
                f"{name}: no hardware e4m3 conversion"


def test_sm90_decode_gemm_is_mma_and_spill_free_and_word_decode_unloads_alu():
    """csrc/include/nvfp4/decode_gemm.cuh: every instantiation (3 activation kinds x 2 token
    tiles x the launch shapes of csrc/gemm_decode.cu) runs mma.sync m16n8k16 with fp32
    accumulation and keeps everything in registers. The word-decode shapes (Shape::WORD_DECODE
    with Shape::LEAN; issue slots on the integer/logic pipe are what the K loop is short of)
    carry fewer ALU-pipe instructions and fewer instructions in all in their K loop than the
    same shape without them (tests/csrc/sass_pipes.py counts them)."""
    from sass_pipes import loop_with, pipe_counts

    kernels = _functions("sm_90a", "decode_gemm_kernel")
    assert C.DECODE_GEMM_VARIANTS == 6
    # Per activation kind 11 launch shapes: 6 for one token tile, 5 for two (variants share
    # some; the default picks between an 8-warp shape and a 7- or 6-warp one).
    assert len(kernels) == 3 * 11, sorted(kernels)
    # Shape<KW, STAGES, MIN_BLOCKS, WT, ASYNC, ACT_AHEAD, WORD_DECODE, LEAN>
    shape = re.compile(r"ShapeILi\d+ELi\d+ELi\d+ELi\d+ELb[01]ELb[01]ELb([01])ELb([01])E")
    word = {n: s for n, s in kernels.items() if shape.search(n).group(1) == "1"}
    assert len(word) == 3 * 2, sorted(kernels)  # one token tile: 8 and 7 warps
    for name, sass in kernels.items():
        assert re.search(r"\bHMMA\.16816\.F32\b", sass), f"{name}: no m16n8k16 MMA"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"
    compared = 0
    for name, sass in word.items():
        m = shape.search(name)
        twin = name[:m.start(1)] + "0ELb0" + name[m.end(2):]  # same shape, neither option
        if twin not in kernels:  # the 7-warp shape is built with the word decode only
            continue
        new = pipe_counts(sass, loop_with(sass, "HMMA"))
        old = pipe_counts(kernels[twin], loop_with(kernels[twin], "HMMA"))
        assert new["alu"] < old["alu"] and new["total"] < old["total"], (name, new, old)
        compared += 1
    assert compared == 3, sorted(word)


def test_sm90_mid_gemm_is_mma_cp_async_and_spill_free():
    """csrc/include/nvfp4/mid_gemm.cuh: every instantiation (4 token-tile counts x (3 activation
    kinds x 4 launch shapes + the permute-ahead shape of the 2 16-bit kinds; packed activations
    always decode ahead)) runs mma.sync m16n8k16 with fp32 accumulation, streams 16-byte cp.async
    copies into its shared-memory ring, and keeps everything in registers."""
    kernels = _functions("sm_90a", "mid_gemm_kernel")
    assert C.MID_GEMM_VARIANTS == 5
    assert len(kernels) == 4 * (3 * 4 + 2), sorted(kernels)
    for name, sass in kernels.items():
        assert re.search(r"\bHMMA\.16816\.F32\b", sass), f"{name}: no m16n8k16 MMA"
        assert "LDGSTS.E.BYPASS.128" in sass, f"{name}: no 16-byte cp.async"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"


def test_sm90_wgmma_gemm_is_hgmma_cp_async_and_spill_free():
    """csrc/include/nvfp4/wgmma_gemm.cuh: every instantiation (2 activation dtypes x 39 (token
    tile, launch shape) pairs: the 4 token tiles of the one-tile shapes of variants 0, 1, 4, 5,
    8 and 9, the 3 up to 128 of variants 2, 3, 6 and 10, and variant 7's three-warpgroup shapes
    at 32, 64 (two tiles) and 128 (one tile); variant 11 runs variant 2's and 0's kernels)
    issues eight warpgroup MMAs per 64-row tile and
    128-wide K chunk, m64 x (token tile) x k16 with fp32 accumulation and the A operand from
    registers (a register, not a descriptor, after the accumulator), streams 16-byte cp.async
    copies into its ring, and keeps everything in registers. After each k16 step it leaves the
    shape's DEPTH groups in flight (one wait_group DEPTH per step; only full drains otherwise):
    ptxas, when it cannot prove the in-flight A registers untouched, serializes the MMAs with a
    wait 0 after each (warning C7513), which this catches. Hopper only: no other target has
    it."""
    kernels = _functions("sm_90a", "wgmma_gemm_kernel")
    assert C.WGMMA_GEMM_VARIANTS == 12
    assert len(kernels) == 2 * (6 * 4 + 4 * 3 + 3), sorted(kernels)
    for name, sass in kernels.items():
        shape = re.search(r"Li(\d+)ENS0_5ShapeILi[23]ELi(\d)ELi\d+ELb[01]ELi(\d)E", name)
        assert shape, name
        tile, tiles, depth = shape.group(1), int(shape.group(2)), shape.group(3)
        mma = re.findall(rf"\bHGMMA\.64x{tile}x16\.F32(?:\.BF16)? R\d+, R\d+, gdesc", sass)
        assert len(mma) == 8 * tiles, f"{name}: {len(mma)} register-A HGMMA, expected {8 * tiles}"
        waits = re.findall(r"\bWARPGROUP\.DEPBAR\.LE gsb0, 0x(\d+)", sass)
        assert waits.count(depth) == 8, f"{name}: MMA waits {waits}, expected 8 x {depth}"
        drains = [w for w in waits if w != depth]
        assert set(drains) <= {"0"} and len(drains) <= 2, f"{name}: MMA waits {waits}"
        assert "LDGSTS.E.BYPASS.128" in sass, f"{name}: no 16-byte cp.async"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"
    # The pass that pre-permutes the activations (variants 8-10): 16-byte loads and stores.
    prepermute = _functions("sm_90a", "prepermute_kernel")
    assert len(prepermute) == 1, sorted(prepermute)
    for name, sass in prepermute.items():
        assert "LDG.E.128" in sass and "STG.E.128" in sass, f"{name}: not 16-byte accesses"
        assert not re.search(r"\b(LDL|STL)\b", sass), f"{name}: local memory (spills)"
    for arch in C.COMPILED_ARCHS:
        if arch != "sm_90a":
            assert not _functions(arch, "wgmma_gemm_kernel"), f"{arch} has the wgmma GEMM"
