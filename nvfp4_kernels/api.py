"""The public functions: check what only they see, shape, then call the ``nvfp4`` ops.

Leading dims are flattened here so that ops and kernels only ever see 2-D contiguous matrices.
Argument checks of the flattened tensors happen once, in the op (``_checks``); calls go through
``ops.<name>``, which in plain eager mode skips the dispatcher round trip (see ``_dispatch``).
Nothing on these paths reads a device value or copies from the host: every function is
CUDA-graph capturable (global scales and alphas come from ``_global_scale``).
"""

from __future__ import annotations

import math

import torch

from nvfp4_kernels import _checks as check
from nvfp4_kernels import _global_scale, _scales
from nvfp4_kernels import debug  # noqa: F401  (nk.debug: the opt-in value checks)
from nvfp4_kernels import ops as _ops
from nvfp4_kernels.formats import NVFP4
from nvfp4_kernels import layout
from nvfp4_kernels.layout import BLOCK


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """min(448*6/amax(|x|), FLT_MAX) as a 0-dim float32 tensor on x's device; 1.0 when x is
    all zero; non-finite elements are ignored. Device operations only (no sync)."""
    check.tensor("x", x, dtypes=check.FLOAT_DTYPES, contiguous=False)
    return _global_scale.global_scale(x)


def quantize(x: torch.Tensor, global_scale=None, *, scale_layout: str = "swizzled",
             backend: str | None = None) -> NVFP4:
    """Quantize x (..., K) along its last dim to NVFP4. K must be a multiple of 16.

    global_scale: encode-direction scale (tensor or float); computed from x when None.
    scale_layout: "swizzled" (what the GEMMs read) or "linear" ([..., K/16]).
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        check.tensor("x", x)
        raise ValueError(f"x: expected at least 1 dim, got {check.describe(x)}")
    if global_scale is None:
        # One op computes the scale and quantizes (the cuda backend: one C++ call, two launches).
        x2 = x if x.dim() == 2 else x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
        data, scale, gs, _ = _ops.quantize_computed_scale(x2, scale_layout, None, backend)
        return _packed(data, scale, gs, scale_layout, x.shape)
    if isinstance(global_scale, torch.Tensor):
        # Values: always on CPU (no sync), on a GPU only with debug checks (they sync).
        _scales.check_entering_scale("global_scale", global_scale)
        gs = global_scale if global_scale.dim() == 0 else \
            _global_scale.as_global_scale(global_scale, x.device)
    else:  # a number: checked here, for free; one filled tensor per value, kept
        gs = _scales.per_call_scale("global_scale", global_scale, x.device, ())
    if x.dim() == 2:
        data, scale = _ops.quantize(x, gs, scale_layout, backend)
        return NVFP4._from_op(data, scale, gs, scale_layout, x.shape)
    lead, cols = x.shape[:-1], x.shape[-1]
    data, scale = _ops.quantize(x.reshape(math.prod(lead), cols), gs, scale_layout, backend)
    return _packed(data, scale, gs, scale_layout, x.shape)


def _packed(data, scale, gs, scale_layout, shape) -> NVFP4:
    """The op's 2-D outputs as an NVFP4 of x's logical shape."""
    if len(shape) != 2:
        lead, cols = shape[:-1], shape[-1]
        data = data.reshape(*lead, cols // 2)
        if scale_layout == "linear":
            scale = scale.reshape(*lead, cols // BLOCK)
    return NVFP4._from_op(data, scale, gs, scale_layout, shape)


def dequantize(q: NVFP4, dtype: torch.dtype = torch.bfloat16, *,
               backend: str | None = None) -> torch.Tensor:
    """lut[code] * scale / global_scale, in `dtype`, with q's logical shape."""
    if not isinstance(q, NVFP4):
        raise TypeError(f"q: expected nvfp4_kernels.NVFP4, got {type(q).__name__}")
    flat = q.as_2d()
    out = _ops.dequantize(flat.data, flat.scale, q.global_scale, q.scale_layout, dtype, backend)
    return out.reshape(q.shape)


def swizzle_scales(scale: torch.Tensor) -> torch.Tensor:
    """Linear [R, K/16] e4m3 scales -> swizzled [ceil128(R), ceil4(K/16)] (128x4 layout)."""
    check.tensor("scale", scale, ndim=2, contiguous=False)
    return layout.swizzle_scales(scale)


def unswizzle_scales(scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Swizzled scales -> linear [rows, cols]; `cols` counts scale columns (K/16), not K."""
    check.tensor("scale", scale, contiguous=False)
    return layout.unswizzle_scales(scale, rows, cols)


def _weight(b) -> NVFP4:
    if not isinstance(b, NVFP4):
        raise TypeError(f"b: expected an nvfp4_kernels.NVFP4 weight [N, K], got "
                        f"{type(b).__name__}")
    if len(b.shape) != 2:
        raise ValueError(f"b: expected a 2-D weight [N, K], got logical shape {tuple(b.shape)}")
    return b


def gemm(a, b: NVFP4, *, out_dtype: torch.dtype | None = None, bias: torch.Tensor | None = None,
         weight_alpha: torch.Tensor | None = None, backend: str | None = None) -> torch.Tensor:
    """D = a @ dequant(b)^T (+ bias), fp32 accumulation.

    a: NVFP4 (..., K) -> W4A4 (alpha = 1/(gs_a*gs_b)); or a dense bf16/fp16 tensor (..., K) ->
    weight-only W4A16. b: NVFP4 weight [N, K]. out_dtype: bf16 or fp16; default bf16 for W4A4
    and a's dtype for W4A16.
    weight_alpha: b's decode-direction scale 1/gs_b (float32, 1 or N values), e.g.
    ``NVFP4Linear.weight_alpha`` or ModelOpt's ``weight_scale_2``. Default:
    ``b.decode_scale()``, computed on the first call and kept on b, so W4A16 launches nothing
    but the GEMM and W4A4 one division (alpha = weight_alpha / gs_a).
    """
    b = _weight(b)
    if weight_alpha is None:
        weight_alpha = b.decode_scale()  # cached on b between calls (eager)
    if isinstance(a, NVFP4):
        a2 = a if len(a.shape) == 2 else a.as_2d()
        if a2.scale_layout != "swizzled":
            a2 = a2.with_scale_layout("swizzled")
        b2 = b if b.scale_layout == "swizzled" else b.with_scale_layout("swizzled")
        out = _ops.gemm(a2.data, b2.data, a2.scale, b2.scale, weight_alpha / a.global_scale,
                        out_dtype or torch.bfloat16, bias, backend)
        lead = a.shape[:-1]
    else:
        if not isinstance(a, torch.Tensor) or a.dim() == 0:
            check.tensor("a", a)
            raise ValueError(f"a: expected at least 1 dim, got {check.describe(a)}")
        lead = a.shape[:-1]
        a2 = a if a.dim() == 2 else a.reshape(math.prod(lead), a.shape[-1])
        out = _ops.gemm_w4a16(a2, b.data, b.scale, weight_alpha, b.scale_layout, out_dtype, bias,
                              backend)
    return out if len(lead) == 1 else out.reshape(*lead, b.shape[0])
