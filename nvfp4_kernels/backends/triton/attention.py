"""Paged decode attention over the FP8 (e4m3) KV cache: split-KV and a fixed-order combine.

Work split. One program of ``_decode_kernel`` owns one (sequence, KV head, split of the key range)
and every query row of that KV head's GQA group (``group * q_len`` rows, padded to a tile of at
least 16 for the MMA): each K/V cache row is read from HBM once per group, not once per query
head. Gemma-4-31B: 2 query heads per KV head at head_dim 256 (sliding layers), 8 at 512 (full).

Bandwidth. The cache layout ``[num_blocks, block_size, kv_heads, head_dim]`` puts one head's row
of a token in ``head_dim`` contiguous bytes, so a tile of ``BLOCK_N`` tokens is ``BLOCK_N`` runs of
256/512 bytes: 16-byte vector loads (the row offset is a multiple of 16 by construction), of
int32 words where head_dim % 4 == 0 (``_decode_words`` says why). Codes are decoded in
registers to fp16 exactly (every e4m3 value is an fp16 value): with the hardware conversion
(``cvt.rn.f16x2.e4m3x2``, SM89+) or, on SM80 and in the interpreter, by moving the bits
(``_bits.e4m3_to_fp16`` without its final multiply: the 2**8 it would apply is folded into the
per-program scale). The scales (per tensor or per KV head) are constant within
a program, so they multiply the fp32 scores and the fp32 output once instead of every element.

Numerics. QK^T is an fp16 x fp16 MMA with fp32 accumulation (exact products), so q is cast to
fp16 (exact for bf16 values of magnitude 2**-14 .. 65504). Softmax is in fp32 (base 2, the
log2(e) folded into the score scale). P is rounded to fp16 for the PV MMA (relative error
2**-11 per weight), V codes are exact in fp16.

Split-KV. ``num_splits`` is a Python int chosen from shapes (``choose_splits``: batch, KV heads,
an upper bound on sequence length, window, SM count), never from ``seq_lens`` values, so a call
never synchronises and captures in a CUDA graph. Each program splits *its own* sequence's key
range (read from ``seq_lens`` on the device) into ``num_splits`` equal BLOCK_N-aligned parts;
partials (unnormalised output, running max, running sum) go to fp32 workspaces and
``_combine_kernel`` merges them in an order fixed by the shapes (no atomics: bit-reproducible
for given shapes and arguments). With one split the decode kernel normalises and writes the
output itself.

Masking, all in-kernel: keys past ``seq_len``, after a query token's own position (several
query tokens: speculative decoding, causal among themselves), outside the sliding window, at
block-table positions past the table's width or with a block id outside ``[0, num_blocks)``
(``-1`` included) take no part in the softmax. A query row with no key at all (``seq_len = 0``)
outputs zeros.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import grid_device, interpreting, sm_count

LOG2E = 1.4426950408889634
# Fold of the bit-moved e4m3 -> fp16 decode (value * 2**-8); 1 with the hardware conversion.
_BITS_FOLD = 256.0
# A split should stream at least this many keys: below it the fixed cost of a program and its
# share of the combine outweigh the parallelism gained.
MIN_SPLIT_KEYS = 256
# Combine: dims and splits per program step ([16, 128] fp32 tiles: 16 registers a thread).
COMBINE_BLOCK_D = 128
COMBINE_BLOCK_S = 16
# Programs to aim for: a few waves over the SMs, so the last wave's tail is short.
WAVES = 4


def waves_for(head_dim: int) -> int:
    """Waves of programs over the SMs that choose_splits aims for, per head dim (H100,
    config_for's docstring): twice the default at 256 (3 programs fit an SM and the last
    partial wave is shorter); the default at 512, where the sweep's half-split rows looked
    better but a full run at half the splits measured 0.45-0.68 against 0.50-0.71."""
    return 2 * WAVES if triton.next_power_of_2(head_dim) <= 256 else WAVES


def config_for(head_dim: int) -> tuple[int, int, int, bool, bool]:
    """(BLOCK_N keys per step, num_warps, num_stages, word loads, table prefetch) for a head dim.

    Measured (H100, 2026-11-27, bench_decode_step.py --kernel-only --sweep, block size 16,
    batch 8/16/32, context 4K-32K; fraction of copy bandwidth on the FP8 bytes read; byte-load
    kernel, before the word loads):

    * head_dim 256, 32 q / 16 kv heads: (64, 4, 1) 0.54-0.62 at batch 8, 0.67-0.74 at 16,
      0.70-0.74 at 32; the old default (32, 4, 3) 0.51-0.67; 8 warps 0.31-0.36.
    * sliding window 1024 at 256: (32, 4, 3) 0.42 / 0.51 / 0.58 (batch 8 / 16 / 32); (64, 4, 1)
      or (32, 4, 2) only 0.01-0.05 better.
    * head_dim 512, 32 q / 4 kv heads: the old default (16, 8, 3) 0.27-0.33; (32, 4, 3)
      0.52-0.74, (32, 4, 4) the same, (64, 4, 1) 0.50-0.69.

    Why (sm_90 compile of this kernel with Triton 3.6, read from the SASS): with 16 query rows
    the MMA lays the warps side by side along the keys (QK^T) and the dims (PV); 8 warps over
    16 keys are more warps than n=8 MMA tiles, so the work is replicated, and the loop issues
    about twice the warp instructions per key of (32, 4, 3). Reading the cache as bytes, Triton
    moved the V tile's change to the MMA operand layout onto the 8-bit codes and read it back
    from shared memory one byte per instruction (128 LDS.U8 a thread per 64-key step at 256).
    (64, 4, 1) needs no shared-memory pipeline (num_stages 1: 16-byte loads into registers;
    two programs per SM at 205 registers overlap one's loads with the other's math). Word loads
    (``WORDS``: int32 loads, four codes per conversion, the fp16 tile moved with ldmatrix)
    remove the byte-wide shared loads. With num_stages 1 a step now waits for one memory round
    trip, not three: V's tile is loaded before K's (Triton put K's layout change, which waits
    for K's data, between the two loads, so V's load went out only after K's data came back)
    and, with table prefetch (fifth element), the block ids are loaded a step ahead. Compiled:
    (64, 4, 1) with prefetch at 256, 164 registers, three programs per SM; (32, 4, 3) at 512,
    233 registers, 81 KB shared, two per SM (pipelined: the table prefetch adds 32 KB of shared
    memory there, and with Triton 3.8 one program per SM).

    Timed after those changes (H100, 2026-11-27, same sweep, batch 1-32, contexts 4K and 32K):
    at 256, (64, 4, 1) words without prefetch is the best or level everywhere (batch 16-32
    0.82-0.91, batch 8 0.66-0.87; prefetch 0.01-0.02 lower); at 512, (32, 4, 3) with byte loads
    beat word loads at batch 8-32 (0.51-0.76 against 0.51-0.71) but spill registers with
    Triton 3.8 (5 LDL / 10 STL in the sm_90 compile), so the default keeps word loads. The
    split count is per head dim (``waves_for``): twice the programs at 256 (the next full run:
    batch 8 0.72-0.91, 16 0.76-0.89, 32 0.87-0.94 of copy bandwidth).
    """
    if triton.next_power_of_2(head_dim) <= 256:
        return 64, 4, 1, True, False
    return 32, 4, 3, True, False


# Configs the kernel benchmark's --sweep times on a GPU: (BLOCK_N, num_warps, num_stages, word
# loads, table prefetch). num_stages 1: no cp.async pipeline (loads into registers, decoded
# there). Byte loads (fourth element False) time word loads against them on the same machine
# (same kernel otherwise). sm_90 compile with Triton 3.6, registers (programs per SM by
# registers and shared memory) at head_dim 256 / 512: 64x4x1 prefetch 164 (3) / 254 (2);
# 64x4x1 158 (3) / 241 (2); 128x4x1 228 (2) / spills; 32x4x1 prefetch 154 (3) / 198 (2);
# 32x4x2 143 (4) / 228 (2); 32x4x3 168 (3) / 233 (2); 64x8x1 prefetch 128 (2) / 148 (1).
CANDIDATES = ((64, 4, 1, True, True), (64, 4, 1, True, False), (64, 4, 1, False, True),
              (128, 4, 1, True, True), (32, 4, 1, True, True), (32, 4, 2, True, False),
              (32, 4, 3, True, False), (32, 4, 3, False, False), (64, 8, 1, True, True))


def rows_per_program(rows: int, head_dim: int) -> int:
    """Query rows of one program: the whole GQA group (x q_len) up to a cap that keeps the fp32
    accumulator [rows, head_dim] near 64 registers per thread; at least 16 (MMA tile)."""
    cap = max(16, 8192 // triton.next_power_of_2(head_dim))
    return max(16, min(triton.next_power_of_2(max(rows, 1)), cap))


def choose_splits(batch: int, kv_heads: int, row_blocks: int, max_keys: int,
                  sms: int, block_n: int = 1, waves: int = WAVES) -> int:
    """Splits of each sequence's key range: enough programs for `waves` waves over the SMs, but no
    split shorter than MIN_SPLIT_KEYS keys. The kernel rounds a split's length up to block_n
    keys; the count is then cut to the splits that hold keys at max_keys (e.g. 4096 keys, 9
    splits, block_n 64: 8 splits of 512; a ninth would stay empty and still run and combine).
    Python ints only (graph capturable)."""
    programs = max(1, batch * kv_heads * row_blocks)
    want = triton.cdiv(waves * sms, programs)
    keys = max(max_keys, 1)
    splits = max(1, min(want, triton.cdiv(keys, MIN_SPLIT_KEYS)))
    per_split = triton.cdiv(triton.cdiv(keys, splits), block_n) * block_n
    return triton.cdiv(keys, per_split)


# One word of four e4m3 bytes -> four fp16 (bytes 0..3, little-endian), by the SM89+ instruction.
_E4M3X4_TO_F16_PTX = tl.constexpr("""{
    .reg .b16 lo, hi;
    .reg .b32 f01, f23;
    mov.b32 {lo, hi}, $4;
    cvt.rn.f16x2.e4m3x2 f01, lo;
    cvt.rn.f16x2.e4m3x2 f23, hi;
    mov.b32 {$0, $1}, f01;
    mov.b32 {$2, $3}, f23;
}""")


@triton.jit
def _decode_codes(code, HW_CVT: tl.constexpr, DOT_F32: tl.constexpr):
    """e4m3 bytes -> fp16 (value, or value * 2**-8 by bits), or fp32 for the interpreter."""
    if HW_CVT:
        v = code.to(tl.float8e4nv, bitcast=True).to(tl.float16)
    else:
        c = code.to(tl.int16)
        v = (((c & 0x80) << 8) | ((c & 0x7F) << 7)).to(tl.float16, bitcast=True)
    if DOT_F32:
        v = v.to(tl.float32)
    return v


@triton.jit
def _byte_fp16(word, i: tl.constexpr):
    """Byte i of int32 words, decoded by moving its bits into fp16 positions (value * 2**-8)."""
    c = ((word >> (8 * i)) & 0xFF).to(tl.int16)
    return (((c & 0x80) << 8) | ((c & 0x7F) << 7)).to(tl.float16, bitcast=True)


@triton.jit
def _decode_words(words, ROWS: tl.constexpr, COLS: tl.constexpr, HW_CVT: tl.constexpr,
                  DOT_F32: tl.constexpr):
    """int32 words [ROWS, COLS // 4] of e4m3 codes -> fp16 [ROWS, COLS] in memory order.

    Why words: decoded from bytes, Triton moves the tile's layout change (to the MMA operand
    layout) before the decode, onto the 8-bit codes, and reads the transposed V operand from
    shared memory one byte per instruction (LDS.U8: 128 per thread and 64-key step at head_dim
    256). The four values of a word come out of one
    conversion and are interleaved by join + reshape, which the layout change cannot cross:
    it then moves fp16 with 16-byte stores and ldmatrix."""
    if HW_CVT:
        b0, b1, b2, b3 = tl.inline_asm_elementwise(
            _E4M3X4_TO_F16_PTX, "=h,=h,=h,=h,r", [words], dtype=(tl.float16,) * 4,
            is_pure=True, pack=1)
    else:
        b0 = _byte_fp16(words, 0)
        b1 = _byte_fp16(words, 1)
        b2 = _byte_fp16(words, 2)
        b3 = _byte_fp16(words, 3)
    # join(join(b0, b2), join(b1, b3))[r, w, i, j] = b[2i + j]: row-major order b0 b1 b2 b3.
    v = tl.reshape(tl.join(tl.join(b0, b2), tl.join(b1, b3)), (ROWS, COLS))
    if DOT_F32:
        v = v.to(tl.float32)
    return v


@triton.jit
def _decode_tile(raw, ROWS: tl.constexpr, COLS: tl.constexpr, WORDS: tl.constexpr,
                 HW_CVT: tl.constexpr, DOT_F32: tl.constexpr):
    """A raw tile (int32 words or bytes, per WORDS) -> fp16 (fp32 for the interpreter)."""
    if WORDS:
        tile = _decode_words(raw, ROWS, COLS, HW_CVT, DOT_F32)
    else:
        tile = _decode_codes(raw, HW_CVT, DOT_F32)
    return tile


@triton.jit
def _table_lookup(table_row, pos, end, TABLE_COLS, BLOCK_SIZE: tl.constexpr):
    """Block ids of key positions; -1 past end or past the table's width (never read)."""
    col = pos // BLOCK_SIZE
    return tl.load(table_row + col, mask=(pos < end) & (col < TABLE_COLS), other=-1)


@triton.jit
def _decode_kernel(q_ptr, kc_ptr, vc_ptr, table_ptr, lens_ptr, ks_ptr, vs_ptr, out_ptr,
                   acc_ws, ml_ws, qk_scale, v_fold, Q_LEN, HQ, HKV, ROW_STRIDE, ROW_WORDS,
                   TABLE_STRIDE, TABLE_COLS, NUM_BLOCKS, WINDOW, SPLITS,
                   GROUP: tl.constexpr, BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr,
                   BLOCK_D: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_R: tl.constexpr,
                   BLOCK_N: tl.constexpr, ROW_BLOCKS: tl.constexpr, SINGLE: tl.constexpr, K_PER_HEAD: tl.constexpr,
                   V_PER_HEAD: tl.constexpr, HW_CVT: tl.constexpr, DOT_F32: tl.constexpr,
                   HAS_WINDOW: tl.constexpr, BF16_BY_BITS: tl.constexpr,
                   WORDS: tl.constexpr, PREFETCH: tl.constexpr, V_FIRST: tl.constexpr):
    pid = tl.program_id(0)
    split = tl.program_id(1)
    rb = pid % ROW_BLOCKS
    bh = pid // ROW_BLOCKS
    h = bh % HKV
    b = (bh // HKV).to(tl.int64)

    # Query rows: row r of the group is query token r // GROUP, head h * GROUP + r % GROUP.
    r = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = r < GROUP * Q_LEN
    t = r // GROUP
    head = h * GROUP + r % GROUP
    out_row = (b * Q_LEN + t) * HQ + head  # row of q / out viewed as [B * q_len * HQ, D]
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q = tl.load(q_ptr + out_row[:, None] * HEAD_DIM + d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)
    else:
        q = q.to(tl.float16)

    # Key range of this program's sequence; query token t sits at position seq_len - q_len + t.
    seq_len = tl.load(lens_ptr + b).to(tl.int32)
    q_pos = seq_len - Q_LEN + t
    hi = tl.maximum(seq_len, 0)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(seq_len - Q_LEN - WINDOW + 1, 0)
    lo = tl.minimum(lo, hi)
    per_split = tl.cdiv(tl.cdiv(hi - lo, SPLITS), BLOCK_N) * BLOCK_N
    start = lo + split * per_split
    end = tl.minimum(start + per_split, hi)

    if K_PER_HEAD:
        k_scale = tl.load(ks_ptr + h)
    else:
        k_scale = tl.load(ks_ptr)
    if V_PER_HEAD:
        v_scale = tl.load(vs_ptr + h)
    else:
        v_scale = tl.load(vs_ptr)
    score_scale = qk_scale * k_scale  # sm_scale * log2(e) * fold * k_scale

    m_i = tl.full([BLOCK_R], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    head_off = h.to(tl.int64) * HEAD_DIM
    head_off_w = h.to(tl.int64) * (HEAD_DIM // 4)
    w = tl.arange(0, BLOCK_W)
    w_ok = w < HEAD_DIM // 4
    n = tl.arange(0, BLOCK_N)
    table_row = table_ptr + b * TABLE_STRIDE
    # PREFETCH: block ids one step ahead, so the cache loads of a step wait on one global load
    # (theirs), not on the table's load before them (costs registers: see config_for).
    next_block = _table_lookup(table_row, start + n, end, TABLE_COLS, BLOCK_SIZE)
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + n
        if PREFETCH:
            block = next_block
            next_block = _table_lookup(table_row, pos + BLOCK_N, end, TABLE_COLS, BLOCK_SIZE)
        else:
            block = _table_lookup(table_row, pos, end, TABLE_COLS, BLOCK_SIZE)
        ok = (pos < end) & (block >= 0) & (block < NUM_BLOCKS)
        # Rows of keys that are not `ok` may point anywhere: their loads are masked. (Clamping
        # them with tl.where would hide the 16-byte alignment from Triton: byte loads.)
        slot = block.to(tl.int64) * BLOCK_SIZE + pos % BLOCK_SIZE
        # V_FIRST (num_stages 1, loads straight into registers): V's tile is loaded first.
        # Triton places K's layout change (a shared-memory round trip with a barrier, which
        # waits for K's data) right after K's load, so a V load written after K's goes out only
        # once K's data is back: two memory round trips per step, not one. With cp.async
        # pipelining (num_stages > 1) both loads are issued stages ahead either way, and K
        # first needs fewer registers.
        if WORDS:  # 16-byte loads of int32 words, decoded by _decode_words (see there why)
            offs = (slot * ROW_WORDS + head_off_w)[:, None] + w[None, :]
            kv_mask = ok[:, None] & w_ok[None, :]
            k_ptrs = kc_ptr.to(tl.pointer_type(tl.int32)) + offs
            v_ptrs = vc_ptr.to(tl.pointer_type(tl.int32)) + offs
        else:
            offs = (slot * ROW_STRIDE + head_off)[:, None] + d[None, :]
            kv_mask = ok[:, None] & d_ok[None, :]
            k_ptrs = kc_ptr + offs
            v_ptrs = vc_ptr + offs
        if V_FIRST:
            v_raw = tl.load(v_ptrs, mask=kv_mask, other=0)
            k_raw = tl.load(k_ptrs, mask=kv_mask, other=0)
        else:
            k_raw = tl.load(k_ptrs, mask=kv_mask, other=0)
            v_raw = tl.load(v_ptrs, mask=kv_mask, other=0)
        k = _decode_tile(k_raw, BLOCK_N, BLOCK_D, WORDS, HW_CVT, DOT_F32)
        if not V_FIRST:  # pipelined: decoding V here needs fewer registers (sm_90 compile)
            v = _decode_tile(v_raw, BLOCK_N, BLOCK_D, WORDS, HW_CVT, DOT_F32)

        s = tl.dot(q, tl.trans(k)) * score_scale
        allowed = ok[None, :] & (pos[None, :] <= q_pos[:, None])
        if HAS_WINDOW:
            allowed = allowed & (pos[None, :] > q_pos[:, None] - WINDOW)
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no (-inf) - (-inf)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if V_FIRST:  # codes in registers: 4x fewer registers than fp16 across QK^T, softmax
            v = _decode_tile(v_raw, BLOCK_N, BLOCK_D, WORDS, HW_CVT, DOT_F32)
        if DOT_F32:
            pv = tl.dot(p, v)
        else:
            pv = tl.dot(p.to(tl.float16), v)
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    acc = acc * (v_scale * v_fold)
    o_mask = row_ok[:, None] & d_ok[None, :]
    if SINGLE:
        denom = tl.where(l_i > 0, l_i, 1.0)
        out = tl.where((l_i > 0)[:, None], acc / denom[:, None], 0.0)
        tl.store(out_ptr + out_row[:, None] * HEAD_DIM + d[None, :],
                 _bits.cast_out(out, out_ptr.dtype.element_ty, BF16_BY_BITS), mask=o_mask)
    else:
        ws_row = out_row * SPLITS + split
        tl.store(acc_ws + ws_row[:, None] * HEAD_DIM + d[None, :], acc, mask=o_mask)
        tl.store(ml_ws + ws_row * 2, m_i, mask=row_ok)
        tl.store(ml_ws + ws_row * 2 + 1, l_i, mask=row_ok)


@triton.jit
def _combine_kernel(acc_ws, ml_ws, out_ptr, SPLITS, HEAD_DIM: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, BF16_BY_BITS: tl.constexpr):
    """out[row, dims] = sum_s 2**(m_s - M) acc_s / sum_s 2**(m_s - M) l_s over the splits.

    One program per (row, BLOCK_D dims), BLOCK_S splits per step as one [BLOCK_S, BLOCK_D]
    load: a loop of one dependent load per split cost ~1 us each at 100+ splits (batch 1, long
    context). The reduction order is fixed by the shapes: the same bits on every run."""
    row = tl.program_id(0).to(tl.int64)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    s = tl.arange(0, BLOCK_S)
    big = tl.full([BLOCK_S], float("-inf"), tl.float32)
    for s0 in range(0, SPLITS, BLOCK_S):
        big = tl.maximum(big, tl.load(ml_ws + (row * SPLITS + s0 + s) * 2,
                                      mask=s0 + s < SPLITS, other=float("-inf")))
    top = tl.max(big, 0)
    top_safe = tl.where(top == float("-inf"), 0.0, top)
    acc = tl.zeros([BLOCK_D], tl.float32)
    denom = tl.zeros([BLOCK_S], tl.float32)
    for s0 in range(0, SPLITS, BLOCK_S):
        ok = s0 + s < SPLITS
        base = row * SPLITS + s0 + s
        w = tl.math.exp2(tl.load(ml_ws + base * 2, mask=ok, other=float("-inf")) - top_safe)
        denom += w * tl.load(ml_ws + base * 2 + 1, mask=ok, other=0.0)
        part = tl.load(acc_ws + base[:, None] * HEAD_DIM + d[None, :],
                       mask=ok[:, None] & d_ok[None, :], other=0.0)
        acc += tl.sum(w[:, None] * part, 0)
    total = tl.sum(denom, 0)
    out = tl.where(total > 0, acc / tl.where(total > 0, total, 1.0), 0.0)
    tl.store(out_ptr + row * HEAD_DIM + d,
             _bits.cast_out(out, out_ptr.dtype.element_ty, BF16_BY_BITS), mask=d_ok)


def auto_splits(q, key_cache, block_table, window, max_seq_len, block_n) -> int:
    """The launcher's split count for num_splits 0 (choose_splits on the call's shapes)."""
    batch, q_len, hq, dim = q.shape
    _, block_size, hkv, _ = key_cache.shape
    row_blocks = triton.cdiv((hq // hkv) * q_len, rows_per_program((hq // hkv) * q_len, dim))
    capacity = block_table.shape[1] * block_size
    max_keys = min(max_seq_len, capacity) if max_seq_len > 0 else capacity
    if window > 0:
        max_keys = min(max_keys, window + q_len - 1)
    index = q.device.index if q.is_cuda else None
    return choose_splits(batch, hkv, row_blocks, max_keys, sm_count(q.device.type, index),
                         block_n, waves_for(dim))


def _hw_cvt(device: torch.device) -> bool:
    """The e4m3 -> fp16 conversion instruction exists from SM89 (Ada, Hopper) on."""
    if device.type != "cuda":
        return False
    from nvfp4_kernels.backends import registry
    return registry.capability(device) >= (8, 9)


def attention_decode(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                     sm_scale, window, max_seq_len, num_splits, *, config=None, out=None,
                     hw_cvt: bool | None = None):
    """q [B, q_len, HQ, D] -> out [B, q_len, HQ, D] (q's dtype); see the module docstring.

    value_cache None: V is read from key_cache. window 0: none. max_seq_len 0: the block table's
    capacity. num_splits 0: choose_splits. config: (BLOCK_N, num_warps, num_stages[, word
    loads[, table prefetch]]) as config_for returns it (omitted: word loads on, prefetch off);
    word loads apply where head_dim % 4 == 0 and the caches are 4-byte aligned."""
    batch, q_len, hq, dim = q.shape
    num_blocks, block_size, hkv, _ = key_cache.shape
    if out is None:
        out = torch.empty_like(q)
    if out.numel() == 0:
        return out
    group = hq // hkv
    block_n, warps, stages, *flags = config or config_for(dim)
    word_loads, prefetch = (tuple(flags) + (True, False)[len(flags):])[:2]  # 3-tuples too
    block_d = triton.next_power_of_2(dim)
    block_r = rows_per_program(group * q_len, dim)
    row_blocks = triton.cdiv(group * q_len, block_r)
    if num_splits <= 0:
        num_splits = auto_splits(q, key_cache, block_table, window, max_seq_len, block_n)
    hw = (_hw_cvt(q.device) if hw_cvt is None else hw_cvt) and not interpreting()
    fold = 1.0 if hw else _BITS_FOLD
    if num_splits > 1:
        acc_ws = torch.empty((batch * q_len * hq * num_splits, dim), dtype=torch.float32,
                             device=q.device)
        ml_ws = torch.empty((batch * q_len * hq * num_splits, 2), dtype=torch.float32,
                            device=q.device)
    else:
        acc_ws = ml_ws = out  # unused (the SPLITS == 1 branch is compiled out)
    kc = key_cache.view(torch.uint8)
    vc = kc if value_cache is None else value_cache.view(torch.uint8)
    # Word (int32) loads need 4-byte aligned rows: head_dim % 4 and aligned base pointers.
    words = word_loads and dim % 4 == 0 and kc.data_ptr() % 4 == 0 and vc.data_ptr() % 4 == 0
    ks = k_scale.reshape(-1).float()
    vs = (k_scale if value_cache is None and v_scale is None else v_scale).reshape(-1).float()
    grid = (batch * hkv * row_blocks, num_splits)
    with grid_device(q):
        _decode_kernel[grid](
            q, kc, vc, block_table, seq_lens, ks, vs, out, acc_ws, ml_ws,
            float(sm_scale) * LOG2E * fold, fold, q_len, hq, hkv, hkv * dim, hkv * dim // 4,
            block_table.stride(0), block_table.shape[1], num_blocks, int(window), num_splits,
            GROUP=group, BLOCK_SIZE=block_size, HEAD_DIM=dim, BLOCK_D=block_d, BLOCK_R=block_r,
            BLOCK_W=max(block_d // 4, 1), BLOCK_N=block_n, ROW_BLOCKS=row_blocks,
            SINGLE=num_splits == 1,
            K_PER_HEAD=ks.numel() > 1, V_PER_HEAD=vs.numel() > 1, HW_CVT=hw,
            DOT_F32=interpreting(), HAS_WINDOW=window > 0,
            BF16_BY_BITS=interpreting(), WORDS=words, PREFETCH=bool(prefetch),
            V_FIRST=stages == 1,
            num_warps=warps, num_stages=stages)
        if num_splits > 1:
            combine_d = min(block_d, COMBINE_BLOCK_D)
            _combine_kernel[(batch * q_len * hq, triton.cdiv(dim, combine_d))](
                acc_ws, ml_ws, out, num_splits, HEAD_DIM=dim, BLOCK_D=combine_d,
                BLOCK_S=COMBINE_BLOCK_S, BF16_BY_BITS=interpreting(), num_warps=4)
    return out


__all__ = ["CANDIDATES", "LOG2E", "attention_decode", "auto_splits", "choose_splits", "config_for",
           "rows_per_program", "waves_for"]
