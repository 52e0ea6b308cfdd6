"""Per-row FP8 (e4m3) quantization of activations for the opt-in, lossy FP8 prefill mode
(``prefill.py``): ``q[m, :] = e4m3(x[m, :] * 448 / amax_m)``, ``scale[m] = amax_m / 448``, the
row-wise scales ``torch._scaled_mm`` takes. One program per row reads the row twice (amax, then
quantize; the second read mostly hits L2), with no host sync.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton import _bits
from nvfp4_kernels.backends.triton._launch import grid_device, interpreting

_BLOCK_K = 1024
# An all-zero row gets this amax: scale ~0, codes 0, no 0 * inf. A constexpr: Triton 3.6 refuses
# plain globals inside a kernel (3.8 accepts them).
_TINY = tl.constexpr(1e-30)


@triton.jit
def _rows_kernel(x_ptr, q_ptr, scale_ptr, K, BLOCK_K: tl.constexpr, INTERPRET: tl.constexpr):
    row = tl.program_id(0).to(tl.int64) * K
    steps = (K + BLOCK_K - 1) // BLOCK_K
    amax = tl.zeros([BLOCK_K], dtype=tl.float32)
    for i in range(0, steps):
        cols = i * BLOCK_K + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + row + cols, mask=cols < K, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(x))
    amax_row = tl.maximum(tl.max(amax, axis=0), _TINY)
    tl.store(scale_ptr + tl.program_id(0), amax_row / 448.0)
    inv = 448.0 / amax_row
    for i in range(0, steps):
        cols = i * BLOCK_K + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + row + cols, mask=cols < K, other=0.0).to(tl.float32)
        # |x * inv| <= 448 up to one rounding, which RNE brings back to 448.
        q = _bits.cast_out(tl.minimum(tl.maximum(x * inv, -448.0), 448.0), tl.float8e4nv,
                           INTERPRET)
        tl.store(q_ptr + row + cols, q, mask=cols < K)


def quantize_rows(x: torch.Tensor):
    """x [M, K] bf16/fp16 -> (e4m3 [M, K], float32 scales [M, 1]) with x ~ q * scale."""
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=x.device)
    scale = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    if m and k:
        with grid_device(x):
            _rows_kernel[(m,)](x, q, scale, k, BLOCK_K=_BLOCK_K, INTERPRET=interpreting(),
                               num_warps=4)
    return q, scale


__all__ = ["quantize_rows"]
