"""The ``reference`` backend: ``nvfp4_kernels.reference`` behind the backend interface.

Runs on any device. On a GPU it is only chosen automatically for an op that no kernel backend
implements; it is slow (it materialises dequantized matrices) but it is the specification.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _global_scale
from nvfp4_kernels import reference as ref

OPS = frozenset({"quantize", "quantize_computed_scale", "dequantize", "gemm", "gemm_w4a16",
                 "kv_cache_write", "kv_cache_gather", "attention_decode"})


def why_unavailable(device: torch.device) -> str | None:
    return None


def quantize(x, global_scale, scale_layout):
    data, scale, _ = ref.quantize(x, global_scale, scale_layout)
    return data, scale


def quantize_computed_scale(x, scale_layout, weight_alpha):
    data, scale, gs = ref.quantize(x, None, scale_layout)
    return data, scale, gs, _global_scale.gemm_alpha(weight_alpha, gs)


def dequantize(data, scale, global_scale, scale_layout, dtype):
    return ref.dequantize(data, scale, global_scale, scale_layout, dtype)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    return ref.gemm_w4a4(a, b, a_scale, b_scale, alpha, out_dtype, bias)


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias):
    return ref.gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)


# Out-of-range indices behave as in the cuda and triton kernels (skipped, or read as zero), so
# that the three backends agree on every input; nvfp4_kernels.debug turns them into errors.

def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    num_slots = key_cache.shape[0] * key_cache.shape[1]
    slots = torch.where(slot_mapping < num_slots, slot_mapping, -1)  # < 0 skips already
    ref.kv_cache_write(key, value, key_cache, value_cache, slots, k_scale, v_scale)


def gather_slots(key_cache, block_table, seq_lens, total_tokens):
    """(slot of each output row, whether it is in range) for total_tokens rows; rows past
    sum(seq_lens), positions past the block table and block ids outside the cache are not."""
    num_blocks, block_size = key_cache.shape[0], key_cache.shape[1]
    device = block_table.device
    lens = seq_lens.long()
    t = torch.arange(total_tokens, device=device)
    ends = torch.cumsum(lens, 0)
    seq = torch.searchsorted(ends, t, right=True)  # first sequence whose end is past t
    in_batch = seq < lens.numel()
    seq = seq.clamp(max=max(lens.numel() - 1, 0))
    if lens.numel() == 0 or block_table.shape[1] == 0:
        return torch.zeros_like(t), torch.zeros_like(t, dtype=torch.bool)
    pos = t - (ends[seq] - lens[seq])
    col = torch.div(pos, block_size, rounding_mode="floor")
    ok = in_batch & (pos >= 0) & (pos < lens[seq]) & (col < block_table.shape[1])
    block = block_table[seq, col.clamp(0, block_table.shape[1] - 1)].long()
    ok &= (block >= 0) & (block < num_blocks)
    return torch.where(ok, block * block_size + pos % block_size, 0), ok


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    total_tokens, dtype):
    slots, ok = gather_slots(key_cache, block_table, seq_lens, total_tokens)
    out = []
    for cache, scale in ((key_cache, k_scale), (value_cache, v_scale)):
        flat = cache.view(torch.float8_e4m3fn).reshape(-1, *cache.shape[2:])
        s = scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float().reshape(())
        if flat.shape[0] == 0:  # a cache without blocks: every row is out of range
            slots = torch.zeros_like(slots)
            flat = torch.zeros((1, *flat.shape[1:]), dtype=flat.dtype, device=flat.device)
        vals = flat[slots].float() * s
        out.append(torch.where(ok[:, None, None], vals, 0.0).to(dtype))
    return out[0], out[1]


def attention_decode(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                     sm_scale, window, max_seq_len, num_splits):
    # max_seq_len and num_splits only shape a kernel's work split; the result does not depend
    # on them.
    out = ref.attention_decode(q, key_cache, value_cache, block_table, seq_lens, k_scale,
                               v_scale, sm_scale, window or None)
    return out.to(q.dtype)


def get(op: str):
    return globals()[op]
