"""The ``reference`` backend: ``nvfp4_kernels.reference`` behind the backend interface.

Runs on any device. On a GPU it is only chosen automatically for an op that no kernel backend
implements; it is slow (it materialises dequantized matrices) but it is the specification.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import reference as ref

OPS = frozenset({"quantize", "dequantize", "gemm", "gemm_w4a16", "kv_cache_write",
                 "kv_cache_gather"})


def why_unavailable(device: torch.device) -> str | None:
    return None


def quantize(x, global_scale, scale_layout):
    data, scale, _ = ref.quantize(x, global_scale, scale_layout)
    return data, scale


def dequantize(data, scale, global_scale, scale_layout, dtype):
    return ref.dequantize(data, scale, global_scale, scale_layout, dtype)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    return ref.gemm_w4a4(a, b, a_scale, b_scale, alpha, out_dtype, bias)


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias):
    return ref.gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    ref.kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    total_tokens, dtype):
    return ref.kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                               dtype)


def get(op: str):
    return globals()[op]
