"""The ``torch.ops.nvfp4.*`` custom ops: schemas, argument checks, fake kernels, dispatch.

Schemas are defined with ``torch.library.Library.define`` and implemented per dispatch key (CPU
and CUDA share one dispatcher that asks the registry for a backend). This keeps the per-call cost
to the dispatcher itself plus the checks below: ``torch.library.custom_op`` adds a Python wrapper
layer on every call that decode-sized GEMMs would feel.

Each op checks its arguments in the real kernel and in its fake, so the same clear error appears
eagerly and under ``torch.compile``.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _checks as check
from nvfp4_kernels.backends import registry
from nvfp4_kernels.reference import BLOCK, swizzled_shape

_lib = torch.library.Library("nvfp4", "DEF")  # noqa: TOR901 (kept alive for the process)

_lib.define("quantize(Tensor x, Tensor global_scale, str scale_layout='swizzled', "
            "str? backend=None) -> (Tensor data, Tensor scale)")
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


# ---------------------------------------------------------------------------------------------
# Checks (shared by real and fake kernels); each returns what the output shapes need.
# ---------------------------------------------------------------------------------------------

def _check_quantize(x, global_scale, scale_layout):
    check.tensor("x", x, dtypes=check.FLOAT_DTYPES, ndim=2)
    check.multiple_of("x", x.shape[1], BLOCK, f"the last dim (shape {tuple(x.shape)})")
    check.scalar_f32("global_scale", global_scale)
    check.same_device(x=x, global_scale=global_scale)
    check.choice("scale_layout", scale_layout, check.SCALE_LAYOUTS)


def _check_packed(name, data, scale, layout):
    check.tensor(name, data, dtypes=(torch.uint8,), ndim=2)
    rows, cols = data.shape[0], data.shape[1] * 2
    check.multiple_of(name, cols, BLOCK, f"the logical last dim (2 * {data.shape[1]})")
    check.scale_shape(f"{name}_scale" if name != "data" else "scale", scale, rows, cols, layout)
    return rows, cols


def _check_dequantize(data, scale, global_scale, scale_layout, dtype):
    check.choice("scale_layout", scale_layout, check.SCALE_LAYOUTS)
    check.out_dtype("dtype", dtype, check.DEQUANT_DTYPES)
    rows, cols = _check_packed("data", data, scale, scale_layout)
    check.scalar_f32("global_scale", global_scale)
    check.same_device(data=data, scale=scale, global_scale=global_scale)
    return rows, cols


def _check_epilogue(n, alpha_name, alpha, bias, out_dtype):
    check.out_dtype("out_dtype", out_dtype)
    check.scalar_f32(alpha_name, alpha, numel=(1, n))
    if bias is not None:
        check.tensor("bias", bias, dtypes=check.FLOAT_DTYPES, ndim=1)
        if bias.shape[0] != n:
            raise ValueError(f"bias: expected shape ({n},), got {check.describe(bias)}")


def _check_gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    m, k = _check_packed("a", a, a_scale, "swizzled")
    n, kb = _check_packed("b", b, b_scale, "swizzled")
    if k != kb:
        raise ValueError(f"a and b disagree on K: a is {check.describe(a)} (K={k}), "
                         f"b is {check.describe(b)} (K={kb})")
    _check_epilogue(n, "alpha", alpha, bias, out_dtype)
    check.same_device(a=a, b=b, a_scale=a_scale, b_scale=b_scale, alpha=alpha, bias=bias)
    return m, n


def _check_gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias):
    check.tensor("a", a, dtypes=(torch.bfloat16, torch.float16), ndim=2)
    check.choice("scale_layout", scale_layout, check.SCALE_LAYOUTS)
    n, k = _check_packed("b", b, b_scale, scale_layout)
    if a.shape[1] != k:
        raise ValueError(f"a and b disagree on K: a is {check.describe(a)} (K={a.shape[1]}), "
                         f"b is {check.describe(b)} (K={k})")
    out_dtype = a.dtype if out_dtype is None else out_dtype
    _check_epilogue(n, "b_alpha", b_alpha, bias, out_dtype)
    check.same_device(a=a, b=b, b_scale=b_scale, b_alpha=b_alpha, bias=bias)
    return a.shape[0], n, out_dtype


def _check_kv_scale(name, scale, heads):
    check.scalar_f32(name, scale, numel=(1, heads))


def _check_kv_cache(key_cache, value_cache):
    for name, cache in (("key_cache", key_cache), ("value_cache", value_cache)):
        check.tensor(name, cache, dtypes=check.FP8_STORAGE, ndim=4)
    if key_cache.shape != value_cache.shape:
        raise ValueError(f"key_cache and value_cache differ: {check.describe(key_cache)} vs "
                         f"{check.describe(value_cache)}")


def _check_kv_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    _check_kv_cache(key_cache, value_cache)
    _, _, heads, dim = key_cache.shape
    for name, t in (("key", key), ("value", value)):
        check.tensor(name, t, dtypes=check.FLOAT_DTYPES, ndim=3)
        if tuple(t.shape[1:]) != (heads, dim):
            raise ValueError(f"{name}: expected [tokens, {heads}, {dim}] to match the cache "
                             f"{check.describe(key_cache)}, got {check.describe(t)}")
    if key.shape != value.shape:
        raise ValueError(f"key and value differ: {check.describe(key)} vs {check.describe(value)}")
    check.tensor("slot_mapping", slot_mapping, dtypes=(torch.int32, torch.int64), ndim=1)
    if slot_mapping.shape[0] != key.shape[0]:
        raise ValueError(f"slot_mapping: expected one slot per token ({key.shape[0]}), got "
                         f"{check.describe(slot_mapping)}")
    _check_kv_scale("k_scale", k_scale, heads)
    _check_kv_scale("v_scale", v_scale, heads)
    check.same_device(key=key, value=value, key_cache=key_cache, value_cache=value_cache,
                      slot_mapping=slot_mapping, k_scale=k_scale, v_scale=v_scale)


def _check_slots_in_range(slot_mapping, key_cache):
    """Out-of-range slots would write outside the cache: refuse them (one reduction, one sync)."""
    if slot_mapping.numel() == 0:
        return
    num_slots = key_cache.shape[0] * key_cache.shape[1]
    lo, hi = int(slot_mapping.min()), int(slot_mapping.max())
    if lo < -1 or hi >= num_slots:
        raise ValueError(f"slot_mapping: slots must be -1 (skip) or in [0, {num_slots}) for a cache "
                         f"of {key_cache.shape[0]} blocks x {key_cache.shape[1]}; got min {lo}, "
                         f"max {hi}")


def _check_kv_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype):
    _check_kv_cache(key_cache, value_cache)
    heads = key_cache.shape[2]
    check.tensor("block_table", block_table, dtypes=(torch.int32, torch.int64), ndim=2)
    check.tensor("seq_lens", seq_lens, dtypes=(torch.int32, torch.int64), ndim=1)
    if seq_lens.shape[0] != block_table.shape[0]:
        raise ValueError(f"seq_lens: expected one length per block_table row "
                         f"({block_table.shape[0]}), got {check.describe(seq_lens)}")
    _check_kv_scale("k_scale", k_scale, heads)
    _check_kv_scale("v_scale", v_scale, heads)
    check.out_dtype("dtype", dtype, check.DEQUANT_DTYPES)
    check.same_device(key_cache=key_cache, value_cache=value_cache, block_table=block_table,
                      seq_lens=seq_lens, k_scale=k_scale, v_scale=v_scale)


def _check_gather_ranges(key_cache, block_table, seq_lens, total_tokens):
    """Lengths past the block table or block ids past the cache would read out of bounds."""
    if seq_lens.numel() == 0:
        if total_tokens != 0:
            raise ValueError(f"total_tokens: expected 0 for an empty batch, got {total_tokens}")
        return
    block_size, num_blocks = key_cache.shape[1], key_cache.shape[0]
    lens = seq_lens.long()
    if int(lens.min()) < 0 or int(lens.max()) > block_table.shape[1] * block_size:
        raise ValueError(f"seq_lens: lengths must be in [0, {block_table.shape[1] * block_size}] "
                         f"(block_table has {block_table.shape[1]} blocks of {block_size}); got "
                         f"{seq_lens.tolist()}")
    if int(lens.sum()) != total_tokens:
        raise ValueError(f"total_tokens: expected sum(seq_lens) = {int(lens.sum())}, got "
                         f"{total_tokens}")
    used = (lens + block_size - 1) // block_size
    cols = torch.arange(block_table.shape[1], device=block_table.device)
    live = block_table[cols.unsqueeze(0) < used.unsqueeze(1)]
    if live.numel() and (int(live.min()) < 0 or int(live.max()) >= num_blocks):
        raise ValueError(f"block_table: block ids used by seq_lens must be in [0, {num_blocks}); "
                         f"got min {int(live.min())}, max {int(live.max())}")


# ---------------------------------------------------------------------------------------------
# Real kernels: one dispatcher per op for CPU and CUDA; the registry picks the backend.
# ---------------------------------------------------------------------------------------------

def _e4m3(t):
    """Scales given as raw bytes are the same e4m3 values: backends only ever see e4m3."""
    return t.view(torch.float8_e4m3fn)


def _quantize(x, global_scale, scale_layout="swizzled", backend=None):
    _check_quantize(x, global_scale, scale_layout)
    _, impl = registry.choose("quantize", x.device, (x.dtype,), backend)
    return impl(x, global_scale, scale_layout)


def _dequantize(data, scale, global_scale, scale_layout="swizzled", dtype=torch.bfloat16,
                backend=None):
    _check_dequantize(data, scale, global_scale, scale_layout, dtype)
    _, impl = registry.choose("dequantize", data.device, (dtype,), backend)
    return impl(data, _e4m3(scale), global_scale, scale_layout, dtype)


def _gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias=None, backend=None):
    _check_gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias)
    _, impl = registry.choose("gemm", a.device, (out_dtype,), backend)
    return impl(a, b, _e4m3(a_scale), _e4m3(b_scale), alpha, out_dtype, bias)


def _gemm_w4a16(a, b, b_scale, b_alpha, scale_layout="swizzled", out_dtype=None, bias=None,
                backend=None):
    _, _, out_dtype = _check_gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    _, impl = registry.choose("gemm_w4a16", a.device, (a.dtype, out_dtype), backend)
    return impl(a, b, _e4m3(b_scale), b_alpha, scale_layout, out_dtype, bias)


def _kv_cache_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale,
                    backend=None):
    _check_kv_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)
    _check_slots_in_range(slot_mapping, key_cache)
    _, impl = registry.choose("kv_cache_write", key.device, (key.dtype,), backend)
    impl(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


def _kv_cache_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                     total_tokens, dtype=torch.bfloat16, backend=None):
    _check_kv_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype)
    _check_gather_ranges(key_cache, block_table, seq_lens, total_tokens)
    _, impl = registry.choose("kv_cache_gather", key_cache.device, (dtype,), backend)
    return impl(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, total_tokens,
                dtype)


for _name, _fn in (("quantize", _quantize), ("dequantize", _dequantize), ("gemm", _gemm),
                   ("gemm_w4a16", _gemm_w4a16), ("kv_cache_write", _kv_cache_write),
                   ("kv_cache_gather", _kv_cache_gather)):
    for _key in ("CPU", "CUDA"):
        _lib.impl(_name, _fn, _key)


# ---------------------------------------------------------------------------------------------
# Fake kernels: output shapes only, same checks.
# ---------------------------------------------------------------------------------------------

@torch.library.register_fake("nvfp4::quantize")
def _quantize_fake(x, global_scale, scale_layout="swizzled", backend=None):
    _check_quantize(x, global_scale, scale_layout)
    rows, cols = x.shape
    data = x.new_empty((rows, cols // 2), dtype=torch.uint8)
    shape = swizzled_shape(rows, cols // BLOCK) if scale_layout == "swizzled" else \
        (rows, cols // BLOCK)
    return data, x.new_empty(shape, dtype=torch.float8_e4m3fn)


@torch.library.register_fake("nvfp4::dequantize")
def _dequantize_fake(data, scale, global_scale, scale_layout="swizzled", dtype=torch.bfloat16,
                     backend=None):
    rows, cols = _check_dequantize(data, scale, global_scale, scale_layout, dtype)
    return data.new_empty((rows, cols), dtype=dtype)


@torch.library.register_fake("nvfp4::gemm")
def _gemm_fake(a, b, a_scale, b_scale, alpha, out_dtype, bias=None, backend=None):
    m, n = _check_gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias)
    return a.new_empty((m, n), dtype=out_dtype)


@torch.library.register_fake("nvfp4::gemm_w4a16")
def _gemm_w4a16_fake(a, b, b_scale, b_alpha, scale_layout="swizzled", out_dtype=None, bias=None,
                     backend=None):
    m, n, out_dtype = _check_gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    return a.new_empty((m, n), dtype=out_dtype)


@torch.library.register_fake("nvfp4::kv_cache_write")
def _kv_cache_write_fake(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale,
                         backend=None):
    _check_kv_write(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


@torch.library.register_fake("nvfp4::kv_cache_gather")
def _kv_cache_gather_fake(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                          total_tokens, dtype=torch.bfloat16, backend=None):
    _check_kv_gather(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype)
    shape = (total_tokens, *key_cache.shape[2:])
    return key_cache.new_empty(shape, dtype=dtype), key_cache.new_empty(shape, dtype=dtype)
