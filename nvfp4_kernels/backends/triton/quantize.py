"""NVFP4 quantize kernels (bit-exact with ``nvfp4_kernels.reference``); dequantize is in
``dequantize.py``.

One program handles BLOCK_R rows x BLOCK_S scale blocks (BLOCK_S * 16 elements per row). For the
swizzled layout the grid covers the zero-padded scale matrix [ceil128(R), ceil4(C/16)]: padding
positions load zeros, whose block amax is 0, so the same code writes their zero scales and no
separate memset is launched.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import grid_device, interpreting
from nvfp4_kernels.reference import BLOCK, swizzled_shape

# Tile sizes: a [32, 8*16] fp32 tile is 4096 elements, 32 per thread at 4 warps. Quantize is
# memory-bound; this only needs to be large enough for 16-byte loads per thread
# and enough programs in flight. The interpreter runs far faster with fewer, larger programs.
_BLOCK_R = 32
_BLOCK_S = 8
_NUM_WARPS = 4
# (BLOCK_R, BLOCK_S, num_warps) candidates that benchmarks/bench_quantize.py --sweep times on a
# GPU; the default above stays until a measured candidate beats it (issue 11 item 3: the default
# reached 65-67 % of copy bandwidth on the H100).
CANDIDATES = ((32, 8, 4), (16, 16, 4), (64, 8, 8), (32, 16, 8), (128, 4, 8), (8, 32, 4))


@triton.jit
def _quantize_kernel(x_ptr, gs_ptr, data_ptr, scale_ptr, R, C, SROWS, SCOLS, SCP4,
                     BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, SWIZZLED: tl.constexpr):
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * (BLOCK_S * 16) + tl.arange(0, BLOCK_S * 16)
    rows64 = rows.to(tl.int64)
    mask = (rows < R)[:, None] & (cols < C)[None, :]
    x = tl.load(x_ptr + rows64[:, None] * C + cols[None, :], mask=mask, other=0.0)
    x = tl.reshape(x.to(tl.float32), [BLOCK_R, BLOCK_S, 16])

    # s = e4m3(min(gs * (amax * (1/6)), 448)): same float32 operations, same order.
    gs = tl.load(gs_ptr)
    amax = tl.max(tl.abs(x), axis=2)
    s_code, s32 = _bits.e4m3_rne(tl.minimum(gs * (amax * 0.16666666666666666), 448.0))
    # inv = 0 if s == 0 else 1 / (s * (1/gs)), IEEE divisions.
    inv_gs = tl.math.div_rn(tl.full([], 1.0, tl.float32), gs)
    denom = s32 * inv_gs
    inv = tl.where(s32 == 0.0, 0.0,
                   tl.math.div_rn(tl.full(denom.shape, 1.0, tl.float32),
                                  tl.where(s32 == 0.0, 1.0, denom)))
    codes = _bits.e2m1_rne(x * inv[:, :, None])
    lo, hi = tl.split(tl.reshape(codes, [BLOCK_R, BLOCK_S * 8, 2]))
    packed = (lo | (hi << 4)).to(tl.uint8)
    pcols = pid_c * (BLOCK_S * 8) + tl.arange(0, BLOCK_S * 8)
    pmask = (rows < R)[:, None] & (pcols < C // 2)[None, :]
    tl.store(data_ptr + rows64[:, None] * (C // 2) + pcols[None, :], packed, mask=pmask)

    scols = pid_c * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = (rows < SROWS)[:, None] & (scols < SCOLS)[None, :]
    if SWIZZLED:
        soff = _bits.swizzled_offset(rows64[:, None], scols[None, :], SCP4)
    else:
        soff = rows64[:, None] * SCOLS + scols[None, :]
    tl.store(scale_ptr + soff, s_code.to(tl.uint8), mask=smask)


@triton.jit
def _amax_kernel(x_ptr, amax_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.abs(tl.load(x_ptr + offs, mask=offs < numel, other=0.0).to(tl.float32))
    # Non-finite elements are ignored (x == x is false for NaN; inf is not < inf).
    x = tl.where((x == x) & (x < float("inf")), x, 0.0)
    # |x| >= 0, so the float max equals the max of the bit patterns read as int32.
    tl.atomic_max(amax_ptr, tl.max(x, axis=0).to(tl.int32, bitcast=True))


def amax(x: torch.Tensor) -> torch.Tensor:
    """max |x| over finite elements as a 0-dim float32 tensor, one kernel and no host sync."""
    flat = x.reshape(-1)
    out = torch.zeros((), dtype=torch.int32, device=x.device)
    block = 4096
    if flat.numel():
        with grid_device(x):
            _amax_kernel[(triton.cdiv(flat.numel(), block),)](flat, out, flat.numel(),
                                                              BLOCK=block)
    return out.view(torch.float32)


@triton.jit
def _global_scale_kernel(x_ptr, ws_ptr, gs_ptr, numel, BLOCK: tl.constexpr):
    """gs = min(2688 / amax, FLT_MAX) (1 when amax == 0) in one launch: every program folds its
    block's max into ws[0] (int32 bits of a non-negative float, so int max == float max) and
    counts itself done in ws[1]; the last one to finish reads the total and writes gs."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.abs(tl.load(x_ptr + offs, mask=offs < numel, other=0.0).to(tl.float32))
    x = tl.where((x == x) & (x < float("inf")), x, 0.0)  # non-finite elements are ignored
    tl.atomic_max(ws_ptr, tl.max(x, axis=0).to(tl.int32, bitcast=True))
    # acq_rel (Triton's default): the last program's increment sees every earlier maximum.
    done = tl.atomic_add(ws_ptr + 1, 1)
    if done == tl.num_programs(0) - 1:
        amax = tl.atomic_max(ws_ptr, 0).to(tl.float32, bitcast=True)  # an atomic read
        gs = tl.math.div_rn(tl.full([1], 2688.0, tl.float32), tl.full([1], 1.0, tl.float32) * amax)
        gs = tl.minimum(gs, 3.4028234663852886e38)
        gs = tl.where(amax == 0.0, 1.0, gs)
        tl.store(gs_ptr + tl.arange(0, 1), gs)


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """448*6/amax(|x|) clamped to FLT_MAX, 1.0 when all zero, non-finite elements ignored (as
    nvfp4_kernels._global_scale): one fill and one kernel, no host sync."""
    flat = x.reshape(-1)
    ws = torch.zeros(2, dtype=torch.int32, device=x.device)
    gs = torch.ones((), dtype=torch.float32, device=x.device) if not flat.numel() else \
        torch.empty((), dtype=torch.float32, device=x.device)
    if flat.numel():
        block = 4096
        with grid_device(x):
            _global_scale_kernel[(triton.cdiv(flat.numel(), block),)](flat, ws, gs, flat.numel(),
                                                                      BLOCK=block)
    return gs


def quantize(x, global_scale, scale_layout, *, out=None, config=None):
    """x [R, C] -> (data u8 [R, C/2], scale e4m3 linear [R, C/16] or swizzled padded).

    out: optional (data, scale) tensors to write into (tests pass NaN-poisoned ones).
    config: (BLOCK_R, BLOCK_S, num_warps), default (_BLOCK_R, _BLOCK_S, _NUM_WARPS)."""
    block_r, block_s, warps = config or (_BLOCK_R, _BLOCK_S, _NUM_WARPS)
    rows, cols = x.shape
    swizzled = scale_layout == "swizzled"
    srows, scols = swizzled_shape(rows, cols // BLOCK) if swizzled else (rows, cols // BLOCK)
    if out is None:
        data = torch.empty((rows, cols // 2), dtype=torch.uint8, device=x.device)
        scale = torch.empty((srows, scols), dtype=torch.float8_e4m3fn, device=x.device)
    else:
        data, scale = out
    gs = global_scale.reshape(1).float()
    grid = (triton.cdiv(srows, block_r), triton.cdiv(scols, block_s))
    if grid[0] and grid[1]:
        with grid_device(x):
            _quantize_kernel[grid](x, gs, data, scale.view(torch.uint8), rows, cols, srows,
                                   scols, scols // 4 if swizzled else 0, BLOCK_R=block_r,
                                   BLOCK_S=block_s, SWIZZLED=swizzled, num_warps=warps)
    return data, scale


__all__ = ["amax", "global_scale", "quantize"]
