"""Argument checks: the primitives, and one function per op that the op's real kernel and its
fake kernel both run (so the same error appears eagerly and under ``torch.compile``).

Every message names the argument, what was expected and what was given (shape, dtype, device), so
a serving engineer can fix the call without reading the kernel. These checks read only metadata
(shape, dtype, device, contiguity): no device synchronisation, so every op stays CUDA-graph
capturable. Index *values* (slot ids, block ids, lengths) are handled inside the kernels; the
opt-in value checks live in ``nvfp4_kernels.debug``.
"""

from __future__ import annotations

import math

import torch

from nvfp4_kernels.layout import BLOCK, swizzled_shape

FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
OUT_DTYPES = (torch.bfloat16, torch.float16)
DEQUANT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SCALE_LAYOUTS = ("swizzled", "linear")
# e4m3 data may arrive as raw bytes (uint8 views), as vLLM stores some caches and scales.
FP8_STORAGE = (torch.float8_e4m3fn, torch.uint8)


def describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def tensor(name: str, t, *, dtypes=None, ndim=None, contiguous=True) -> None:
    # One combined test on the (common) good path; the messages are built only on failure.
    if (isinstance(t, torch.Tensor) and (dtypes is None or t.dtype in dtypes)
            and (ndim is None or t.dim() == ndim) and (not contiguous or t.is_contiguous())):
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name}: dtype must be one of ({allowed}), got {describe(t)}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got {describe(t)}")
    raise ValueError(f"{name}: must be contiguous (call .contiguous()), got strides "
                     f"{t.stride()} for {describe(t)}")


def scalar_f32(name: str, t, *, numel=(1,)) -> None:
    """A float32 tensor holding one value (or one per column where numel allows it)."""
    tensor(name, t, dtypes=(torch.float32,), contiguous=False)
    if t.numel() not in numel:
        want = " or ".join(str(n) for n in numel)
        raise ValueError(f"{name}: expected {want} element(s), got {describe(t)}")


def multiple_of(name: str, value: int, m: int, what: str) -> None:
    if value % m:
        raise ValueError(f"{name}: {what} must be a multiple of {m}, got {value}")


def same_device(**tensors) -> None:
    # Good path for CUDA tensors without building torch.device objects (~0.1 us each on a fast
    # host, several per call): every tensor on CUDA with the same device index.
    present = [t for t in tensors.values() if t is not None]
    index = present[0].get_device()
    if index >= 0 and all(t.is_cuda and t.get_device() == index for t in present):
        return
    devices = {t.device for t in present}
    if len(devices) <= 1:
        return
    named = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; "
                             "all arguments must be on one device")


def choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name}: must be one of {options}, got {value!r}")


def out_dtype(name: str, dtype, options=OUT_DTYPES) -> None:
    if dtype not in options:
        raise TypeError(f"{name}: must be one of {options}, got {dtype}")


def scale_shape(name: str, scale: torch.Tensor, rows: int, cols: int, layout: str) -> None:
    """Block scales for a [rows, cols] matrix (cols = K, logical) in `layout`."""
    tensor(name, scale, dtypes=FP8_STORAGE)
    if layout == "swizzled":
        rp, cp = swizzled_shape(rows, cols // BLOCK)
        if scale.numel() != rp * cp:
            raise ValueError(f"{name}: swizzled scales for a {rows}x{cols} matrix need "
                             f"{rp}x{cp} = {rp * cp} elements, got {describe(scale)}")
    elif tuple(scale.shape) != (rows, cols // BLOCK):
        raise ValueError(f"{name}: linear scales for a {rows}x{cols} matrix must have shape "
                         f"({rows}, {cols // BLOCK}), got {describe(scale)}")


# ---------------------------------------------------------------------------------------------
# Per-op argument checks; each returns what the output shapes need.
# ---------------------------------------------------------------------------------------------

def quantize_args(x, global_scale, scale_layout):
    tensor("x", x, dtypes=FLOAT_DTYPES, ndim=2)
    if x.shape[1] % BLOCK:
        multiple_of("x", x.shape[1], BLOCK, f"the last dim (shape {tuple(x.shape)})")
    scalar_f32("global_scale", global_scale)
    same_device(x=x, global_scale=global_scale)
    choice("scale_layout", scale_layout, SCALE_LAYOUTS)


def quantize_computed_scale_args(x, scale_layout, weight_alpha):
    tensor("x", x, dtypes=FLOAT_DTYPES, ndim=2)
    if x.shape[1] % BLOCK:
        multiple_of("x", x.shape[1], BLOCK, f"the last dim (shape {tuple(x.shape)})")
    choice("scale_layout", scale_layout, SCALE_LAYOUTS)
    if weight_alpha is not None:
        tensor("weight_alpha", weight_alpha, dtypes=(torch.float32,))
        if weight_alpha.numel() == 0:
            raise ValueError(f"weight_alpha: expected at least 1 element, got "
                             f"{describe(weight_alpha)}")
        same_device(x=x, weight_alpha=weight_alpha)


def packed(name, data, scale, layout):
    tensor(name, data, dtypes=(torch.uint8,), ndim=2)
    rows, cols = data.shape[0], data.shape[1] * 2
    if cols % BLOCK:
        multiple_of(name, cols, BLOCK, f"the logical last dim (2 * {data.shape[1]})")
    scale_shape("scale" if name == "data" else name + "_scale", scale, rows, cols, layout)
    return rows, cols


def dequantize_args(data, scale, global_scale, scale_layout, dtype):
    choice("scale_layout", scale_layout, SCALE_LAYOUTS)
    out_dtype("dtype", dtype, DEQUANT_DTYPES)
    rows, cols = packed("data", data, scale, scale_layout)
    scalar_f32("global_scale", global_scale)
    same_device(data=data, scale=scale, global_scale=global_scale)
    return rows, cols


def epilogue(n, alpha_name, alpha, bias, dtype):
    out_dtype("out_dtype", dtype)
    scalar_f32(alpha_name, alpha, numel=(1, n))
    if bias is not None:
        tensor("bias", bias, dtypes=FLOAT_DTYPES, ndim=1)
        if bias.shape[0] != n:
            raise ValueError(f"bias: expected shape ({n},), got {describe(bias)}")


def gemm_args(a, b, a_scale, b_scale, alpha, dtype, bias):
    m, k = packed("a", a, a_scale, "swizzled")
    n, kb = packed("b", b, b_scale, "swizzled")
    if k != kb:
        raise ValueError(f"a and b disagree on K: a is {describe(a)} (K={k}), "
                         f"b is {describe(b)} (K={kb})")
    epilogue(n, "alpha", alpha, bias, dtype)
    same_device(a=a, b=b, a_scale=a_scale, b_scale=b_scale, alpha=alpha, bias=bias)
    return m, n


def gemm_w4a16_args(a, b, b_scale, b_alpha, scale_layout, dtype, bias):
    tensor("a", a, dtypes=(torch.bfloat16, torch.float16), ndim=2)
    choice("scale_layout", scale_layout, SCALE_LAYOUTS)
    n, k = packed("b", b, b_scale, scale_layout)
    if a.shape[1] != k:
        raise ValueError(f"a and b disagree on K: a is {describe(a)} (K={a.shape[1]}), "
                         f"b is {describe(b)} (K={k})")
    dtype = a.dtype if dtype is None else dtype
    epilogue(n, "b_alpha", b_alpha, bias, dtype)
    same_device(a=a, b=b, b_scale=b_scale, b_alpha=b_alpha, bias=bias)
    return a.shape[0], n, dtype


def kv_scale(name, scale, heads):
    scalar_f32(name, scale, numel=(1, heads))


def kv_caches(key_cache, value_cache):
    for name, cache in (("key_cache", key_cache), ("value_cache", value_cache)):
        tensor(name, cache, dtypes=FP8_STORAGE, ndim=4)
    if key_cache.shape != value_cache.shape:
        raise ValueError(f"key_cache and value_cache differ: {describe(key_cache)} vs "
                         f"{describe(value_cache)}")


def kv_write_args(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale):
    kv_caches(key_cache, value_cache)
    _, _, heads, dim = key_cache.shape
    for name, t in (("key", key), ("value", value)):
        tensor(name, t, dtypes=FLOAT_DTYPES, ndim=3)
        if tuple(t.shape[1:]) != (heads, dim):
            raise ValueError(f"{name}: expected [tokens, {heads}, {dim}] to match the cache "
                             f"{describe(key_cache)}, got {describe(t)}")
    if key.shape != value.shape:
        raise ValueError(f"key and value differ: {describe(key)} vs {describe(value)}")
    tensor("slot_mapping", slot_mapping, dtypes=(torch.int32, torch.int64), ndim=1)
    if slot_mapping.shape[0] != key.shape[0]:
        raise ValueError(f"slot_mapping: expected one slot per token ({key.shape[0]}), got "
                         f"{describe(slot_mapping)}")
    kv_scale("k_scale", k_scale, heads)
    kv_scale("v_scale", v_scale, heads)
    same_device(key=key, value=value, key_cache=key_cache, value_cache=value_cache,
                slot_mapping=slot_mapping, k_scale=k_scale, v_scale=v_scale)


def kv_gather_args(key_cache, value_cache, block_table, seq_lens, k_scale, v_scale, dtype):
    kv_caches(key_cache, value_cache)
    heads = key_cache.shape[2]
    tensor("block_table", block_table, dtypes=(torch.int32, torch.int64), ndim=2)
    tensor("seq_lens", seq_lens, dtypes=(torch.int32, torch.int64), ndim=1)
    if seq_lens.shape[0] != block_table.shape[0]:
        raise ValueError(f"seq_lens: expected one length per block_table row "
                         f"({block_table.shape[0]}), got {describe(seq_lens)}")
    kv_scale("k_scale", k_scale, heads)
    kv_scale("v_scale", v_scale, heads)
    out_dtype("dtype", dtype, DEQUANT_DTYPES)
    same_device(key_cache=key_cache, value_cache=value_cache, block_table=block_table,
                seq_lens=seq_lens, k_scale=k_scale, v_scale=v_scale)


def attention_decode_args(q, key_cache, value_cache, block_table, seq_lens, k_scale, v_scale,
                          sm_scale, window, max_seq_len, num_splits):
    tensor("q", q, dtypes=(torch.bfloat16, torch.float16), ndim=4)
    tensor("key_cache", key_cache, dtypes=FP8_STORAGE, ndim=4)
    batch, _, hq, dim = q.shape
    _, _, hkv, cache_dim = key_cache.shape
    if value_cache is not None:
        tensor("value_cache", value_cache, dtypes=FP8_STORAGE, ndim=4)
        if value_cache.shape != key_cache.shape:
            raise ValueError(f"key_cache and value_cache differ: {describe(key_cache)} vs "
                             f"{describe(value_cache)}")
    if cache_dim != dim:
        raise ValueError(f"q: head_dim {dim} does not match the cache's {cache_dim} "
                         f"(q {describe(q)}, key_cache {describe(key_cache)})")
    if dim % BLOCK or dim == 0:
        raise ValueError(f"q: head_dim must be a positive multiple of {BLOCK}, got {dim} "
                         f"({describe(q)})")
    if hkv == 0 or hq % hkv:
        raise ValueError(f"q: query heads ({hq}) must be a multiple of the cache's KV heads "
                         f"({hkv}) for GQA; q {describe(q)}, key_cache {describe(key_cache)}")
    tensor("block_table", block_table, dtypes=(torch.int32, torch.int64), ndim=2)
    tensor("seq_lens", seq_lens, dtypes=(torch.int32, torch.int64), ndim=1)
    if block_table.shape[0] != batch or seq_lens.shape[0] != batch:
        raise ValueError(f"block_table and seq_lens need one row per sequence of q ({batch}); "
                         f"got block_table {describe(block_table)}, seq_lens {describe(seq_lens)}")
    kv_scale("k_scale", k_scale, hkv)
    if v_scale is not None:
        kv_scale("v_scale", v_scale, hkv)
    elif value_cache is not None:
        raise ValueError("v_scale: required with a value_cache (only value_cache=None, V read "
                         "from the key cache, may reuse k_scale)")
    if not (isinstance(sm_scale, (int, float)) and math.isfinite(sm_scale) and sm_scale > 0):
        raise ValueError(f"sm_scale: must be a finite number > 0, got {sm_scale!r}")
    for name, value in (("window", window), ("max_seq_len", max_seq_len),
                        ("num_splits", num_splits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0 (0: none/automatic), got {value!r}")
    same_device(q=q, key_cache=key_cache, value_cache=value_cache, block_table=block_table,
                seq_lens=seq_lens, k_scale=k_scale, v_scale=v_scale)
