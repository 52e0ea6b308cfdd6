"""Prefill GEMM route for GPUs without FP4 tensor cores: dequantize, then cuBLAS.

At prefill sizes (hundreds of tokens and more) the GEMM is compute-bound and the fused Triton
kernel's in-loop decode keeps its tensor cores waiting (issue 9: 0.28x cuBLAS bf16 at M = 8192 on
the H100). This route dequantizes the weight at memory speed (``dequantize.dequantize_scaled``)
into a bf16/fp16 workspace, one chunk of weight rows at a time, and hands each chunk to cuBLAS
(``torch.mm`` / ``torch.addmm``), which writes straight into the chunk's columns of the output
(a strided view with leading dimension N: no copy).

Workspace (the memory this route costs beyond its output):

* weight: ``chunk_rows(K) x K`` elements of 2 bytes, at most ``WORKSPACE_BYTES`` (64 MiB): 6144
  rows for K = 5376, 1536 rows for K = 21504. One buffer serves every chunk: the stream orders a
  chunk's dequantize after the previous chunk's GEMM has read the buffer.
* W4A4 also dequantizes the activations once, ``M x K`` bf16: the size of the bf16 activations a
  W4A16 layer takes as input (88 MiB at M = 8192, K = 5376).

The buffers come from PyTorch's caching allocator on every call, so the route is CUDA-graph
capturable (the graph's private pool keeps them) and eager calls reuse cached blocks.

Numerics (DESIGN's bar, ``||D - D_ref|| / ||D_ref|| <= 5e-3`` against float64): the weight chunk
holds ``lut * s * alpha[n]`` rounded once to the compute dtype (alpha = 1/gs_b, or 1/(gs_a*gs_b)
for W4A4, folded in so that cuBLAS needs no epilogue), the W4A4 activations hold ``lut * s``
exactly; cuBLAS accumulates in float32. W4A16 computes in the activations' dtype. W4A4 computes
in bf16 whatever the output dtype: its weight chunk is W/gs_a, which can fall below fp16's
normal range; an fp16 output is then one extra rounding of the bf16 result.
"""

from __future__ import annotations

import torch

from nvfp4_kernels.backends import registry
from nvfp4_kernels.backends.triton import plan
from nvfp4_kernels.backends.triton.dequantize import dequantize_scaled
from nvfp4_kernels.reference import BLOCK, swizzled_shape

WORKSPACE_BYTES = 64 << 20  # bound of the dequantized weight chunk (2 bytes per element)
_ROW_ALIGN = 128            # chunks start on 128-row tiles of the swizzled scale layout


def takes(a: torch.Tensor) -> bool:
    """Whether the automatic choice sends this GEMM here: a CUDA GPU whose arch has a measured
    crossover in plan.PREFILL_MIN_M, and at least that many tokens."""
    if not a.is_cuda:
        return False
    bound = plan.PREFILL_MIN_M.get(registry.capability(a.device)[0])
    return bound is not None and a.shape[0] >= bound


def chunk_rows(k: int, workspace_bytes: int = WORKSPACE_BYTES) -> int:
    """Weight rows per chunk: as many 128-row tiles as fit the workspace, at least one."""
    return max(_ROW_ALIGN, workspace_bytes // (2 * k) // _ROW_ALIGN * _ROW_ALIGN)


def workspace_bytes(m: int, n: int, k: int, w4a4: bool, budget: int = WORKSPACE_BYTES) -> int:
    """Bytes this route allocates besides its output (for docs and benchmarks)."""
    weight = min(chunk_rows(k, budget), -(-n // _ROW_ALIGN) * _ROW_ALIGN) * k * 2
    return weight + (m * k * 2 if w4a4 else 0)


def _scale_rows(scale: torch.Tensor, scale_layout: str, n0: int, rows: int, k: int):
    """The scales of weight rows [n0, n0 + rows), n0 a multiple of 128, in the same layout."""
    if scale_layout == "linear":
        return scale[n0:n0 + rows]
    tile = swizzled_shape(1, k // BLOCK)[1] * _ROW_ALIGN  # bytes per 128-row tile
    first, tiles = n0 // _ROW_ALIGN, -(-rows // _ROW_ALIGN)
    return scale.reshape(-1)[first * tile:(first + tiles) * tile]


def _chunked(a, b, b_scale, alpha, scale_layout, compute_dtype, out_dtype, bias, budget):
    m, n, k = a.shape[0], b.shape[0], b.shape[1] * 2
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        return out.zero_() if bias is None else out.copy_(bias.to(out_dtype).expand(m, n))
    rows = min(chunk_rows(k, budget), -(-n // _ROW_ALIGN) * _ROW_ALIGN)
    ws = torch.empty((rows, k), dtype=compute_dtype, device=a.device)
    alpha = alpha.reshape(-1).float()
    per_row = alpha.numel() > 1
    bias_c = bias.to(compute_dtype) if bias is not None else None
    direct = out_dtype == compute_dtype
    for n0 in range(0, n, rows):
        nc = min(rows, n - n0)
        w = dequantize_scaled(b[n0:n0 + nc], _scale_rows(b_scale, scale_layout, n0, nc, k),
                              alpha[n0:n0 + nc] if per_row else alpha, scale_layout,
                              compute_dtype, out=ws[:nc])
        dst = out[:, n0:n0 + nc]
        if bias_c is None:
            res = torch.mm(a, w.t(), out=dst) if direct else torch.mm(a, w.t())
        else:
            res = torch.addmm(bias_c[n0:n0 + nc], a, w.t(), out=dst) if direct else \
                torch.addmm(bias_c[n0:n0 + nc], a, w.t())
        if not direct:
            dst.copy_(res)
    return out


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias, *,
               workspace=WORKSPACE_BYTES):
    """Dense a [M, K] (bf16/fp16) x NVFP4 weight b [N, K/2] -> [M, N], as gemm.gemm_w4a16."""
    return _chunked(a, b, b_scale, b_alpha, scale_layout, a.dtype, out_dtype, bias, workspace)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias, *, workspace=WORKSPACE_BYTES):
    """NVFP4 a [M, K/2] x NVFP4 b [N, K/2] (swizzled scales) -> [M, N], as gemm.gemm."""
    one = torch.ones(1, dtype=torch.float32, device=a.device)
    a_hat = dequantize_scaled(a, a_scale, one, "swizzled", torch.bfloat16)  # lut * s, exact
    return _chunked(a_hat, b, b_scale, alpha, "swizzled", torch.bfloat16, out_dtype, bias,
                    workspace)


__all__ = ["WORKSPACE_BYTES", "chunk_rows", "gemm", "gemm_w4a16", "takes", "workspace_bytes"]
