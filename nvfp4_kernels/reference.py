"""The NVFP4 numerics, executable: docs/format.md written as plain PyTorch.

Every other backend is tested bit for bit (quantize, dequantize, KV cache) or against the accuracy
bar (GEMM) with these functions, so they favour obviousness over speed. They run on any device,
CPU included, and quantize along the last dim of inputs with any leading dims.

Order of float32 operations matters for bit-exactness; each step below is one IEEE float32
operation in the order docs/format.md gives, and must stay that way.
"""

from __future__ import annotations

import math

import torch

BLOCK = 16  # elements sharing one e4m3 scale
E2M1_MAX = 6.0
E4M3_MAX = 448.0
# Magnitudes of the eight E2M1 codes 0..7; bit 3 is the sign.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Rounding boundaries between consecutive magnitudes, and whether the boundary itself rounds up.
# A tie goes to the even code: 0.25->0 (code 0), 0.75->1 (code 2), 1.25->1 (code 2),
# 1.75->2 (code 4), 2.5->2 (code 4), 3.5->4 (code 6), 5->4 (code 6).
_E2M1_BOUNDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True),
                (2.5, False), (3.5, True), (5.0, False))
SWIZZLE_ROWS = 128  # row tile of the swizzled scale layout
SWIZZLE_COLS = 4    # scale-column tile of the swizzled scale layout


def ceil_to(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def e2m1_lut(device=None, dtype=torch.float32) -> torch.Tensor:
    """All 16 E2M1 codes as numbers: index = code."""
    mags = torch.tensor(E2M1_VALUES, dtype=dtype, device=device)
    return torch.cat([mags, -mags])


# ---------------------------------------------------------------------------------------------
# Scales
# ---------------------------------------------------------------------------------------------

FLT_MAX = torch.finfo(torch.float32).max


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """Encode-direction global scale ``min(448*6/amax, FLT_MAX)`` as a 0-dim float32 tensor.

    amax is taken over the *finite* elements only, so one NaN or Inf changes nothing outside its
    own 16-element block (docs/format.md, "Non-finite and extreme input"); 1.0 when that amax is
    0 (all zero, empty, or nothing finite). The clamp keeps a tensor whose amax is below ~7.9e-36
    from getting ``gs = inf`` (and dequantizing to zero). Computed on x's device, no host sync.
    """
    if x.numel() == 0:
        return torch.ones((), dtype=torch.float32, device=x.device)
    mag = x.detach().abs()
    # NaN and +Inf (|x| is never -Inf) count as 0; in place on the temporary.
    mag = mag.nan_to_num_(nan=0.0, posinf=0.0) if mag.is_floating_point() else mag
    amax = mag.amax().float()
    # A fill, not torch.tensor(...): no host-to-device copy, so this is CUDA-graph capturable.
    # full / amax is an IEEE division (2688 / tensor would be reciprocal * 2688, rounded twice).
    gs = torch.full_like(amax, E4M3_MAX * E2M1_MAX) / amax
    gs = torch.clamp(gs, max=FLT_MAX)
    return torch.where(amax == 0, torch.ones_like(gs), gs)


def block_scales(x: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    """e4m3 scale of every 16-element block of the last dim: e4m3(min(gs*(amax*(1/6)), 448))."""
    rows, cols = x.shape  # 2-D; quantize() flattens leading dims
    amax = x.float().abs().reshape(rows, cols // BLOCK, BLOCK).amax(-1)
    sixth = torch.tensor(1.0 / 6.0, dtype=torch.float32)  # the float32 constant 1/6
    s = gs.float() * (amax * sixth.to(x.device))
    return torch.clamp(s, max=E4M3_MAX).to(torch.float8_e4m3fn)


def e2m1_rne(v: torch.Tensor) -> torch.Tensor:
    """float32 values already clamped to [-6, 6] -> E2M1 codes (uint8), round half to even."""
    a = v.abs()
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for bound, tie_rounds_up in _E2M1_BOUNDS:
        code += (a >= bound if tie_rounds_up else a > bound).to(torch.uint8)
    return code | ((v < 0).to(torch.uint8) << 3)


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., C] -> bytes [..., C/2]: element 2i in the low nibble, 2i+1 in the high."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_e2m1(data: torch.Tensor) -> torch.Tensor:
    """bytes [..., C/2] -> uint8 codes [..., C]."""
    codes = torch.stack([data & 0xF, data >> 4], dim=-1)
    return codes.reshape(*data.shape[:-1], data.shape[-1] * 2)


# ---------------------------------------------------------------------------------------------
# Scale layouts
# ---------------------------------------------------------------------------------------------

def swizzled_shape(rows: int, scale_cols: int) -> tuple[int, int]:
    return ceil_to(rows, SWIZZLE_ROWS), ceil_to(scale_cols, SWIZZLE_COLS)


def swizzle_scales(scale: torch.Tensor) -> torch.Tensor:
    """Linear [R, C/16] scales -> the 128x4 swizzled layout CUTLASS reads, as a zero-padded
    [ceil128(R), ceil4(C/16)] tensor whose bytes in memory order are the swizzled order:
    offset(r, c) = ((r//128)*(Cp/4) + c//4)*512 + (r%32)*16 + ((r//32)%4)*4 + c%4."""
    rows, cols = scale.shape
    rp, cp = swizzled_shape(rows, cols)
    padded = torch.zeros((rp, cp), dtype=scale.dtype, device=scale.device)
    padded[:rows, :cols] = scale
    # r = rb*128 + r4*32 + r32, c = cb*4 + c4  ->  memory order (rb, cb, r32, r4, c4)
    tiles = padded.view(rp // 128, 4, 32, cp // 4, 4).permute(0, 3, 2, 1, 4)
    return tiles.contiguous().view(rp, cp)


def unswizzle_scales(scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of swizzle_scales: swizzled bytes -> linear [rows, cols] (cols = C/16)."""
    rp, cp = swizzled_shape(rows, cols)
    if scale.numel() != rp * cp:
        raise ValueError(f"scale: swizzled scales for {rows}x{cols} need {rp * cp} elements "
                         f"({rp}x{cp}), got shape {tuple(scale.shape)}")
    tiles = scale.reshape(rp // 128, cp // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    return tiles.reshape(rp, cp)[:rows, :cols].contiguous()


# ---------------------------------------------------------------------------------------------
# Quantize / dequantize
# ---------------------------------------------------------------------------------------------

def quantize(x: torch.Tensor, gs: torch.Tensor | None = None, scale_layout: str = "swizzled"):
    """x (..., C) bf16/fp16/fp32 -> (data u8 (..., C/2), scale e4m3, gs f32 0-dim).

    Linear scales are (..., C/16); swizzled scales cover the flattened rows, [ceil128(R), ...].
    """
    lead, cols = x.shape[:-1], x.shape[-1]
    rows = math.prod(lead)
    x = x.reshape(rows, cols)
    gs = global_scale(x) if gs is None else gs.reshape(()).float()
    s = block_scales(x, gs)
    s32 = s.float()
    inv_gs = torch.ones((), device=x.device) / gs
    inv = torch.where(s32 == 0, torch.zeros_like(s32), 1.0 / (s32 * inv_gs))
    v = x.float().reshape(rows, cols // BLOCK, BLOCK) * inv.unsqueeze(-1)
    codes = e2m1_rne(torch.clamp(v, -E2M1_MAX, E2M1_MAX)).reshape(rows, cols)
    scale = swizzle_scales(s) if scale_layout == "swizzled" else s.reshape(*lead, cols // BLOCK)
    return pack_e2m1(codes).reshape(*lead, cols // 2), scale, gs


def linear_scales(scale: torch.Tensor, scale_layout: str, rows: int, cols: int) -> torch.Tensor:
    """Either layout -> linear [rows, cols/16] e4m3."""
    if scale_layout == "swizzled":
        return unswizzle_scales(scale, rows, cols // BLOCK)
    return scale.reshape(rows, cols // BLOCK)


def dequantize_unscaled(data: torch.Tensor, scale: torch.Tensor, scale_layout: str,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """lut[q] * s without the global scale, as a 2-D [R, C] matrix in `dtype` (exact in float32
    and float64); data may have leading dims, which are flattened into R."""
    cols = data.shape[-1] * 2
    rows = math.prod(data.shape[:-1])
    s = linear_scales(scale, scale_layout, rows, cols).to(dtype)
    vals = e2m1_lut(data.device, dtype)[unpack_e2m1(data.reshape(rows, cols // 2)).long()]
    return (vals.reshape(rows, cols // BLOCK, BLOCK) * s.unsqueeze(-1)).reshape(rows, cols)


def dequantize(data, scale, gs, scale_layout: str = "swizzled", dtype=torch.bfloat16):
    """x_hat = lut[q] * float(s) / gs in float32, then cast to dtype; shape (..., C)."""
    out = (dequantize_unscaled(data, scale, scale_layout) / gs.float()).to(dtype)
    return out.reshape(*data.shape[:-1], data.shape[-1] * 2)


# ---------------------------------------------------------------------------------------------
# GEMM references
# ---------------------------------------------------------------------------------------------

def _epilogue(acc, alpha, bias, out_dtype):
    out = acc * alpha.to(acc.dtype).reshape(-1)  # alpha: one value, or one per output column
    if bias is not None:
        out = out + bias.to(acc.dtype)
    return out.to(out_dtype)


def gemm_w4a4(a, b, a_scale, b_scale, alpha, out_dtype=torch.bfloat16, bias=None,
              compute_dtype=torch.float32):
    """D[M, N] = alpha * sum_k (lut*s)_a[m, k] * (lut*s)_b[n, k]; both scales swizzled."""
    a_hat = dequantize_unscaled(a, a_scale, "swizzled", compute_dtype)
    b_hat = dequantize_unscaled(b, b_scale, "swizzled", compute_dtype)
    return _epilogue(a_hat @ b_hat.T, alpha, bias, out_dtype)


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout="swizzled", out_dtype=torch.bfloat16,
               bias=None, compute_dtype=torch.float32):
    """D[M, N] = b_alpha * a @ (lut*s)_b^T for dense a; b_alpha = 1/gs_b (scalar or per column)."""
    b_hat = dequantize_unscaled(b, b_scale, scale_layout, compute_dtype)
    return _epilogue(a.to(compute_dtype) @ b_hat.T, b_alpha, bias, out_dtype)


# ---------------------------------------------------------------------------------------------
# FP8 KV cache (paged layout [num_blocks, block_size, num_heads, head_dim], as vLLM's flash layout)
# ---------------------------------------------------------------------------------------------

def e4m3_satfinite(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """e4m3(clamp(x / scale, -448, 448)); scale is one value or one per head (last-but-one dim)."""
    scale = scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float().reshape(())
    return torch.clamp(x.float() / scale, -E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    """Quantize key/value [T, H, D] and store token t at slot_mapping[t] (-1: skip). In place."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    block_size = key_cache.shape[1]
    for src, cache, scale in ((key, key_cache, k_scale), (value, value_cache, v_scale)):
        q = e4m3_satfinite(src[keep], scale).view(cache.dtype)
        cache[slots // block_size, slots % block_size] = q


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    dtype=torch.bfloat16):
    """Paged cache -> contiguous dequantized K, V [sum(seq_lens), H, D], sequences concatenated."""
    block_size = key_cache.shape[1]
    slots = []
    for i, n in enumerate(seq_lens.tolist()):
        pos = torch.arange(n, device=block_table.device)
        slots.append(block_table[i, pos // block_size].long() * block_size + pos % block_size)
    slots = torch.cat(slots) if slots else torch.zeros(0, dtype=torch.long,
                                                        device=block_table.device)
    out = []
    for cache, scale in ((key_cache, k_scale), (value_cache, v_scale)):
        flat = cache.view(torch.float8_e4m3fn).reshape(-1, *cache.shape[2:])
        s = scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float().reshape(())
        out.append((flat[slots].float() * s).to(dtype))
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# Decode attention over the FP8 paged KV cache
# ---------------------------------------------------------------------------------------------

def attention_decode(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                     sm_scale: float, window: int | None = None) -> torch.Tensor:
    """softmax(q K^T * sm_scale) V in float64 over the dequantized cache; [B, q_len, HQ, D].

    q: [B, q_len, HQ, D]; query token t of sequence b sits at position seq_lens[b] - q_len + t
    and sees the keys at positions p <= its own (and p > its own - window with a window). K/V
    of position p: cache row p % block_size of block block_table[b, p // block_size],
    dequantized as float(cache) * scale (per tensor or per KV head); value_cache None reads V
    from key_cache. Query head j uses KV head j // (HQ / kv_heads) (GQA). Keys whose block id is
    outside [0, num_blocks) (-1 included) are left out; a query with no key gives zeros.
    No value is read on the host (no sync).
    """
    batch, q_len, hq, dim = q.shape
    num_blocks, block_size, hkv, _ = key_cache.shape
    group = hq // hkv
    device = q.device
    keys = block_table.shape[1] * block_size
    pos = torch.arange(keys, device=device)
    lens = seq_lens.long().reshape(-1, 1)
    block = block_table.long()[:, pos // block_size] if keys else \
        torch.zeros((batch, 0), dtype=torch.long, device=device)
    ok = (block >= 0) & (block < num_blocks) & (pos < lens)  # [B, keys]
    slot = torch.where(ok, block * block_size + pos % block_size, 0)

    def dequant(cache, scale):
        flat = cache.view(torch.float8_e4m3fn).reshape(-1, hkv, dim)
        if flat.shape[0] == 0:  # a cache without blocks: no key is valid
            flat = torch.zeros((1, hkv, dim), dtype=flat.dtype, device=flat.device)
        s = scale.double().reshape(-1, 1)  # one value, or one per KV head
        return flat[slot].double() * s  # [B, keys, hkv, D]

    k = dequant(key_cache, k_scale)
    v = k if value_cache is None and v_scale is None else \
        dequant(key_cache if value_cache is None else value_cache, v_scale)
    q_pos = lens - q_len + torch.arange(q_len, device=device)  # [B, q_len]
    allowed = ok[:, None, :] & (pos <= q_pos[:, :, None])  # [B, q_len, keys]
    if window:
        allowed &= pos > q_pos[:, :, None] - window
    qg = q.double().reshape(batch, q_len, hkv, group, dim)
    scores = torch.einsum("btkgd,blkd->btkgl", qg, k) * sm_scale
    scores = scores.masked_fill(~allowed[:, :, None, None, :], float("-inf"))
    any_key = allowed.any(-1)[:, :, None, None, None]
    probs = torch.where(any_key, torch.softmax(scores, -1), 0.0)
    out = torch.einsum("btkgl,blkd->btkgd", probs, v)
    return out.reshape(batch, q_len, hq, dim)
