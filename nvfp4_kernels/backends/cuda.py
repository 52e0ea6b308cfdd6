"""The ``cuda`` backend: generic CUDA kernels of the compiled extension, any SM80+ GPU.

Quantize/dequantize (bit-exact with the reference; on sm_100a/sm_120a builds the quantize
kernel uses the hardware E2M1 conversion), the FP8 paged KV cache, and two GEMMs for GPUs
without FP4 tensor cores, W4A16 and W4A4: the decode-size GEMM
(csrc/include/nvfp4/decode_gemm.cuh, 1 <= M <= 16 tokens, SM80-SM90), the mid-size GEMM
(csrc/include/nvfp4/mid_gemm.cuh, 16 < M <= 64, SM90: it needs up to ~210 KB of shared memory)
and the Hopper warpgroup-MMA GEMM (csrc/include/nvfp4/wgmma_gemm.cuh, 64 < M <= 128, sm_90a
builds; W4A16 kernel, W4A4 dequantizes its activations first).
GEMM shapes these kernels do not take (more tokens, K not a multiple of 32, unaligned
pointers, a build without an SM80-SM90 target) go to the next backend of the automatic order
(``registry.next_backend``: triton, else reference), so choosing ``cuda`` never narrows what a
GEMM call accepts.
The work happens in C++ (csrc/); these wrappers only adapt arguments.
"""

from __future__ import annotations

import functools

import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.backends import registry

OPS = frozenset({"quantize", "quantize_computed_scale", "dequantize", "gemm", "gemm_w4a16",
                 "kv_cache_write", "kv_cache_gather"})

# Largest token count the decode GEMM takes. Past it every CTA re-reading all M x K activations
# from L2 outweighs its weights; the mid-size GEMM (MID_MAX_M) shares them within a CTA instead.
DECODE_MAX_M = 16
# Largest token count the mid-size GEMM takes (its token tiles: 8 of 8 tokens). Past it the
# wgmma GEMM (WGMMA_MAX_M) takes over on SM90.
MID_MAX_M = 64
# Largest token count the wgmma GEMM takes. Measured on the H100 (sweep_decode_gemm.py --kernel
# wgmma, same run as bench_gemm.py; docs/performance.md): at M = 96-128 it is 1.2-2x faster
# than the fused Triton kernel on every Gemma-4-31B layer (gate_up M = 128: 0.291 vs 0.339 ms,
# down 0.120 vs 0.246); at M = 160-192 its time (latency-bound, growing with M) is no better
# than dequantize + cuBLAS (the prefill route, backends/triton/prefill.py), which takes over
# past this bound. At M <= 64 the mid-size kernel is as fast (gate_up M = 64: 0.162 vs 0.160).
WGMMA_MAX_M = 128
# Its launch shape (csrc/gemm_wgmma.cu's `variant`): 2 = two 64-row tiles per warpgroup, the
# fastest of the four at every M <= 128 in that sweep (gate_up M = 128: 0.291 ms vs 0.327-0.329;
# down 0.120 vs 0.160).
_WGMMA_VARIANT = 2
# GPUs whose shared memory per block holds the mid-size GEMM's ring (up to ~210 KB: W4A4 at
# M > 48): H100/H200 (SM90, 227 KB). SM80 (163 KB) and SM86/SM89 (99 KB) keep the Triton kernel
# for those M.
_MID_GEMM_CAPABILITIES = frozenset({(9, 0)})


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


def why_unsupported(op: str, dtypes: tuple) -> str | None:
    """An extension built before quantize_computed_scale existed lacks it (cached choice)."""
    if op == "quantize_computed_scale" and not hasattr(_c(), "quantize_computed_scale"):
        return ("cuda backend: this build of the extension has no quantize_computed_scale "
                "(rebuild it, docs/building.md)")
    return None


def quantize_computed_scale(x, scale_layout, weight_alpha):
    return _c().quantize_computed_scale(x, scale_layout == "swizzled", weight_alpha)


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


@functools.cache
def _fallback(op: str, device: torch.device, dtypes: tuple):
    """The implementation of `op` that the next backend of the automatic order provides here."""
    return registry.next_backend(op, device, "cuda", dtypes)[1]


def _shape_takes(a, b, min_m: int, max_m: int) -> bool:
    """M in (min_m, max_m], K a positive multiple of 32, 16-byte aligned operands: what every
    GEMM of the extension asks of its operands (csrc/decode_args.h)."""
    m, k = a.shape[0], b.shape[1] * 2
    return (min_m < m <= max_m and k >= 32 and k % 32 == 0 and b.shape[0] > 0
            and a.data_ptr() % 16 == 0 and b.data_ptr() % 16 == 0)


def _decode_gemm_takes(a, b) -> bool:
    """Whether csrc/gemm_decode.cu takes this problem (see DECODE_MAX_M)."""
    return _shape_takes(a, b, 0, DECODE_MAX_M) and getattr(_c(), "HAS_DECODE_GEMM", False)


def _sm90_gemm_takes(a, b, b_scale, a_scale, min_m, max_m, built: str) -> bool:
    """The SM90 GEMMs' conditions: the shape, the scales 4-byte aligned (their rings copy them
    as aligned words), an H100/H200, and the kernel in this build (flag `built`)."""
    return (_shape_takes(a, b, min_m, max_m) and b_scale.data_ptr() % 4 == 0
            and (a_scale is None or a_scale.data_ptr() % 4 == 0)
            and registry.capability(a.device) in _MID_GEMM_CAPABILITIES
            and getattr(_c(), built, False))


def _mid_gemm_takes(a, b, b_scale, a_scale=None) -> bool:
    """Whether csrc/gemm_mid.cu takes this problem: DECODE_MAX_M < M <= MID_MAX_M."""
    return _sm90_gemm_takes(a, b, b_scale, a_scale, DECODE_MAX_M, MID_MAX_M, "HAS_MID_GEMM")


def _wgmma_gemm_takes(a, b, b_scale, a_scale=None) -> bool:
    """Whether csrc/gemm_wgmma.cu takes this problem: MID_MAX_M < M <= WGMMA_MAX_M."""
    return _sm90_gemm_takes(a, b, b_scale, a_scale, MID_MAX_M, WGMMA_MAX_M, "HAS_WGMMA_GEMM")


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias):
    swizzled = scale_layout == "swizzled"
    if _decode_gemm_takes(a, b):
        return _c().gemm_decode(a, None, b, b_scale, swizzled, b_alpha.reshape(-1).contiguous(),
                                bias, out_dtype)
    if _mid_gemm_takes(a, b, b_scale):
        return _c().gemm_mid(a, None, b, b_scale, swizzled, b_alpha.reshape(-1).contiguous(),
                             bias, out_dtype)
    if _wgmma_gemm_takes(a, b, b_scale):
        return _c().gemm_wgmma(a, None, b, b_scale, swizzled, b_alpha.reshape(-1).contiguous(),
                               bias, out_dtype, _WGMMA_VARIANT)
    return _fallback("gemm_w4a16", a.device, (a.dtype, out_dtype))(
        a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    per_column = alpha.reshape(-1).contiguous()
    if _decode_gemm_takes(a, b):
        return _c().gemm_decode(a, a_scale, b, b_scale, True, per_column, bias, out_dtype)
    if _mid_gemm_takes(a, b, b_scale, a_scale):
        return _c().gemm_mid(a, a_scale, b, b_scale, True, per_column, bias, out_dtype)
    if _wgmma_gemm_takes(a, b, b_scale, a_scale):
        # The wgmma kernel reads 16-bit activations: decode them first (M x K values, ~1 % of
        # the weight bytes at M = 128). lut[q] * s needs at most 6 significant bits and lies in
        # [2^-10, 2688], so with a global scale of 1 the bf16 copy is exact and the product
        # is the W4A4 one.
        one = torch.ones((), dtype=torch.float32, device=a.device)
        a16 = _c().dequantize(a, a_scale, one, True, torch.bfloat16)
        return _c().gemm_wgmma(a16, None, b, b_scale, True, per_column, bias, out_dtype,
                               _WGMMA_VARIANT)
    return _fallback("gemm", a.device, (out_dtype,))(
        a, b, a_scale, b_scale, alpha, out_dtype, bias)


def get(op: str):
    return globals()[op]
