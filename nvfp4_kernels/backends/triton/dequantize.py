"""NVFP4 dequantize at memory speed: bit-exact ``lut[q] * s / gs``, and the scaled variant the
prefill GEMM route uses (``lut[q] * s * factor[row]``).

Work unit: one 32-bit word of packed data (8 values). A program covers ROW_TILES tiles of
BLOCK_R rows x 32 words, one word per thread per tile: a warp loads 128 contiguous bytes of a row
and stores the 8 values of each word with one 16-byte store (bf16/fp16), 512 contiguous bytes
per warp. Per word:

* decode: nibbles (P, P+4) -> one pair of fp16 bit patterns with shifts and masks on the whole
  word (``_bits.e2m1_word_pair_fp16``), read as lut * 2**-14 (fp16 subnormals cover code 1);
* scale: fp32 multiply by the block scale (exact: at most 6 significant bits), giving
  p = lut * s * 2**-14;
* divide by gs exactly without a division per value (``_bits.div_by_constant``): with
  r = RN(1/gs') computed once (gs' = gs * 2**-14 folds the 2**-14 away), q0 = RN(p * r) and one
  FMA-based correction give RN(p / gs') for every p this format can produce. This was checked
  exhaustively (every product significand against every float32 significand of gs) by
  tests/test_exact_division.py's full mode; the identity needs every quantity
  normal, so the kernel takes it only for 2**-100 <= gs <= 2**100 (a uniform branch on the
  loaded gs) and divides with ``div_rn`` otherwise (gs from amax below ~2e-27 or above ~3e33);
* output order: the pairs come out as (0, 4), (1, 5), (2, 6), (3, 7); three levels of
  ``tl.interleave`` put them back in element order inside each thread's registers (no shared
  memory: the compiled sm_90 kernel has no STS/LDS for bf16/fp16 outputs; float32 outputs go
  through a layout conversion, 32 bytes per thread being two stores).

The scaled variant (FACTOR) replaces the division by one multiply by a per-row (or single)
float32 factor: the prefill GEMM route folds the GEMM's alpha (1/gs) into the weight it
dequantizes, or passes 1.0 to get the exact unscaled products lut * s.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import grid_device, interpreting
from nvfp4_kernels.reference import BLOCK, swizzled_shape

# (BLOCK_R, ROW_TILES, num_warps). A tile is BLOCK_R rows x 32 words; with BLOCK_R == num_warps
# every thread holds exactly one word per tile, so the 8 decoded values of a thread are the 8
# contiguous outputs that its 16-byte store writes (bf16/fp16): Triton then needs no register
# shuffle through shared memory between the decode and the store (it would with several words
# per thread: the store layout it picks holds 16 bytes per thread). A program loops over
# ROW_TILES tiles down the rows, which amortises its setup (the reciprocal of gs, column offsets).
_BLOCK_W = 32
DEFAULT_CONFIG = (4, 8, 4)
# Candidates benchmarks/bench_dequantize.py --sweep times on a GPU.
CANDIDATES = ((4, 8, 4), (4, 4, 4), (4, 16, 4), (8, 8, 8), (8, 4, 8), (4, 1, 4))
# 32-bit offsets while every element index fits (scales and words are smaller); 64-bit from
# this many elements on (tests lower it to cover the 64-bit path).
_INDEX64_FROM = 2 ** 31
# The interpreter is slow per program and per loop step: fewer, larger tiles.
_INTERPRETER_CONFIG = (16, 1, 4)


@triton.jit
def _value(words, s32, P: tl.constexpr, HI: tl.constexpr, f, gs, gsf, r,
           FACTOR: tl.constexpr, FAST_DIV: tl.constexpr, INTERPRET: tl.constexpr):
    """Element P (HI=0) or P+4 (HI=1) of every word, as float32."""
    lo16, hi16 = _bits.e2m1_word_pair_fp16(words, P)
    v = (hi16 if HI else lo16).to(tl.float32)
    p = v * s32  # lut * s * 2**-14, exact
    if FACTOR:
        return (p * _bits.FP16_FOLD) * f  # exact rescale, then the one rounding
    if FAST_DIV:
        return _bits.div_by_constant(p, gsf, r, INTERPRET)
    # gs outside the identity's range: IEEE division per value.
    return tl.math.div_rn(p * _bits.FP16_FOLD, tl.zeros_like(p) + gs)


@triton.jit
def _factor(factor_ptr, rows, rmask, FACTOR: tl.constexpr, FACTOR_PER_ROW: tl.constexpr):
    if FACTOR_PER_ROW:
        return tl.load(factor_ptr + rows, mask=rmask, other=0.0)[:, None]
    elif FACTOR:
        return tl.load(factor_ptr)
    else:
        return 1.0


@triton.jit
def _tile_rows(t, ROW_TILES: tl.constexpr, BLOCK_R: tl.constexpr, INDEX64: tl.constexpr):
    rows = (tl.program_id(0) * ROW_TILES + t) * BLOCK_R + tl.arange(0, BLOCK_R)
    if INDEX64:
        rows = rows.to(tl.int64)
    return rows


@triton.jit
def _load_tile(words_ptr, scale_ptr, rows, wcols, scol, R, W, SCP4, live,
               SWIZZLED: tl.constexpr):
    """The words and scale bytes of one tile (nothing is read where `live` is false)."""
    mask = (rows < R)[:, None] & (wcols < W)[None, :] & live
    words = tl.load(words_ptr + rows[:, None] * W + wcols[None, :], mask=mask, other=0)
    if SWIZZLED:
        # rows >= 0: shifts and masks instead of signed // and %.
        srow = (rows >> 7) * (SCP4 * 512) + (rows & 31) * 16 + ((rows >> 5) & 3) * 4
    else:
        srow = rows * (W // 2)
    code = tl.load(scale_ptr + srow[:, None] + scol[None, :], mask=mask, other=0)
    return words, code


@triton.jit
def _tiles(words_ptr, scale_ptr, factor_ptr, out_ptr, R, W, SCP4, gs, gsf, r,
           BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, ROW_TILES: tl.constexpr,
           SWIZZLED: tl.constexpr, FACTOR: tl.constexpr, FACTOR_PER_ROW: tl.constexpr,
           FAST_DIV: tl.constexpr, INDEX64: tl.constexpr, INTERPRET: tl.constexpr):
    """ROW_TILES tiles of BLOCK_R rows x BLOCK_W words, one word per thread per tile."""
    wcols = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    cols = tl.program_id(1) * (BLOCK_W * 8) + tl.arange(0, BLOCK_W * 8)
    # Two words per scale block; the column part of the scale offset is loop-invariant.
    blocks = wcols >> 1
    if SWIZZLED:
        scol = (blocks >> 2) * 512 + (blocks & 3)
    else:
        scol = blocks
    # Software pipelining by hand: the next tile's words and scale bytes are loaded before this
    # tile is decoded and stored, so every thread always has a load in flight.
    rows = _tile_rows(0, ROW_TILES, BLOCK_R, INDEX64)
    words, code = _load_tile(words_ptr, scale_ptr, rows, wcols, scol, R, W, SCP4, True,
                             SWIZZLED)
    for t in range(ROW_TILES):
        next_rows = _tile_rows(t + 1, ROW_TILES, BLOCK_R, INDEX64)
        next_words, next_code = _load_tile(words_ptr, scale_ptr, next_rows, wcols, scol, R, W,
                                           SCP4, t + 1 < ROW_TILES, SWIZZLED)
        rmask = rows < R
        s32 = _bits.e4m3_to_fp32(code)  # the e4m3 NaN bytes read as NaN, as in the reference
        f = _factor(factor_ptr, rows, rmask, FACTOR, FACTOR_PER_ROW)
        e0 = _value(words, s32, 0, 0, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e1 = _value(words, s32, 1, 0, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e2 = _value(words, s32, 2, 0, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e3 = _value(words, s32, 3, 0, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e4 = _value(words, s32, 0, 1, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e5 = _value(words, s32, 1, 1, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e6 = _value(words, s32, 2, 1, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        e7 = _value(words, s32, 3, 1, f, gs, gsf, r, FACTOR, FAST_DIV, INTERPRET)
        # Back to element order: (e0 e4)(e2 e6) -> e0 e2 e4 e6, (e1 e5)(e3 e7) -> e1 e3 e5 e7.
        out = tl.interleave(tl.interleave(tl.interleave(e0, e4), tl.interleave(e2, e6)),
                            tl.interleave(tl.interleave(e1, e5), tl.interleave(e3, e7)))
        omask = rmask[:, None] & (cols < W * 8)[None, :]
        tl.store(out_ptr + rows[:, None] * (W * 8) + cols[None, :],
                 _bits.cast_out(out, out_ptr.dtype.element_ty, INTERPRET), mask=omask)
        rows, words, code = next_rows, next_words, next_code


@triton.jit
def _dequantize_kernel(words_ptr, scale_ptr, gs_ptr, factor_ptr, out_ptr, R, W, SCP4,
                       BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, ROW_TILES: tl.constexpr,
                       SWIZZLED: tl.constexpr, FACTOR: tl.constexpr,
                       FACTOR_PER_ROW: tl.constexpr, INDEX64: tl.constexpr,
                       INTERPRET: tl.constexpr):
    """words: the packed data as int32 [R, W] (W = C/8 words per row, 8 values per word)."""
    if FACTOR:
        _tiles(words_ptr, scale_ptr, factor_ptr, out_ptr, R, W, SCP4, 1.0, 1.0, 1.0,
               BLOCK_R, BLOCK_W, ROW_TILES, SWIZZLED, True, FACTOR_PER_ROW, False, INDEX64,
               INTERPRET)
    else:
        gs = tl.load(gs_ptr)
        # The exact-division identity needs every intermediate normal (see div_by_constant).
        if (gs >= 7.888609052210118e-31) & (gs <= 1.2676506002282294e30):  # 2**-100, 2**100
            gsf = gs * (1.0 / _bits.FP16_FOLD)  # exact in this range
            r = tl.math.div_rn(tl.full([], 1.0, tl.float32), gsf)
            _tiles(words_ptr, scale_ptr, factor_ptr, out_ptr, R, W, SCP4, gs, gsf, r,
                   BLOCK_R, BLOCK_W, ROW_TILES, SWIZZLED, False, False, True, INDEX64,
                   INTERPRET)
        else:
            _tiles(words_ptr, scale_ptr, factor_ptr, out_ptr, R, W, SCP4, gs, gs, gs,
                   BLOCK_R, BLOCK_W, ROW_TILES, SWIZZLED, False, False, False, INDEX64,
                   INTERPRET)


def _words(data: torch.Tensor) -> torch.Tensor:
    """The packed bytes as int32 words (4-byte aligned; a misaligned view is copied first)."""
    if data.data_ptr() % 4 or not data.is_contiguous():
        data = data.contiguous().clone()
    return data.view(torch.int32)


def _launch(data, scale, gs, factor, scale_layout, dtype, out, config):
    """gs: float32 [1] (exact division), or factor: float32 [1] or [R] (scaled variant)."""
    block_r, row_tiles, warps = config or (_INTERPRETER_CONFIG if interpreting()
                                           else DEFAULT_CONFIG)
    rows, cols = data.shape[0], data.shape[1] * 2
    if out is None:
        out = torch.empty((rows, cols), dtype=dtype, device=data.device)
    if rows == 0 or cols == 0:
        return out
    swizzled = scale_layout == "swizzled"
    scp4 = swizzled_shape(rows, cols // BLOCK)[1] // 4
    words_per_row = cols // 8
    grid = (triton.cdiv(rows, block_r * row_tiles), triton.cdiv(words_per_row, _BLOCK_W))
    with grid_device(data):
        _dequantize_kernel[grid](
            _words(data), scale.view(torch.uint8), gs if gs is not None else factor,
            factor if factor is not None else gs, out, rows, words_per_row, scp4,
            BLOCK_R=block_r, BLOCK_W=_BLOCK_W, ROW_TILES=row_tiles, SWIZZLED=swizzled,
            FACTOR=factor is not None, FACTOR_PER_ROW=factor is not None and factor.numel() > 1,
            INDEX64=rows * cols >= _INDEX64_FROM, INTERPRET=interpreting(), num_warps=warps)
    return out


def dequantize(data, scale, global_scale, scale_layout, dtype, *, out=None, config=None):
    """(data [R, C/2] u8, scale) -> lut[q] * s / gs in float32, cast to dtype; bit-exact.

    out: optional [R, C] tensor to write into; config: (BLOCK_R, ROW_TILES, num_warps)."""
    return _launch(data, scale, global_scale.reshape(1).float(), None, scale_layout, dtype,
                   out, config)


def dequantize_scaled(data, scale, factor, scale_layout, dtype, *, out=None, config=None):
    """lut[q] * s * factor[row] (float32, one rounding), cast to dtype: for the prefill GEMM.

    factor: float32 with 1 value (all rows) or R values. Rows of a swizzled scale matrix may be
    a 128-row-aligned slice of a larger one (prefill chunks): the layout is per 128 rows."""
    return _launch(data, scale, None, factor.reshape(-1).float(), scale_layout, dtype, out,
                   config)


__all__ = ["CANDIDATES", "DEFAULT_CONFIG", "dequantize", "dequantize_scaled"]
