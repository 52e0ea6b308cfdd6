"""Decode attention that reads the FP8 (e4m3) paged KV cache directly.

The cache is the one ``nvfp4_kernels.kv_cache.write`` fills (vLLM's flash layout
``[num_blocks, block_size, kv_heads, head_dim]``, ``x_hat = float(code) * scale``), so a decode
step is: write the new token's K/V, then ``decode`` over the cache. No gather to bf16, no second
pass over the cache.

CUDA-graph capturable: lengths and block ids stay on the device; the work split is chosen from
shapes and Python ints (``max_seq_len``), never from ``seq_lens`` values.
"""

from __future__ import annotations

import math

import torch

from nvfp4_kernels import _scales
from nvfp4_kernels import ops as _ops


def decode(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale=None, *,
           sm_scale: float | None = None, window: int | None = None,
           max_seq_len: int | None = None, num_splits: int | None = None,
           backend: str | None = None) -> torch.Tensor:
    """softmax(q K^T * sm_scale) V for the last query token(s) of each sequence.

    q: [batch, q_heads, head_dim] (one token per sequence) or [batch, q_len, q_heads, head_dim]
        (q_len tokens per sequence, e.g. speculative decoding: token t sits at position
        seq_lens - q_len + t and sees the keys up to its own position); bf16 or fp16.
    key_cache, value_cache: e4m3 (or uint8 views) ``[num_blocks, block_size, kv_heads, head_dim]``
        holding every position of each sequence, the new token(s) included (write first).
        ``value_cache=None``: V is read from the key cache (K-equals-V attention, one cache).
    block_table: int32/int64 [batch, max_blocks]; seq_lens: int32/int64 [batch], keys per
        sequence (the new tokens included). A length of 0 gives zeros. Entries of -1 or outside
        the cache leave their keys out of the softmax; entries past a sequence's length are never
        read (padding).
    k_scale, v_scale: dequant scales, a float or float32 tensor with 1 or kv_heads values;
        v_scale defaults to k_scale when value_cache is None.
    sm_scale: score scale, default 1/sqrt(head_dim).
    window: sliding window: a query at position p sees keys p - window < key <= p.
    max_seq_len: an upper bound of seq_lens the caller knows (the scheduler's longest sequence);
        it only sizes the split-KV work split (default: the block table's capacity).
    num_splits: force the split-KV count (default: chosen from batch, heads, length and SMs).
    q_heads must be a multiple of kv_heads (GQA: q head j uses KV head j // (q_heads/kv_heads)).
    Returns q's shape and dtype.
    """
    if isinstance(q, torch.Tensor) and q.dim() not in (3, 4):
        raise ValueError(f"q: expected [batch, q_heads, head_dim] or [batch, q_len, q_heads, "
                         f"head_dim], got shape {tuple(q.shape)}, dtype {q.dtype}")
    squeeze = q.dim() == 3
    q4 = q.unsqueeze(1) if squeeze else q
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    device = q.device
    k_scale = _scales.per_call_scale("k_scale", k_scale, device)
    if v_scale is not None:
        v_scale = _scales.per_call_scale("v_scale", v_scale, device)
    out = _ops.attention_decode(q4, key_cache, value_cache, block_table, seq_lens, k_scale,
                                v_scale, float(sm_scale), 0 if window is None else window,
                                0 if max_seq_len is None else max_seq_len,
                                0 if num_splits is None else num_splits, backend)
    return out.squeeze(1) if squeeze else out


__all__ = ["decode"]
