"""Decode-size GEMM (M <= a few tokens) with NVFP4 weights: a GEMV on the FMA units.

D[m, n] = alpha[n] * sum_k A[m, k] * B_hat[n, k] (+ bias[n]), fp32 accumulation.

At M = 1 the GEMM reads every weight once and does one multiply-add with it, so the time is the
time to stream 4.5-bit weights and decode them (DEVICE.md: about three integer operations per
weight at the memory floor). A tensor-core tile would spend 7/8 or 15/16 of its work on padding
tokens and needs the decoded tile in the MMA's register layout; here every weight is decoded
once per group of up to 4 tokens and the tiles stay plain [rows, words]:

* Weights are read in the checkpoint layout [N, K/2] as int32 words of 8 nibbles; each thread
  holds 4 consecutive words (one 16-byte load, 32 values = two scale blocks) of a row.
* Word-level decode (``_decode_word``): nibbles (p, p+4) of a word become one fp16x2 pair with
  two shifts and two logic ops (sign to bit 15, exponent/mantissa to bits 11..9: the E2M1 value
  times 2**-14, subnormal code 0.5 included), each half widened to float32 (exact). On a GPU
  this is inline PTX; under the interpreter, which cannot run PTX, the same bit moves in plain
  ``tl`` (constexpr ``USE_ASM``).
* Per (row, word, token) one float32 chain of 8 FMAs with the activations, the two words of a
  16-value block added, times the block scale (e4m3 -> float32 exactly), accumulated in float32
  per (row, block) position over the whole K range; one reduction at the end, times 2**14
  (2**28 when the activations are NVFP4 too) * alpha (+ bias). Every product is exact.
* Dense activations are loaded by inline PTX (16-byte read-only loads, converted to float32):
  a tl.load gets a layout of its own and Triton converts it through shared memory every step;
  the PTX load lands directly in the layout of the weight tile's columns.
* Programs: one per (group of 1/2/4 tokens, block of rows, K split), token groups fastest, so
  the groups that read the same weights run together and share them through L2. The next K
  step's weights are loaded before the current step is decoded (register double buffering). A
  K split writes float32 partials that ``gemm._split_k_reduce_kernel`` sums in a fixed order
  (deterministic, no atomics, CUDA-graph safe).

sm_90 SASS of the main loop (M = 1, 8 words per thread, 4 warps): ~5.7 instructions per
weight (15 integer ops + 8 conversions + 8 FFMA per word, plus activation conversion, scales
and addressing), 91 registers, no local memory. NVFP4 activations (W4A4) are decoded with the
same word decode, once per thread and word.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import grid_device, interpreting, sm_count
from nvfp4_kernels.backends.triton import gemm as _gemm  # its split-K reduction kernel
from nvfp4_kernels.backends.triton.plan import (GemvConfig, gemv_block_m, gemv_config_for,
                                                gemv_split_k_for)
from nvfp4_kernels.layout import BLOCK, swizzled_shape

# nibbles (p, p+4) of word $8 -> fp16x2 bits (lut * 2**-14, low half = nibble p: sign to bit 15,
# exponent/mantissa to bits 11..9), each half widened to float32 (exact). Outputs $0..$7 are
# the word's elements 0..7 in K order.
_DECODE_WORD_PTX = tl.constexpr("""
{
.reg .b32 s<4>, e<4>, p<4>;
.reg .b16 l<4>, h<4>;
shl.b32 s0, $8, 12;
shl.b32 e0, $8, 9;
shl.b32 s1, $8, 8;
shl.b32 e1, $8, 5;
shl.b32 s2, $8, 4;
shl.b32 e2, $8, 1;
shr.b32 e3, $8, 3;
and.b32 s0, s0, 0x80008000;
and.b32 s1, s1, 0x80008000;
and.b32 s2, s2, 0x80008000;
and.b32 s3, $8, 0x80008000;
and.b32 e0, e0, 0x0E000E00;
and.b32 e1, e1, 0x0E000E00;
and.b32 e2, e2, 0x0E000E00;
and.b32 e3, e3, 0x0E000E00;
or.b32 p0, s0, e0;
or.b32 p1, s1, e1;
or.b32 p2, s2, e2;
or.b32 p3, s3, e3;
mov.b32 {l0, h0}, p0;
mov.b32 {l1, h1}, p1;
mov.b32 {l2, h2}, p2;
mov.b32 {l3, h3}, p3;
cvt.f32.f16 $0, l0;
cvt.f32.f16 $1, l1;
cvt.f32.f16 $2, l2;
cvt.f32.f16 $3, l3;
cvt.f32.f16 $4, h0;
cvt.f32.f16 $5, h1;
cvt.f32.f16 $6, h2;
cvt.f32.f16 $7, h3;
}
""")

# 8 bf16 activations at address $8 (16-byte aligned) -> float32 bits (a bf16 is the top half of
# its float32). Inline so that the load lands in the layout of the weight tile's columns: a
# tl.load would get its own layout and a shared-memory layout conversion per step.
_LOAD_BF16X8_PTX = tl.constexpr("""
{
.reg .b32 r<4>;
ld.global.nc.v4.b32 {r0, r1, r2, r3}, [$8];
shl.b32 $0, r0, 16;
and.b32 $1, r0, 0xFFFF0000;
shl.b32 $2, r1, 16;
and.b32 $3, r1, 0xFFFF0000;
shl.b32 $4, r2, 16;
and.b32 $5, r2, 0xFFFF0000;
shl.b32 $6, r3, 16;
and.b32 $7, r3, 0xFFFF0000;
}
""")

# 8 fp16 activations at address $8 (16-byte aligned) -> float32 (exact).
_LOAD_F16X8_PTX = tl.constexpr("""
{
.reg .b32 r<4>;
.reg .b16 h<8>;
ld.global.nc.v4.b32 {r0, r1, r2, r3}, [$8];
mov.b32 {h0, h1}, r0;
mov.b32 {h2, h3}, r1;
mov.b32 {h4, h5}, r2;
mov.b32 {h6, h7}, r3;
cvt.f32.f16 $0, h0;
cvt.f32.f16 $1, h1;
cvt.f32.f16 $2, h2;
cvt.f32.f16 $3, h3;
cvt.f32.f16 $4, h4;
cvt.f32.f16 $5, h5;
cvt.f32.f16 $6, h6;
cvt.f32.f16 $7, h7;
}
""")

_LOAD_B32_PTX = tl.constexpr("ld.global.nc.b32 $0, [$1];")
_LOAD_U8_PTX = tl.constexpr("ld.global.nc.u8 $0, [$1];")


@triton.jit
def _decode_nibble(q, SHIFT_SIGN: tl.constexpr, SHIFT_EM: tl.constexpr):
    """Nibble j of q -> lut * 2**-14 as float32 (the interpreter's version of the PTX)."""
    if SHIFT_EM >= 0:
        em = (q >> SHIFT_EM) & 0x0E00
    else:
        em = (q << -SHIFT_EM) & 0x0E00
    if SHIFT_SIGN >= 0:
        sign = (q >> SHIFT_SIGN) & 0x8000
    else:
        sign = (q << -SHIFT_SIGN) & 0x8000
    return (sign | em).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _decode_word(q, USE_ASM: tl.constexpr):
    """int32 words of 8 E2M1 nibbles -> 8 float32 tensors (elements 0..7, lut * 2**-14)."""
    if USE_ASM:
        return tl.inline_asm_elementwise(
            _DECODE_WORD_PTX, "=f,=f,=f,=f,=f,=f,=f,=f,r", [q],
            dtype=(tl.float32,) * 8, is_pure=True, pack=1)
    else:
        # Element j: sign bit 4j+3 -> 15, exponent/mantissa bits 4j..4j+2 -> 9..11.
        return (_decode_nibble(q, -12, -9), _decode_nibble(q, -8, -5),
                _decode_nibble(q, -4, -1), _decode_nibble(q, 0, 3),
                _decode_nibble(q, 4, 7), _decode_nibble(q, 8, 11),
                _decode_nibble(q, 12, 15), _decode_nibble(q, 16, 19))


@triton.jit
def _e4m3_to_fp32(code):
    """e4m3 scale bytes (int32 0..255) -> their exact float32 value, in 4 operations: the byte
    moved to the top (sign at bit 31) and arithmetically shifted down by 4 puts the exponent and
    mantissa in float32 bit positions (exponent bias 7 instead of 127: the value times 2**-120,
    e4m3 subnormals becoming float32 subnormals); the smeared sign bits 27..30 are cleared and
    one IEEE multiply by 2**120 (not flushed) restores the value. 0x7F/0xFF (e4m3 NaN) do not
    occur in block scales (DESIGN §2) and come out finite."""
    bits = ((code.to(tl.int32) << 24) >> 4) & -2013265921  # 0x87FFFFFF
    return bits.to(tl.float32, bitcast=True) * 1.329227995784916e36  # 2**120


@triton.jit
def _swizzled_col(blk):
    """Column part of the 128x4 swizzled scale offset of block column `blk` (>= 0)."""
    return ((blk >> 2) << 9) | (blk & 3)


@triton.jit
def _load_scales(b_scale_ptr, s_ptrs, s_row, words, step, B_SWIZZLED: tl.constexpr,
                 BKW: tl.constexpr):
    """The e4m3 scale byte of every weight word of one K step ([BN, BKW]). Steps of 8+ words
    move the swizzled scale columns by whole 512-byte groups of 4 blocks, linear ones by
    BKW / 2 bytes: a constant per step."""
    if not B_SWIZZLED:
        return tl.load(s_ptrs + step * (BKW // 2))
    elif BKW % 8 == 0:
        return tl.load(s_ptrs + step * ((BKW // 8) * 512))
    else:
        return tl.load(b_scale_ptr + s_row[:, None] + _swizzled_col(words >> 1)[None, :])


@triton.jit
def _act_words(a_ptr, a_scale_ptr, tok, words, K, A_SCP4, A_NVFP4: tl.constexpr,
               USE_ASM: tl.constexpr):
    """Token `tok`'s activations at K words `words` ([1, BKW], 8 values each) -> 8 float32
    tensors x_j (lut * 2**-14 for NVFP4 activations) and the activation scale per word (NVFP4;
    else 1). On a GPU the loads are inline PTX so that they land in the layout of the weight
    tile's columns (a tl.load gets a layout of its own and a shared-memory conversion per step)."""
    tok64 = tok.to(tl.int64)
    if A_NVFP4:
        wptr = a_ptr + tok64 * (K // 8) + words
        sptr = (a_scale_ptr + (tok64 // 128) * A_SCP4 * 512 + (tok64 % 32) * 16
                + ((tok64 // 32) % 4) * 4 + _swizzled_col(words >> 1))
        if USE_ASM:
            q = tl.inline_asm_elementwise(_LOAD_B32_PTX, "=r,l", [wptr.to(tl.int64)],
                                          dtype=tl.int32, is_pure=True, pack=1)
            sc = tl.inline_asm_elementwise(_LOAD_U8_PTX, "=r,l", [sptr.to(tl.int64)],
                                           dtype=tl.int32, is_pure=True, pack=1)
        else:
            q = tl.load(wptr)
            sc = tl.load(sptr).to(tl.int32)
        x0, x1, x2, x3, x4, x5, x6, x7 = _decode_word(q, USE_ASM)
        return x0, x1, x2, x3, x4, x5, x6, x7, _e4m3_to_fp32(sc)
    else:
        base = a_ptr + tok64 * K + words * 8
        if USE_ASM:
            if a_ptr.dtype.element_ty == tl.bfloat16:
                x0, x1, x2, x3, x4, x5, x6, x7 = tl.inline_asm_elementwise(
                    _LOAD_BF16X8_PTX, "=r,=r,=r,=r,=r,=r,=r,=r,l", [base.to(tl.int64)],
                    dtype=(tl.int32,) * 8, is_pure=True, pack=1)
                return (x0.to(tl.float32, bitcast=True), x1.to(tl.float32, bitcast=True),
                        x2.to(tl.float32, bitcast=True), x3.to(tl.float32, bitcast=True),
                        x4.to(tl.float32, bitcast=True), x5.to(tl.float32, bitcast=True),
                        x6.to(tl.float32, bitcast=True), x7.to(tl.float32, bitcast=True), 1.0)
            else:
                x0, x1, x2, x3, x4, x5, x6, x7 = tl.inline_asm_elementwise(
                    _LOAD_F16X8_PTX, "=f,=f,=f,=f,=f,=f,=f,=f,l", [base.to(tl.int64)],
                    dtype=(tl.float32,) * 8, is_pure=True, pack=1)
                return x0, x1, x2, x3, x4, x5, x6, x7, 1.0
        else:
            return (tl.load(base).to(tl.float32), tl.load(base + 1).to(tl.float32),
                    tl.load(base + 2).to(tl.float32), tl.load(base + 3).to(tl.float32),
                    tl.load(base + 4).to(tl.float32), tl.load(base + 5).to(tl.float32),
                    tl.load(base + 6).to(tl.float32), tl.load(base + 7).to(tl.float32), 1.0)


@triton.jit
def _pairs(t, BN: tl.constexpr, BKW: tl.constexpr):
    """[BN, BKW] -> the values of the even and of the odd words, [BN, BKW // 2] each: the two
    words of one 16-value scale block. Both sit in the same thread (4 consecutive words per
    thread), so this moves no data."""
    return tl.split(tl.reshape(t, [BN, BKW // 2, 2]))


@triton.jit
def _token_step(acc, w0, w1, w2, w3, w4, w5, w6, w7, scale, a_ptr, a_scale_ptr, tok, words, K,
                A_SCP4, A_NVFP4: tl.constexpr, USE_ASM: tl.constexpr, BN: tl.constexpr,
                BKW: tl.constexpr):
    """acc [BN, BKW/2] += the decoded weights' products with token `tok`'s activations: one
    float32 chain per (row, word), the two words of a block added, times the block scale.
    Products are exact; sums are float32."""
    x0, x1, x2, x3, x4, x5, x6, x7, x_scale = _act_words(a_ptr, a_scale_ptr, tok, words, K,
                                                         A_SCP4, A_NVFP4, USE_ASM)
    t = w0 * x0
    t += w1 * x1
    t += w2 * x2
    t += w3 * x3
    t += w4 * x4
    t += w5 * x5
    t += w6 * x6
    t += w7 * x7
    if A_NVFP4:
        t = t * x_scale  # the activation's block scale (exact: a power of two times <= 4 bits)
    t_even, t_odd = _pairs(t, BN, BKW)
    return acc + (t_even + t_odd) * scale


@triton.jit
def _store_token(acc, tok, offs_n, rows, pid_k, M, N, alpha_ptr, bias_ptr, out_ptr, ws_ptr,
                 FOLD: tl.constexpr, ALPHA_PER_COL: tl.constexpr, HAS_BIAS: tl.constexpr,
                 SPLIT_K: tl.constexpr, BF16_BY_BITS: tl.constexpr):
    total = tl.sum(acc, axis=1)
    mask = (offs_n < N) & (tok < M)
    off = tok.to(tl.int64) * N + offs_n
    if SPLIT_K == 1:
        if ALPHA_PER_COL:
            alpha = tl.load(alpha_ptr + rows)
        else:
            alpha = tl.load(alpha_ptr + tl.zeros_like(offs_n))
        res = (total * FOLD) * alpha
        if HAS_BIAS:
            res = res + tl.load(bias_ptr + rows).to(tl.float32)
        tl.store(out_ptr + off, _bits.cast_out(res, out_ptr.dtype.element_ty, BF16_BY_BITS),
                 mask=mask)
    else:
        tl.store(ws_ptr + pid_k.to(tl.int64) * M * N + off, total, mask=mask)


@triton.jit
def _gemv_kernel(a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, alpha_ptr, bias_ptr, out_ptr, ws_ptr,
                 M, N, K, KW, STEPS, A_SCP4, B_SCP4,
                 A_NVFP4: tl.constexpr, B_SWIZZLED: tl.constexpr, FOLD: tl.constexpr,
                 ALPHA_PER_COL: tl.constexpr, HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr,
                 BF16_BY_BITS: tl.constexpr, USE_ASM: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BKW: tl.constexpr):
    # KW = K // 8 words per weight row; every split covers STEPS * BKW words (no K masks: the
    # launcher picks BKW and the split so that they tile K exactly). BM <= 4 tokens per program,
    # one [BN, BKW/2] accumulator each (separate 2-D tensors rather than one 3-D one: Triton
    # gives a 3-D accumulator a layout of its own and converts every decoded weight into it).
    tl.static_assert(BM == 1 or BM == 2 or BM == 4)
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    groups = tl.cdiv(M, BM)
    tok0 = (pid % groups) * BM
    # Tokens past M re-read token M-1 and are never stored.
    tok1 = tl.minimum(tok0 + 1, M - 1)
    tok2 = tl.minimum(tok0 + 2, M - 1)
    tok3 = tl.minimum(tok0 + 3, M - 1)
    offs_n = (pid // groups) * BN + tl.arange(0, BN)
    rows = tl.minimum(offs_n, N - 1).to(tl.int64)  # rows past N: computed, never stored
    cols = tl.arange(0, BKW)
    w_lo = pid_k * (STEPS * BKW)

    b_ptrs = b_ptr + rows[:, None] * KW + (w_lo + cols)[None, :]
    # Scale byte of each word (the two words of a block read the same byte; the compiler
    # merges the loads).
    blk0 = (w_lo + cols) >> 1
    if B_SWIZZLED:
        s_row = (rows // 128) * B_SCP4 * 512 + (rows % 32) * 16 + ((rows // 32) % 4) * 4
        s_ptrs = b_scale_ptr + s_row[:, None] + _swizzled_col(blk0)[None, :]
    else:
        s_row = rows * (K // 16)
        s_ptrs = b_scale_ptr + s_row[:, None] + blk0[None, :]
    acc0 = tl.zeros([BN, BKW // 2], dtype=tl.float32)
    acc1 = tl.zeros([BN, BKW // 2], dtype=tl.float32)
    acc2 = tl.zeros([BN, BKW // 2], dtype=tl.float32)
    acc3 = tl.zeros([BN, BKW // 2], dtype=tl.float32)
    # Register double buffering: the next step's weights and scales are loaded before this
    # step's decode, so each warp keeps two steps of weights in flight (Triton's num_stages
    # pipelines only loads that feed a tl.dot).
    q_next = tl.load(b_ptrs)
    sc_next = _load_scales(b_scale_ptr, s_ptrs, s_row, w_lo + cols, 0, B_SWIZZLED, BKW)
    for step in range(0, STEPS):
        words = (w_lo + step * BKW + cols)[None, :]
        q = q_next
        sc = sc_next
        nxt = tl.minimum(step + 1, STEPS - 1)  # the last step re-reads itself (no mask)
        q_next = tl.load(b_ptrs + nxt * BKW)
        sc_next = _load_scales(b_scale_ptr, s_ptrs, s_row, w_lo + nxt * BKW + cols, nxt,
                               B_SWIZZLED, BKW)
        # One scale per block: the even word's copy (the two words of a block share the byte).
        sc_even, _sc_odd = _pairs(sc, BN, BKW)
        scale = _e4m3_to_fp32(sc_even)
        w0, w1, w2, w3, w4, w5, w6, w7 = _decode_word(q, USE_ASM)
        acc0 = _token_step(acc0, w0, w1, w2, w3, w4, w5, w6, w7, scale, a_ptr, a_scale_ptr,
                           tok0, words, K, A_SCP4, A_NVFP4, USE_ASM, BN, BKW)
        if BM > 1:
            acc1 = _token_step(acc1, w0, w1, w2, w3, w4, w5, w6, w7, scale, a_ptr, a_scale_ptr,
                               tok1, words, K, A_SCP4, A_NVFP4, USE_ASM, BN, BKW)
        if BM > 2:
            acc2 = _token_step(acc2, w0, w1, w2, w3, w4, w5, w6, w7, scale, a_ptr, a_scale_ptr,
                               tok2, words, K, A_SCP4, A_NVFP4, USE_ASM, BN, BKW)
            acc3 = _token_step(acc3, w0, w1, w2, w3, w4, w5, w6, w7, scale, a_ptr, a_scale_ptr,
                               tok3, words, K, A_SCP4, A_NVFP4, USE_ASM, BN, BKW)

    _store_token(acc0, tok0, offs_n, rows, pid_k, M, N, alpha_ptr, bias_ptr, out_ptr, ws_ptr,
                 FOLD, ALPHA_PER_COL, HAS_BIAS, SPLIT_K, BF16_BY_BITS)
    if BM > 1:
        _store_token(acc1, tok0 + 1, offs_n, rows, pid_k, M, N, alpha_ptr, bias_ptr, out_ptr,
                     ws_ptr, FOLD, ALPHA_PER_COL, HAS_BIAS, SPLIT_K, BF16_BY_BITS)
    if BM > 2:
        _store_token(acc2, tok0 + 2, offs_n, rows, pid_k, M, N, alpha_ptr, bias_ptr, out_ptr,
                     ws_ptr, FOLD, ALPHA_PER_COL, HAS_BIAS, SPLIT_K, BF16_BY_BITS)
        _store_token(acc3, tok0 + 3, offs_n, rows, pid_k, M, N, alpha_ptr, bias_ptr, out_ptr,
                     ws_ptr, FOLD, ALPHA_PER_COL, HAS_BIAS, SPLIT_K, BF16_BY_BITS)


def _words_per_step(kw: int, cap: int) -> int:
    """Largest power of two <= cap dividing kw (K words per row): K steps need no masks."""
    step = 1
    while step * 2 <= cap and kw % (step * 2) == 0:
        step *= 2
    return step


def launch_shape(cfg: GemvConfig, m: int, n: int, k: int, sm_count: int):
    """(tokens per program, rows per program, words per K step, K steps, K split) for a shape."""
    bm = gemv_block_m(cfg, m)
    kw = k // 8
    bkw = _words_per_step(kw, cfg.block_k // 8)
    bn = max(1, cfg.words_per_thread * 32 * cfg.num_warps // bkw)
    steps = kw // bkw
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    return bm, bn, bkw, steps, gemv_split_k_for(cfg, tiles, steps, sm_count)


def _launch(a, a_scale, b, b_scale, alpha, bias, out_dtype, b_swizzled, a_nvfp4, out, config):
    m, n, k = a.shape[0], b.shape[0], b.shape[1] * 2
    device = a.device
    out = _gemm.output(a, b, out_dtype, out)
    if m == 0 or n == 0:
        return out
    interp = interpreting()
    cfg: GemvConfig = config or gemv_config_for(interp)
    bm, bn, bkw, steps, split = launch_shape(cfg, m, n, k, sm_count(device.type, device.index))
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    kw = k // 8
    fold = 2.0 ** 28 if a_nvfp4 else 2.0 ** 14
    alpha = alpha.reshape(-1).float()
    per_col = alpha.numel() > 1
    has_bias = bias is not None
    ws = torch.empty((split, m, n), dtype=torch.float32, device=device) if split > 1 else out
    scp4 = swizzled_shape(1, k // BLOCK)[1] // 4
    # Words of 8 nibbles: [N, K/2] bytes viewed as [N, K/8] int32.
    b32 = b.view(torch.int32)
    a_arg = a.view(torch.int32) if a_nvfp4 else a
    with grid_device(a):
        _gemv_kernel[(tiles, split)](
            a_arg, a_scale.view(torch.uint8) if a_nvfp4 else a, b32, b_scale.view(torch.uint8),
            alpha, bias if has_bias else alpha, out, ws, m, n, k, kw, steps // split, scp4, scp4,
            A_NVFP4=a_nvfp4, B_SWIZZLED=b_swizzled, FOLD=fold, ALPHA_PER_COL=per_col,
            HAS_BIAS=has_bias, SPLIT_K=split, BF16_BY_BITS=interp, USE_ASM=not interp,
            BM=bm, BN=bn, BKW=bkw, num_warps=cfg.num_warps, num_stages=1)
        if split > 1:
            rgrid = (triton.cdiv(m, 16), triton.cdiv(n, 128))
            _gemm._split_k_reduce_kernel[rgrid](
                ws, alpha, bias if has_bias else alpha, out, m, n, FOLD=fold,
                ALPHA_PER_COL=per_col, HAS_BIAS=has_bias, SPLIT_K=split,
                BF16_BY_BITS=interp, BM=16, BN=128, num_warps=4)
    return out


def supports(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the GEMV can read these operands: its inline loads read 16 bytes of dense (4 of
    NVFP4) activations per word, so the activations must be contiguous and 16-byte aligned;
    weights are read as int32 words."""
    return (a.is_contiguous() and b.is_contiguous() and a.data_ptr() % 16 == 0
            and b.data_ptr() % 4 == 0)


def gemv_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias, *, out=None, config=None):
    """Dense a [M, K] (bf16/fp16) x NVFP4 weight b [N, K/2] -> [M, N], for small M."""
    return _launch(a, None, b, b_scale, b_alpha, bias, out_dtype, scale_layout == "swizzled",
                   False, out, config)


def gemv(a, b, a_scale, b_scale, alpha, out_dtype, bias, *, out=None, config=None):
    """NVFP4 a [M, K/2] x NVFP4 b [N, K/2] (both scales swizzled) -> [M, N], for small M."""
    return _launch(a, a_scale, b, b_scale, alpha, bias, out_dtype, True, True, out, config)
