"""The ``cuda`` backend: generic CUDA kernels of the compiled extension, any SM80+ GPU.

Quantize/dequantize (bit-exact with the reference; on sm_100a/sm_120a builds the quantize
kernel uses the hardware E2M1 conversion) and the FP8 paged KV cache. The work happens in C++
(csrc/quantize.cu, csrc/kv_cache.cu); these wrappers only adapt arguments.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.backends import registry

OPS = frozenset({"quantize", "dequantize", "kv_cache_write", "kv_cache_gather"})


def why_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"cuda backend needs a CUDA tensor, got {device.type}"
    reason = _extension.why_missing(warn=True)
    if reason:
        return reason
    major, minor = registry.capability(device)
    if major < 8:
        return f"cuda backend needs SM80+, this GPU is SM{major}{minor}"
    return _extension.arch_mismatch("cuda", major, minor)


def _c():
    return _extension.extension()


def quantize(x, global_scale, scale_layout):
    return _c().quantize(x, global_scale, scale_layout == "swizzled")


def dequantize(data, scale, global_scale, scale_layout, dtype):
    return _c().dequantize(data, scale, global_scale, scale_layout == "swizzled", dtype)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    _c().kv_cache_write(key, value, key_cache, value_cache, slot_mapping,
                        k_scale.contiguous(), v_scale.contiguous())


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    total_tokens, dtype):
    return _c().kv_cache_gather(key_cache, value_cache, block_table, seq_lens,
                                k_scale.contiguous(), v_scale.contiguous(), int(total_tokens),
                                dtype)


def get(op: str):
    return globals()[op]
