"""FP8 (e4m3) paged KV cache: write new tokens, gather sequences back.

Layout is vLLM's flash layout, ``[num_blocks, block_size, num_heads, head_dim]``, so caches made by
vLLM can be read and written directly. Scales are float32, one per tensor or one per head.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import ops as _ops  # noqa: F401  (registers torch.ops.nvfp4)


def _scale(value, device):
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor([float(value)], dtype=torch.float32, device=device)


def write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale, *,
          backend: str | None = None) -> None:
    """cache[slot] = e4m3_satfinite(x / scale) for every token whose slot is not -1 (in place).

    key, value: [tokens, heads, head_dim]; slot_mapping: int32/int64 [tokens].
    """
    torch.ops.nvfp4.kv_cache_write(key, value, key_cache, value_cache, slot_mapping,
                                   _scale(k_scale, key.device),
                                   _scale(v_scale, key.device), backend)


def gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, *,
           dtype: torch.dtype = torch.bfloat16, total_tokens: int | None = None,
           backend: str | None = None):
    """Dequantized K, V of each sequence, concatenated: [sum(seq_lens), heads, head_dim] each.

    Sequence i occupies rows cu[i]:cu[i+1] with cu = cumsum([0] + seq_lens) (flash-attn varlen).
    total_tokens: pass sum(seq_lens) to skip the device-to-host sync that computes it.
    """
    if total_tokens is None:
        total_tokens = int(seq_lens.sum()) if seq_lens.numel() else 0
    device = key_cache.device
    return torch.ops.nvfp4.kv_cache_gather(key_cache, value_cache, block_table, seq_lens,
                                           _scale(k_scale, device),
                                           _scale(v_scale, device), total_tokens,
                                           dtype, backend)
