"""FP8 (e4m3) paged KV cache: write new tokens, gather sequences back.

Layout is vLLM's flash layout, ``[num_blocks, block_size, num_heads, head_dim]``, so caches made by
vLLM can be read and written directly. Scales are float32, one per tensor or one per head.

Both functions are CUDA-graph capturable (gather: when ``total_tokens`` is given): slot ids, block
ids and lengths are never read on the host. Out-of-range slots are skipped and out-of-range
rows/blocks gather as zero, inside the kernels; ``nk.debug.set_checks(True)`` (or
NVFP4_DEBUG_CHECKS=1) turns them into errors instead, at the cost of a sync per call.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _scales
from nvfp4_kernels import ops as _ops


def write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale, *,
          backend: str | None = None) -> None:
    """cache[slot] = e4m3_satfinite(x / scale) for every token whose slot is not -1 (in place).

    key, value: [tokens, heads, head_dim]; slot_mapping: int32/int64 [tokens]. Slots outside
    [0, num_blocks * block_size) are skipped like -1.
    """
    device = key.device
    _ops.kv_cache_write(key, value, key_cache, value_cache, slot_mapping,
                        _scales.per_call_scale("k_scale", k_scale, device),
                        _scales.per_call_scale("v_scale", v_scale, device), backend)


def gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, *,
           dtype: torch.dtype = torch.bfloat16, total_tokens: int | None = None,
           backend: str | None = None):
    """Dequantized K, V of each sequence, concatenated: [sum(seq_lens), heads, head_dim] each.

    Sequence i occupies rows cu[i]:cu[i+1] with cu = cumsum([0] + seq_lens) (flash-attn varlen).
    total_tokens: the number of output rows. Pass it (sum(seq_lens), known to the scheduler) to
    avoid the device-to-host sync that computes it, which a CUDA graph cannot capture. Rows past
    sum(seq_lens), and rows whose block id is outside the cache, are zero.
    """
    if total_tokens is None:
        total_tokens = int(seq_lens.sum()) if seq_lens.numel() else 0
    device = key_cache.device
    return _ops.kv_cache_gather(key_cache, value_cache, block_table, seq_lens,
                                _scales.per_call_scale("k_scale", k_scale, device),
                                _scales.per_call_scale("v_scale", v_scale, device),
                                total_tokens, dtype, backend)
