"""FP8 (e4m3) paged KV cache: write (quantize + scatter) and gather (gather + dequantize).

Cache layout [num_blocks, block_size, heads, head_dim] is contiguous, so slot s (= block *
block_size + offset) starts at element s * heads * head_dim: no block/offset split is needed on
the write side. One program moves one token x BLOCK_H heads for both K and V. The e4m3 rounding
is done on float32 bits (``_bits.e4m3_rne``), so the bytes are the reference's on any GPU, and
caches stored as uint8 or float8_e4m3fn are both written through a uint8 view.

Index values are never checked on the host (that would synchronise and break CUDA-graph
capture): slots outside [0, num_slots) are skipped by the write, and gathered rows whose token is
past sum(seq_lens), whose position is past the block table or whose block id is outside
[0, num_blocks) are zero. ``nvfp4_kernels.debug`` turns such inputs into errors instead.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import dense, grid_device, interpreting, launch

_TILE = 4096  # elements per program per tensor: 32 per thread at 4 warps
_NUM_WARPS = 4
# (tile elements, num_warps) candidates that benchmarks/bench_kv_cache.py --sweep times on a GPU;
# the default stays until a measured candidate beats it (the write measured ~29 % of copy
# bandwidth eagerly on the H100 at 8192 tokens x 16 heads x 256).
CANDIDATES = ((4096, 4), (2048, 4), (8192, 8), (4096, 8), (1024, 2))


def _blocks(heads: int, dim: int, tile: int = _TILE) -> tuple[int, int]:
    block_d = triton.next_power_of_2(dim)
    block_h = max(1, min(triton.next_power_of_2(heads), tile // block_d))
    return block_h, block_d


@triton.jit
def _quant_store(src_ptr, cache_ptr, scale_ptr, t, slot, heads, dims, mask, H, D,
                 PER_HEAD: tl.constexpr):
    x = tl.load(src_ptr + t * H * D + heads[:, None] * D + dims[None, :], mask=mask, other=0.0)
    if PER_HEAD:
        scale = tl.load(scale_ptr + heads, mask=heads < H, other=1.0)[:, None]
    else:
        scale = tl.load(scale_ptr)
    v = tl.math.div_rn(x.to(tl.float32), tl.zeros_like(x.to(tl.float32)) + scale)
    code, _ = _bits.e4m3_rne(tl.minimum(tl.maximum(v, -448.0), 448.0))
    tl.store(cache_ptr + slot * H * D + heads[:, None] * D + dims[None, :], code.to(tl.uint8),
             mask=mask)


@triton.jit
def _kv_write_kernel(key_ptr, value_ptr, kc_ptr, vc_ptr, slot_ptr, ks_ptr, vs_ptr, H, D, NUM_SLOTS,
                     K_PER_HEAD: tl.constexpr, V_PER_HEAD: tl.constexpr,
                     BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    mask = (heads < H)[:, None] & (dims < D)[None, :] & (slot >= 0) & (slot < NUM_SLOTS)
    _quant_store(key_ptr, kc_ptr, ks_ptr, t, slot, heads, dims, mask, H, D, K_PER_HEAD)
    _quant_store(value_ptr, vc_ptr, vs_ptr, t, slot, heads, dims, mask, H, D, V_PER_HEAD)


@triton.jit
def _load_dequant(cache_ptr, scale_ptr, out_ptr, t, slot, heads, dims, mask, store_mask, H, D,
                  PER_HEAD: tl.constexpr, BF16_BY_BITS: tl.constexpr):
    # Masked-off cache reads give code 0, which dequantizes to +0: the zero fill.
    code = tl.load(cache_ptr + slot * H * D + heads[:, None] * D + dims[None, :], mask=mask,
                   other=0)
    if PER_HEAD:
        scale = tl.load(scale_ptr + heads, mask=heads < H, other=1.0)[:, None]
    else:
        scale = tl.load(scale_ptr)
    val = _bits.e4m3_to_fp32(code) * scale
    tl.store(out_ptr + t * H * D + heads[:, None] * D + dims[None, :],
             _bits.cast_out(val, out_ptr.dtype.element_ty, BF16_BY_BITS), mask=store_mask)


@triton.jit
def _kv_gather_kernel(kc_ptr, vc_ptr, table_ptr, cu_ptr, lens_ptr, ks_ptr, vs_ptr, ko_ptr,
                      vo_ptr, B, H, D, TABLE_STRIDE, TABLE_COLS, BLOCK_SIZE, NUM_BLOCKS,
                      SEARCH_STEPS: tl.constexpr, K_PER_HEAD: tl.constexpr,
                      V_PER_HEAD: tl.constexpr, BF16_BY_BITS: tl.constexpr,
                      BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    # Sequence of output token t: the first i with cu[i] > t (cu = inclusive cumsum of lengths),
    # by binary search, so the host never has to know the longest sequence (no sync).
    lo = tl.zeros([], dtype=tl.int64)
    hi = tl.zeros([], dtype=tl.int64) + B
    for _ in tl.static_range(SEARCH_STEPS):
        mid = tl.minimum((lo + hi) // 2, B - 1)
        cu_mid = tl.load(cu_ptr + mid)
        active = lo < hi
        lo = tl.where(active & (cu_mid <= t), mid + 1, lo)
        hi = tl.where(active & (cu_mid > t), mid, hi)
    # lo == B: t is past sum(seq_lens). Every index below is clamped to something loadable and
    # `ok` masks the cache reads, so a bad length or block id yields zeros, never a stray read.
    seq = tl.minimum(lo, B - 1)
    length = tl.load(lens_ptr + seq).to(tl.int64)
    pos = t - (tl.load(cu_ptr + seq) - length)
    col = pos // BLOCK_SIZE
    in_table = (lo < B) & (pos >= 0) & (pos < length) & (col < TABLE_COLS)
    block = tl.load(table_ptr + seq * TABLE_STRIDE + tl.where(in_table, col, 0),
                    mask=in_table, other=-1).to(tl.int64)
    ok = in_table & (block >= 0) & (block < NUM_BLOCKS)
    slot = tl.where(ok, block * BLOCK_SIZE + pos % BLOCK_SIZE, 0)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    store_mask = (heads < H)[:, None] & (dims < D)[None, :]
    _load_dequant(kc_ptr, ks_ptr, ko_ptr, t, slot, heads, dims, store_mask & ok, store_mask, H,
                  D, K_PER_HEAD, BF16_BY_BITS)
    _load_dequant(vc_ptr, vs_ptr, vo_ptr, t, slot, heads, dims, store_mask & ok, store_mask, H,
                  D, V_PER_HEAD, BF16_BY_BITS)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale, *,
                   config=None):
    """cache[slot_mapping[t]] = e4m3_satfinite(x[t] / scale), skipping slot -1; in place.

    config: (tile elements, num_warps), default (_TILE, _NUM_WARPS)."""
    tile, warps = config or (_TILE, _NUM_WARPS)
    tokens, heads, dim = key.shape
    if tokens == 0:
        return
    block_h, block_d = _blocks(heads, dim, tile)
    grid = (tokens, triton.cdiv(heads, block_h))
    # Scales are float32 with 1 or `heads` values (the op's checks), loaded with stride 1.
    with grid_device(key):
        launch(_kv_write_kernel, grid,
               (key, value, key_cache.view(torch.uint8), value_cache.view(torch.uint8),
                slot_mapping, dense(k_scale), dense(v_scale), heads, dim,
                key_cache.shape[0] * key_cache.shape[1], k_scale.numel() > 1,
                v_scale.numel() > 1, block_h, block_d), num_warps=warps)


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    total_tokens, dtype, *, out=None, config=None):
    """Paged cache -> dequantized K, V [total_tokens, heads, head_dim], sequences concatenated.

    out: optional (k, v) tensors to write into. config: as kv_cache_write's."""
    tile, warps = config or (_TILE, _NUM_WARPS)
    _, block_size, heads, dim = key_cache.shape
    if out is None:
        shape = (total_tokens, heads, dim)
        out = (torch.empty(shape, dtype=dtype, device=key_cache.device),
               torch.empty(shape, dtype=dtype, device=key_cache.device))
    batch = seq_lens.numel()
    if total_tokens == 0:
        return out
    if batch == 0:  # no sequence holds any row: all zero, as out-of-range rows are
        out[0].zero_()
        out[1].zero_()
        return out
    cu = torch.cumsum(seq_lens.to(torch.int64), 0)
    block_h, block_d = _blocks(heads, dim, tile)
    grid = (total_tokens, triton.cdiv(heads, block_h))
    with grid_device(key_cache):
        launch(_kv_gather_kernel, grid,
               (key_cache.view(torch.uint8), value_cache.view(torch.uint8), block_table, cu,
                seq_lens, dense(k_scale), dense(v_scale), out[0], out[1], batch, heads, dim,
                block_table.stride(0), block_table.shape[1], block_size, key_cache.shape[0],
                batch.bit_length() + 1, k_scale.numel() > 1, v_scale.numel() > 1,
                interpreting(), block_h, block_d), num_warps=warps)
    return out
