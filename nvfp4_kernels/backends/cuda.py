"""The ``cuda`` backend: generic CUDA kernels of the compiled extension, any SM80+ GPU.

Quantize/dequantize (bit-exact with the reference; on sm_100a/sm_120a builds the quantize
kernel uses the hardware E2M1 conversion), the FP8 paged KV cache, and two GEMMs for GPUs
without FP4 tensor cores, W4A16 and W4A4: the decode-size GEMM
(csrc/include/nvfp4/decode_gemm.cuh, 1 <= M <= 16 tokens, SM80-SM90), the mid-size GEMM
(csrc/include/nvfp4/mid_gemm.cuh, 16 < M <= 64, SM90: it needs up to ~210 KB of shared memory)
and the Hopper warpgroup-MMA GEMM (csrc/include/nvfp4/wgmma_gemm.cuh, 16 < M <= 128, sm_90a
builds, ahead of the mid-size kernel; W4A4 decodes its activations to bf16 in the kernel's
activation pre-permute pass, or in a dequantize launch first for the wide launch shape).
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
# Largest token count the mid-size GEMM takes (its token tiles: 8 of 8 tokens): SM90 builds
# without sm_90a, where the wgmma GEMM below is missing.
MID_MAX_M = 64
# Largest token count the wgmma GEMM (csrc/gemm_wgmma.cu, sm_90a builds) takes; it takes every
# M from DECODE_MAX_M + 1 up, ahead of the mid-size kernel, which stays for builds without
# sm_90a. Measured on the H100 (sweep_decode_gemm.py --kernel wgmma, 2026-11-27;
# docs/performance.md): with the launch shapes below it is faster than the mid-size kernel at
# M = 24-64 on every Gemma-4-31B layer except o at M = 32-48 and qkv at M = 32 (1-3 % slower
# there), and 1.5-2.7x faster than the fused Triton kernel at M = 96-128; from M = 160 the
# prefill route (dequantize + cuBLAS) is as fast, and takes over past this bound.
WGMMA_MAX_M = 128
# Its launch shapes (the `variant` of csrc/gemm_wgmma.cu), measured best on those layers:
# 7 = three warpgroups of 384 weight rows per CTA, best on gate_up (N = 43008) at M <= 64
# (0.120 vs 0.139 ms for 10 at M = 64, 0.161 for the mid-size kernel); 10 = two 64-row tiles per
# warpgroup, activations pre-permuted by a separate pass, three MMAs in flight, best elsewhere
# (gate_up M = 128: 0.228 ms against 0.291 for the first shape wired in, cuBLAS bf16 0.182).
_WGMMA_WIDE, _WGMMA_DEFAULT = 7, 10
# The shapes whose pre-permuting pass also decodes packed (W4A4) activations.
_WGMMA_PREPERMUTED = frozenset({8, 9, 10})
_WGMMA_WIDE_N, _WGMMA_WIDE_MAX_M = 32768, 64


def _wgmma_variant(m: int, n: int) -> int:
    return _WGMMA_WIDE if m <= _WGMMA_WIDE_MAX_M and n >= _WGMMA_WIDE_N else _WGMMA_DEFAULT


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
    """Whether csrc/gemm_wgmma.cu takes this problem: DECODE_MAX_M < M <= WGMMA_MAX_M."""
    return _sm90_gemm_takes(a, b, b_scale, a_scale, DECODE_MAX_M, WGMMA_MAX_M,
                            "HAS_WGMMA_GEMM")


def kernel_for(a, b, b_scale, a_scale=None) -> str | None:
    """Which of the extension's GEMMs takes this problem here ("decode", "wgmma", "mid"), or
    None: the next backend of the automatic order does."""
    if _decode_gemm_takes(a, b):
        return "decode"
    if _wgmma_gemm_takes(a, b, b_scale, a_scale):
        return "wgmma"
    if _mid_gemm_takes(a, b, b_scale, a_scale):
        return "mid"
    return None


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias):
    kernel = kernel_for(a, b, b_scale)
    if kernel is None:
        return _fallback("gemm_w4a16", a.device, (a.dtype, out_dtype))(
            a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    args = (a, None, b, b_scale, scale_layout == "swizzled", b_alpha.reshape(-1).contiguous(),
            bias, out_dtype)
    if kernel == "wgmma":
        return _c().gemm_wgmma(*args, _wgmma_variant(a.shape[0], b.shape[0]))
    return getattr(_c(), f"gemm_{kernel}")(*args)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    kernel = kernel_for(a, b, b_scale, a_scale)
    if kernel is None:
        return _fallback("gemm", a.device, (out_dtype,))(
            a, b, a_scale, b_scale, alpha, out_dtype, bias)
    per_column = alpha.reshape(-1).contiguous()
    if kernel == "wgmma":
        # The wgmma kernel multiplies 16-bit activations. lut[q] * s needs at most 6 significant
        # bits and lies in [2^-10, 2688], so a bf16 copy with a global scale of 1 is exact and
        # the product is the W4A4 one. The pre-permuting shape decodes them in its permute pass
        # (no extra launch); the wide shape takes a dequantize launch first (M x K values, ~1 %
        # of the weight bytes at M = 128).
        variant = _wgmma_variant(a.shape[0], b.shape[0])
        if variant in _WGMMA_PREPERMUTED:
            return _c().gemm_wgmma(a, a_scale, b, b_scale, True, per_column, bias, out_dtype,
                                   variant)
        one = torch.ones((), dtype=torch.float32, device=a.device)
        a16 = _c().dequantize(a, a_scale, one, True, torch.bfloat16)
        return _c().gemm_wgmma(a16, None, b, b_scale, True, per_column, bias, out_dtype,
                               variant)
    return getattr(_c(), f"gemm_{kernel}")(a, a_scale, b, b_scale, True, per_column, bias,
                                           out_dtype)


def get(op: str):
    return globals()[op]
