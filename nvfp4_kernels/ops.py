"""The ``torch.ops.nvfp4.*`` custom ops: schemas, fake kernels, registration.

One module per job on the per-call path:

* here: the schemas (``torch.library.Library.define``), the fake kernels (shapes only), and the
  registration of the real kernels for the CPU and CUDA keys; plus ``ops.<name>`` entry points
  that library code (``api``, ``nn``, ``kv_cache``) calls instead of ``torch.ops.nvfp4.<name>``;
* ``_checks``: the argument checks, run once per call by the real kernel (and by the fake);
* ``_dispatch``: the real kernels (check, choose a backend, run it);
* ``backends.registry``: which backend runs an op, chosen once per (op, device, dtypes).

``Library.define`` + ``impl`` rather than ``torch.library.custom_op``: the latter adds a Python
wrapper layer on every call that decode-sized GEMMs would feel.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _checks as check
from nvfp4_kernels import _dispatch
from nvfp4_kernels.layout import BLOCK, swizzled_shape

_lib = torch.library.Library("nvfp4", "DEF")  # noqa: TOR901 (kept alive for the process)

_lib.define("quantize(Tensor x, Tensor global_scale, str scale_layout='swizzled', "
            "str? backend=None) -> (Tensor data, Tensor scale)")
# The global scale computed from x on the device (reference.global_scale), then the quantize: one
# op, so a backend can do both without a host round trip. alpha = weight_alpha / global_scale
# (the W4A4 GEMM's alpha for a weight with decode scale weight_alpha), empty without one.
_lib.define("quantize_computed_scale(Tensor x, str scale_layout='swizzled', "
            "Tensor? weight_alpha=None, str? backend=None) "
            "-> (Tensor data, Tensor scale, Tensor global_scale, Tensor alpha)")
_lib.define("dequantize(Tensor data, Tensor scale, Tensor global_scale, "
            "str scale_layout='swizzled', ScalarType dtype=bfloat16, str? backend=None) -> Tensor")
# Same argument contract as vLLM's cutlass_scaled_fp4_mm (swizzled e4m3 scales, alpha = 1/(gs_a*gs_b)).
# alpha may also hold one value per output column (fused projections whose shards differ in gs).
_lib.define("gemm(Tensor a, Tensor b, Tensor a_scale, Tensor b_scale, Tensor alpha, "
            "ScalarType out_dtype, Tensor? bias=None, str? backend=None) -> Tensor")
_lib.define("gemm_w4a16(Tensor a, Tensor b, Tensor b_scale, Tensor b_alpha, "
            "str scale_layout='swizzled', ScalarType? out_dtype=None, Tensor? bias=None, "
            "str? backend=None) -> Tensor")
_lib.define("kv_cache_write(Tensor key, Tensor value, Tensor(a!) key_cache, "
            "Tensor(b!) value_cache, Tensor slot_mapping, Tensor k_scale, Tensor v_scale, "
            "str? backend=None) -> ()")
_lib.define("kv_cache_gather(Tensor key_cache, Tensor value_cache, Tensor block_table, "
            "Tensor seq_lens, Tensor k_scale, Tensor v_scale, SymInt total_tokens, "
            "ScalarType dtype=bfloat16, str? backend=None) -> (Tensor key, Tensor value)")
# Decode attention over the paged FP8 cache. q [B, q_len, HQ, D]; value_cache None reads V from
# the key cache; window / max_seq_len / num_splits 0 = none / block-table capacity / automatic.
_lib.define("attention_decode(Tensor q, Tensor key_cache, Tensor? value_cache, "
            "Tensor block_table, Tensor seq_lens, Tensor k_scale, Tensor? v_scale, "
            "float sm_scale, int window=0, int max_seq_len=0, int num_splits=0, "
            "str? backend=None) -> Tensor")


# ---------------------------------------------------------------------------------------------
# Real kernels (nvfp4_kernels._dispatch): one function per op for CPU and CUDA.
# ---------------------------------------------------------------------------------------------

for _name in _dispatch.OPS:
    for _key in ("CPU", "CUDA"):
        _lib.impl(_name, getattr(_dispatch, _name), _key)


# ---------------------------------------------------------------------------------------------
# Callers' entry points: the kernel itself in plain eager mode, the op otherwise.
# ---------------------------------------------------------------------------------------------

def _entry(name):
    kernel, op = getattr(_dispatch, name), getattr(torch.ops.nvfp4, name).default
    eager = _dispatch.eager

    def call(*args, **kwargs):
        return kernel(*args, **kwargs) if eager() else op(*args, **kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = (f"torch.ops.nvfp4.{name} (same positional arguments), without the dispatcher "
                    "round trip in plain eager mode.")
    return call


quantize = _entry("quantize")
quantize_computed_scale = _entry("quantize_computed_scale")
dequantize = _entry("dequantize")
gemm = _entry("gemm")
gemm_w4a16 = _entry("gemm_w4a16")
kv_cache_write = _entry("kv_cache_write")
kv_cache_gather = _entry("kv_cache_gather")
attention_decode = _entry("attention_decode")


# ---------------------------------------------------------------------------------------------
# Fake kernels: output shapes only, same checks.
# ---------------------------------------------------------------------------------------------

@torch.library.register_fake("nvfp4::quantize")
def _quantize_fake(x, global_scale, scale_layout="swizzled", backend=None):
    check.quantize_args(x, global_scale, scale_layout)
    rows, cols = x.shape
    data = x.new_empty((rows, cols // 2), dtype=torch.uint8)
    shape = swizzled_shape(rows, cols // BLOCK) if scale_layout == "swizzled" else \
        (rows, cols // BLOCK)
    return data, x.new_empty(shape, dtype=torch.float8_e4m3fn)


@torch.library.register_fake("nvfp4::quantize_computed_scale")
def _quantize_computed_scale_fake(x, scale_layout="swizzled", weight_alpha=None, backend=None):
    check.quantize_computed_scale_args(x, scale_layout, weight_alpha)
    rows, cols = x.shape
    data = x.new_empty((rows, cols // 2), dtype=torch.uint8)
    shape = swizzled_shape(rows, cols // BLOCK) if scale_layout == "swizzled" else \
        (rows, cols // BLOCK)
    alpha = x.new_empty((0,), dtype=torch.float32) if weight_alpha is None else \
        torch.empty_like(weight_alpha)
    return (data, x.new_empty(shape, dtype=torch.float8_e4m3fn),
            x.new_empty((), dtype=torch.float32), alpha)


@torch.library.register_fake("nvfp4::dequantize")
def _dequantize_fake(data, scale, global_scale, scale_layout="swizzled", dtype=torch.bfloat16,
                     backend=None):
    rows, cols = check.dequantize_args(data, scale, global_scale, scale_layout, dtype)
    return data.new_empty((rows, cols), dtype=dtype)


@torch.library.register_fake("nvfp4::gemm")
def _gemm_fake(a, b, a_scale, b_scale, alpha, out_dtype, bias=None, backend=None):
    m, n = check.gemm_args(a, b, a_scale, b_scale, alpha, out_dtype, bias)
    return a.new_empty((m, n), dtype=out_dtype)


@torch.library.register_fake("nvfp4::gemm_w4a16")
def _gemm_w4a16_fake(a, b, b_scale, b_alpha, scale_layout="swizzled", out_dtype=None, bias=None,
                     backend=None):
    m, n, out_dtype = check.gemm_w4a16_args(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    return a.new_empty((m, n), dtype=out_dtype)


@torch.library.register_fake("nvfp4::kv_cache_write")
def _kv_cache_write_fake(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale,
                         backend=None):
    check.kv_write_args(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


@torch.library.register_fake("nvfp4::kv_cache_gather")
def _kv_cache_gather_fake(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                          total_tokens, dtype=torch.bfloat16, backend=None):
    check.kv_gather_args(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype)
    shape = (total_tokens, *key_cache.shape[2:])
    return key_cache.new_empty(shape, dtype=dtype), key_cache.new_empty(shape, dtype=dtype)


@torch.library.register_fake("nvfp4::attention_decode")
def _attention_decode_fake(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                           sm_scale, window=0, max_seq_len=0, num_splits=0, backend=None):
    check.attention_decode_args(q, key_cache, value_cache, block_table, seq_lens, k_scale,
                                v_scale, sm_scale, window, max_seq_len, num_splits)
    return torch.empty_like(q)
