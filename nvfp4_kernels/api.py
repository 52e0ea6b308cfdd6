"""The public functions: validate, shape, then call the ``torch.ops.nvfp4`` custom ops.

Leading dims are flattened here so that ops and kernels only ever see 2-D contiguous matrices.
"""

from __future__ import annotations

import math

import torch

from nvfp4_kernels import _checks as check
from nvfp4_kernels import ops as _ops  # noqa: F401  (registers torch.ops.nvfp4)
from nvfp4_kernels import reference as ref
from nvfp4_kernels.formats import NVFP4
from nvfp4_kernels.reference import BLOCK


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """448*6/amax(|x|) as a 0-dim float32 tensor on x's device; 1.0 when x is all zero."""
    check.tensor("x", x, dtypes=check.FLOAT_DTYPES, contiguous=False)
    return ref.global_scale(x)


def _as_global_scale(value, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        check.scalar_f32("global_scale", value)
        return value.reshape(())
    return torch.tensor(float(value), dtype=torch.float32, device=device)


def quantize(x: torch.Tensor, global_scale=None, *, scale_layout: str = "swizzled",
             backend: str | None = None) -> NVFP4:
    """Quantize x (..., K) along its last dim to NVFP4. K must be a multiple of 16.

    global_scale: encode-direction scale (tensor or float); computed from x when None.
    scale_layout: "swizzled" (what the GEMMs read) or "linear" ([..., K/16]).
    """
    check.tensor("x", x, dtypes=check.FLOAT_DTYPES)
    if x.dim() == 0:
        raise ValueError(f"x: expected at least 1 dim, got {check.describe(x)}")
    cols = x.shape[-1]
    check.multiple_of("x", cols, BLOCK, f"the last dim (shape {tuple(x.shape)})")
    gs = ref.global_scale(x) if global_scale is None else _as_global_scale(global_scale, x.device)
    lead = x.shape[:-1]
    data, scale = torch.ops.nvfp4.quantize(x.reshape(math.prod(lead), cols), gs, scale_layout,
                                           backend)
    data = data.reshape(*lead, cols // 2)
    if scale_layout == "linear":
        scale = scale.reshape(*lead, cols // BLOCK)
    return NVFP4(data, scale, gs, scale_layout, x.shape)


def dequantize(q: NVFP4, dtype: torch.dtype = torch.bfloat16, *,
               backend: str | None = None) -> torch.Tensor:
    """lut[code] * scale / global_scale, in `dtype`, with q's logical shape."""
    if not isinstance(q, NVFP4):
        raise TypeError(f"q: expected nvfp4_kernels.NVFP4, got {type(q).__name__}")
    flat = q.as_2d()
    out = torch.ops.nvfp4.dequantize(flat.data, flat.scale, q.global_scale, q.scale_layout,
                                     dtype, backend)
    return out.reshape(q.shape)


def swizzle_scales(scale: torch.Tensor) -> torch.Tensor:
    """Linear [R, K/16] e4m3 scales -> swizzled [ceil128(R), ceil4(K/16)] (128x4 layout)."""
    check.tensor("scale", scale, ndim=2, contiguous=False)
    return ref.swizzle_scales(scale)


def unswizzle_scales(scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Swizzled scales -> linear [rows, cols]; `cols` counts scale columns (K/16), not K."""
    check.tensor("scale", scale, contiguous=False)
    return ref.unswizzle_scales(scale, rows, cols)


def _weight(b) -> NVFP4:
    if not isinstance(b, NVFP4):
        raise TypeError(f"b: expected an nvfp4_kernels.NVFP4 weight [N, K], got "
                        f"{type(b).__name__}")
    if len(b.shape) != 2:
        raise ValueError(f"b: expected a 2-D weight [N, K], got logical shape {tuple(b.shape)}")
    return b


def gemm(a, b: NVFP4, *, out_dtype: torch.dtype | None = None, bias: torch.Tensor | None = None,
         backend: str | None = None) -> torch.Tensor:
    """D = a @ dequant(b)^T (+ bias), fp32 accumulation.

    a: NVFP4 (..., K) -> W4A4 (alpha = 1/(gs_a*gs_b)); or a dense bf16/fp16 tensor (..., K) ->
    weight-only W4A16. b: NVFP4 weight [N, K]. out_dtype: bf16 or fp16; default bf16 for W4A4
    and a's dtype for W4A16.
    """
    b = _weight(b)
    n = b.shape[0]
    if isinstance(a, NVFP4):
        lead = a.shape[:-1]
        a2 = a.as_2d().with_scale_layout("swizzled")
        b2 = b.with_scale_layout("swizzled")
        alpha = (1.0 / (a.global_scale * b.global_scale)).reshape(1)
        out = torch.ops.nvfp4.gemm(a2.data, b2.data, a2.scale, b2.scale, alpha,
                                   out_dtype or torch.bfloat16, bias, backend)
    else:
        check.tensor("a", a, dtypes=(torch.bfloat16, torch.float16))
        if a.dim() == 0:
            raise ValueError(f"a: expected at least 1 dim, got {check.describe(a)}")
        lead = a.shape[:-1]
        b_alpha = (1.0 / b.global_scale).reshape(1)
        out = torch.ops.nvfp4.gemm_w4a16(a.reshape(math.prod(lead), a.shape[-1]), b.data, b.scale, b_alpha,
                                         b.scale_layout, out_dtype, bias, backend)
    return out.reshape(*lead, n)
