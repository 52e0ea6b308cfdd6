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

from nvfp4_kernels import _global_scale
from nvfp4_kernels.backends.triton import _bits, amax
from nvfp4_kernels.backends.triton._launch import grid_device, launch
from nvfp4_kernels.layout import BLOCK, swizzled_shape

# Tile sizes: a [32, 8*16] fp32 tile is 4096 elements, 32 per thread at 4 warps. Quantize is
# memory-bound; this only needs to be large enough for 16-byte loads per thread
# and enough programs in flight. The interpreter runs far faster with fewer, larger programs.
_BLOCK_R = 32
_BLOCK_S = 8
_NUM_WARPS = 4
# (BLOCK_R, BLOCK_S, num_warps) candidates that benchmarks/bench_quantize.py --sweep times on a
# GPU; the default above stays until a measured candidate beats it (issue 11 item 3: the default
# reached 65-67 % of copy bandwidth on the H100). The last two hold 16 values per thread instead
# of 32: about 40 registers instead of about 64 (sm_90 compile, Triton 3.8), so twice the
# resident programs.
CANDIDATES = ((32, 8, 4), (16, 16, 4), (64, 8, 8), (32, 16, 8), (128, 4, 8), (8, 32, 4),
              (16, 8, 4), (32, 4, 4))


@triton.jit
def _quantize_kernel(x_ptr, gs_ptr, data_ptr, scale_ptr, R, C, SROWS, SCOLS, SCP4,
                     BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr, SWIZZLED: tl.constexpr):
    # One program per [BLOCK_R, BLOCK_S * 16] tile of the (padded) scale grid, in row-major
    # order from the *last* row block up: a computed global scale's amax pass
    # (backends/triton/amax.py) ends on the tail of x, which is then still in L2.
    col_blocks = tl.cdiv(SCOLS, BLOCK_S)
    pid = tl.program_id(0)
    pid_c = pid % col_blocks
    pid_r = tl.cdiv(SROWS, BLOCK_R) - 1 - pid // col_blocks
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
    # A NaN in a block makes its scale the e4m3 NaN (0x7F), so inv is NaN and every code 0, as
    # the reference's amax and clamp propagate it (tl.max and tl.minimum may drop a NaN).
    nan_block = tl.max((x != x).to(tl.int32), axis=2) > 0
    s_code = tl.where(nan_block, 0x7F, s_code)
    s32 = tl.where(nan_block, float("nan"), s32)
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
    grid = (triton.cdiv(srows, block_r) * triton.cdiv(scols, block_s),)
    if grid[0]:
        # global_scale is one float32 value (the op's checks); the kernel loads it in place.
        with grid_device(x):
            launch(_quantize_kernel, grid,
                   (x, global_scale, data, scale.view(torch.uint8), rows, cols, srows, scols,
                    scols // 4 if swizzled else 0, block_r, block_s, swizzled),
                   num_warps=warps)
    return data, scale


def quantize_computed_scale(x, scale_layout, weight_alpha):
    """The global scale from x (amax.global_scale: one fill, one launch), then quantize with it;
    alpha = weight_alpha / gs (one division), empty without a weight_alpha."""
    gs = amax.global_scale(x)
    data, scale = quantize(x, gs, scale_layout)
    return data, scale, gs, _global_scale.gemm_alpha(weight_alpha, gs)


__all__ = ["quantize", "quantize_computed_scale"]
