"""W4A16 and W4A4 GEMMs: decode NVFP4 in registers to fp16, ordinary tensor-core ``tl.dot``.

D[M, N] = alpha[n] * sum_k A[m, k] * B_hat[n, k] (+ bias[n]), fp32 accumulation.

Weights are decoded with bit moves only (``_bits.decode_tile``): each E2M1 nibble lands in fp16
bit positions where it reads as lut * 2**-14, one fp16 multiply by the block scale gives
lut * s * 2**-14 exactly, and the 2**-14 (2**-28 when A is NVFP4 too) is undone once per output
element in the epilogue. For bf16 activations the exact fp16 product is converted to bf16
(exact: at most 6 significant bits, exponent within bf16's range).

Split-K programs write float32 partials to a workspace that a second small kernel sums in a fixed
order (deterministic) before the epilogue.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits, prefill
from nvfp4_kernels.backends.triton import gemv as _gemv
from nvfp4_kernels.backends.triton._launch import dense, grid_device, interpreting, launch, sm_count
from nvfp4_kernels.backends.triton.plan import (GEMV_MAX_M, GemmConfig, GemvConfig, config_for,
                                                split_k_for)
from nvfp4_kernels.layout import BLOCK, swizzled_shape


@triton.jit
def _load_nvfp4_tile(ptr, scale_ptr, rows, k0, R, K, SCP4,
                     ROWS: tl.constexpr, BK: tl.constexpr, SWIZZLED: tl.constexpr):
    """Rows `rows` x K slice [k0, k0 + BK) of a packed NVFP4 matrix, decoded to fp16 * 2**-14."""
    rows64 = rows.to(tl.int64)
    bcols = k0 // 2 + tl.arange(0, BK // 2)
    rmask = (rows < R)[:, None]
    packed = tl.load(ptr + rows64[:, None] * (K // 2) + bcols[None, :],
                     mask=rmask & (bcols < K // 2)[None, :], other=0)
    scols = k0 // 16 + tl.arange(0, BK // 16)
    if SWIZZLED:
        soff = _bits.swizzled_offset(rows64[:, None], scols[None, :], SCP4)
    else:
        soff = rows64[:, None] * (K // 16) + scols[None, :]
    s = tl.load(scale_ptr + soff, mask=rmask & (scols < K // 16)[None, :], other=0)
    return _bits.decode_tile(packed, s, ROWS, BK)


@triton.jit
def _epilogue(acc, offs_m, offs_n, M, N, alpha_ptr, bias_ptr, out_ptr, FOLD: tl.constexpr,
              ALPHA_PER_COL: tl.constexpr, HAS_BIAS: tl.constexpr, SWAP_AB: tl.constexpr,
              BF16_BY_BITS: tl.constexpr):
    """acc * 2**fold * alpha (+ bias) -> out; acc is [BN, BM] when SWAP_AB else [BM, BN]."""
    nmask = offs_n < N
    if ALPHA_PER_COL:
        alpha = tl.load(alpha_ptr + offs_n, mask=nmask, other=0.0)
    else:
        alpha = tl.load(alpha_ptr + tl.zeros_like(offs_n))
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n, mask=nmask, other=0.0).to(tl.float32)
    m64 = offs_m.to(tl.int64)
    if SWAP_AB:
        res = (acc * FOLD) * alpha[:, None]
        if HAS_BIAS:
            res = res + bias[:, None]
        ptrs = out_ptr + m64[None, :] * N + offs_n[:, None]
        mask = nmask[:, None] & (offs_m < M)[None, :]
    else:
        res = (acc * FOLD) * alpha[None, :]
        if HAS_BIAS:
            res = res + bias[None, :]
        ptrs = out_ptr + m64[:, None] * N + offs_n[None, :]
        mask = (offs_m < M)[:, None] & nmask[None, :]
    tl.store(ptrs, _bits.cast_out(res, out_ptr.dtype.element_ty, BF16_BY_BITS), mask=mask)


@triton.jit
def _gemm_kernel(a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, alpha_ptr, bias_ptr, out_ptr, ws_ptr,
                 M, N, K, K_SPLIT, A_SCP4, B_SCP4,
                 A_NVFP4: tl.constexpr, B_SWIZZLED: tl.constexpr, DOT_DTYPE: tl.constexpr,
                 FOLD: tl.constexpr, ALPHA_PER_COL: tl.constexpr, HAS_BIAS: tl.constexpr,
                 SPLIT_K: tl.constexpr, SWAP_AB: tl.constexpr, GROUP_M: tl.constexpr,
                 BF16_BY_BITS: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    # Grouped program order: GROUP_M consecutive programs along M share one weight strip.
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_m = tl.cdiv(M, BM)
    num_n = tl.cdiv(N, BN)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    group_rows = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_rows
    pid_n = (pid % per_group) // group_rows
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    m64 = offs_m.to(tl.int64)

    if SWAP_AB:
        acc = tl.zeros([BN, BM], dtype=tl.float32)
    else:
        acc = tl.zeros([BM, BN], dtype=tl.float32)
    # Loop bounds are plain ints (K_SPLIT is a multiple of BK): Triton 3.6's interpreter (with
    # numpy 2.5) cannot iterate over tensor bounds. The last split may run past K; its loads are
    # masked to zero there.
    k_lo = pid_k * K_SPLIT
    for step in range(0, K_SPLIT // BK):
        k0 = k_lo + step * BK
        if A_NVFP4:
            a = _load_nvfp4_tile(a_ptr, a_scale_ptr, offs_m, k0, M, K, A_SCP4, BM, BK, True)
        else:
            offs_k = k0 + tl.arange(0, BK)
            a = tl.load(a_ptr + m64[:, None] * K + offs_k[None, :],
                        mask=(offs_m < M)[:, None] & (offs_k < K)[None, :], other=0.0)
        a = a.to(DOT_DTYPE)
        b = _load_nvfp4_tile(b_ptr, b_scale_ptr, offs_n, k0, N, K, B_SCP4, BN, BK,
                             B_SWIZZLED).to(DOT_DTYPE)
        if DOT_DTYPE == tl.float32:
            # Interpreter only (see launcher): exact fp32 products, no tf32.
            if SWAP_AB:
                acc = tl.dot(b, tl.trans(a), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, tl.trans(b), acc, input_precision="ieee")
        else:
            if SWAP_AB:
                acc = tl.dot(b, tl.trans(a), acc)
            else:
                acc = tl.dot(a, tl.trans(b), acc)

    if SPLIT_K == 1:
        _epilogue(acc, offs_m, offs_n, M, N, alpha_ptr, bias_ptr, out_ptr, FOLD, ALPHA_PER_COL,
                  HAS_BIAS, SWAP_AB, BF16_BY_BITS)
    else:
        base = ws_ptr + pid_k.to(tl.int64) * M * N
        if SWAP_AB:
            ptrs = base + m64[None, :] * N + offs_n[:, None]
            mask = (offs_n < N)[:, None] & (offs_m < M)[None, :]
        else:
            ptrs = base + m64[:, None] * N + offs_n[None, :]
            mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
        tl.store(ptrs, acc, mask=mask)


@triton.jit
def _split_k_reduce_kernel(ws_ptr, alpha_ptr, bias_ptr, out_ptr, M, N,
                           FOLD: tl.constexpr, ALPHA_PER_COL: tl.constexpr,
                           HAS_BIAS: tl.constexpr, SPLIT_K: tl.constexpr,
                           BF16_BY_BITS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    offs_m = tl.program_id(0) * BM + tl.arange(0, BM)
    offs_n = tl.program_id(1) * BN + tl.arange(0, BN)
    off = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for s in tl.static_range(SPLIT_K):
        acc += tl.load(ws_ptr + s * M * N + off, mask=mask, other=0.0)
    _epilogue(acc, offs_m, offs_n, M, N, alpha_ptr, bias_ptr, out_ptr, FOLD, ALPHA_PER_COL,
              HAS_BIAS, False, BF16_BY_BITS)


_TL_DTYPE = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def output(a, b, out_dtype, out):
    """The [M, N] result: `out` when given (tests pass NaN-poisoned buffers), else a new one."""
    if out is not None:
        return out
    return torch.empty((a.shape[0], b.shape[0]), dtype=out_dtype, device=a.device)


def _launch(a, a_scale, b, b_scale, alpha, bias, out_dtype, b_swizzled, a_nvfp4, out, config):
    m, n, k = a.shape[0], b.shape[0], b.shape[1] * 2
    device = a.device
    out = output(a, b, out_dtype, out)
    if m == 0 or n == 0:
        return out
    interp = interpreting()
    cfg: GemmConfig = config or config_for(m, interp)
    if a_nvfp4:
        dot_dtype, fold = tl.float16, 2.0 ** 28
    elif a.dtype == torch.bfloat16 and interp:
        # Triton 3.8's interpreter computes tl.dot on bf16 operands wrongly; fp32 is exact.
        dot_dtype, fold = tl.float32, 2.0 ** 14
    else:
        dot_dtype, fold = _TL_DTYPE[a.dtype], 2.0 ** 14
    split = split_k_for(cfg, m, n, k, sm_count(device.type, device.index))
    steps = triton.cdiv(k, cfg.block_k)
    split = max(1, min(split, steps))
    k_split = triton.cdiv(steps, split) * cfg.block_k
    split = triton.cdiv(k, k_split)
    ws = torch.empty((split, m, n), dtype=torch.float32, device=device) if split > 1 else out
    scp4 = swizzled_shape(1, k // BLOCK)[1] // 4
    alpha = dense(alpha)  # float32, 1 or N values (the op's checks); loaded with stride 1
    has_bias = bias is not None
    per_col = alpha.numel() > 1
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n), split)
    a_scale_u8 = a_scale.view(torch.uint8) if a_nvfp4 else a
    with grid_device(a):
        # Parameters in _gemm_kernel's order, constexprs last (see _launch.launch).
        launch(_gemm_kernel, grid,
               (a, a_scale_u8, b, b_scale.view(torch.uint8), alpha, bias if has_bias else alpha,
                out, ws, m, n, k, k_split, scp4, scp4,
                a_nvfp4, b_swizzled, dot_dtype, fold, per_col, has_bias, split, cfg.swap_ab,
                cfg.group_m, interp, cfg.block_m, cfg.block_n, cfg.block_k),
               num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        if split > 1:
            rgrid = (triton.cdiv(m, 16), triton.cdiv(n, 128))
            launch(_split_k_reduce_kernel, rgrid,
                   (ws, alpha, bias if has_bias else alpha, out, m, n, fold, per_col, has_bias,
                    split, interp, 16, 128), num_warps=4)
    return out


def _use_gemv(a, b, config) -> bool:
    """The FMA GEMV (gemv.py) for M <= plan.GEMV_MAX_M, or when a GemvConfig is passed."""
    if config is not None:
        return isinstance(config, GemvConfig)
    return a.shape[0] <= GEMV_MAX_M and _gemv.supports(a, b)


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias, *, out=None, config=None):
    """Dense a [M, K] (bf16/fp16) x NVFP4 weight b [N, K/2] -> [M, N] in out_dtype.

    config: a plan.GemmConfig (tensor-core kernel) or plan.GemvConfig (GEMV) to override the
    choice by M (benchmark sweeps, tests). With neither config nor out, prefill sizes
    (plan.PREFILL_MIN_M) take prefill.py's route."""
    if _use_gemv(a, b, config):
        return _gemv.gemv_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias, out=out,
                                config=config)
    if out is None and config is None and prefill.takes(a):
        return prefill.gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias)
    return _launch(a, None, b, b_scale, b_alpha, bias, out_dtype, scale_layout == "swizzled",
                   False, out, config)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias, *, out=None, config=None):
    """NVFP4 a [M, K/2] x NVFP4 b [N, K/2], both with swizzled scales -> [M, N] (prefill sizes:
    the dequantize + cuBLAS route, as gemm_w4a16)."""
    if _use_gemv(a, b, config):
        return _gemv.gemv(a, b, a_scale, b_scale, alpha, out_dtype, bias, out=out, config=config)
    if out is None and config is None and prefill.takes(a):
        return prefill.gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias)
    return _launch(a, a_scale, b, b_scale, alpha, bias, out_dtype, True, True, out, config)
