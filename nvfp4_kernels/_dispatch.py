"""The real kernels of the ``torch.ops.nvfp4`` ops: check the arguments once, pick the backend
(cached in ``backends.registry``), run it.

``ops.py`` registers these functions for the CPU and CUDA dispatch keys. In plain eager mode the
public functions (and ``ops.<name>``) call them directly instead of going through
``torch.ops.nvfp4.<name>``: the dispatcher round trip from Python into C++ and back into Python
costs several microseconds per call and buys nothing when no tracing, fake tensors or dispatch
modes are involved (see ``eager``). Under ``torch.compile``, ``make_fx``, ``FakeTensorMode`` or any
other mode the op boundary is kept, so those see one opaque custom op with its fake kernel.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _checks as check
from nvfp4_kernels import debug
from nvfp4_kernels.backends import registry

_is_compiling = torch.compiler.is_compiling
_dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)
_function_modes = getattr(torch._C, "_is_torch_function_mode_enabled", lambda: False)


def eager() -> bool:
    """True when calling the kernel directly is indistinguishable from calling the op."""
    return not (_is_compiling() or _dispatch_modes() or _function_modes())


def _e4m3(t):
    """Scales given as raw bytes are the same e4m3 values: backends only ever see e4m3."""
    return t if t.dtype == torch.float8_e4m3fn else t.view(torch.float8_e4m3fn)


def quantize(x, global_scale, scale_layout="swizzled", backend=None):
    check.quantize_args(x, global_scale, scale_layout)
    _, impl = registry.choose("quantize", x.device, (x.dtype,), backend)
    return impl(x, global_scale, scale_layout)


def quantize_computed_scale(x, scale_layout="swizzled", weight_alpha=None, backend=None):
    check.quantize_computed_scale_args(x, scale_layout, weight_alpha)
    _, impl = registry.choose("quantize_computed_scale", x.device, (x.dtype,), backend)
    return impl(x, scale_layout, weight_alpha)


def dequantize(data, scale, global_scale, scale_layout="swizzled", dtype=torch.bfloat16,
               backend=None):
    check.dequantize_args(data, scale, global_scale, scale_layout, dtype)
    _, impl = registry.choose("dequantize", data.device, (dtype,), backend)
    return impl(data, _e4m3(scale), global_scale, scale_layout, dtype)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias=None, backend=None):
    check.gemm_args(a, b, a_scale, b_scale, alpha, out_dtype, bias)
    _, impl = registry.choose("gemm", a.device, (out_dtype,), backend)
    return impl(a, b, _e4m3(a_scale), _e4m3(b_scale), alpha, out_dtype, bias)


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout="swizzled", out_dtype=None, bias=None,
               backend=None):
    _, _, out_dtype = check.gemm_w4a16_args(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    _, impl = registry.choose("gemm_w4a16", a.device, (a.dtype, out_dtype), backend)
    return impl(a, b, _e4m3(b_scale), b_alpha, scale_layout, out_dtype, bias)


def kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale,
                   backend=None):
    check.kv_write_args(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)
    if debug.checks_enabled():
        debug.check_slots(slot_mapping, key_cache)
    _, impl = registry.choose("kv_cache_write", key.device, (key.dtype,), backend)
    impl(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


def kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                    total_tokens, dtype=torch.bfloat16, backend=None):
    check.kv_gather_args(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype)
    if total_tokens < 0:
        raise ValueError(f"total_tokens: must be >= 0, got {total_tokens}")
    if debug.checks_enabled():
        debug.check_gather(key_cache, block_table, seq_lens, total_tokens)
    _, impl = registry.choose("kv_cache_gather", key_cache.device, (dtype,), backend)
    return impl(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, total_tokens,
                dtype)


def attention_decode(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                     sm_scale, window=0, max_seq_len=0, num_splits=0, backend=None):
    check.attention_decode_args(q, key_cache, value_cache, block_table, seq_lens, k_scale,
                                v_scale, sm_scale, window, max_seq_len, num_splits)
    if debug.checks_enabled():
        debug.check_attention(key_cache, block_table, seq_lens, q.shape[1])
    _, impl = registry.choose("attention_decode", q.device, (q.dtype,), backend)
    return impl(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, sm_scale,
                window, max_seq_len, num_splits)


OPS = ("quantize", "quantize_computed_scale", "dequantize", "gemm", "gemm_w4a16",
       "kv_cache_write", "kv_cache_gather", "attention_decode")
