"""Helpers shared by the cuda backend's GEMM tests (decode, mid-size and wgmma kernels): NVFP4
weights whose block scales span e4m3's range, their float64 values, the W4A16 alpha, why the
wgmma kernel cannot run here, and the layouts/bias/per-row-alpha check every kernel passes."""

from __future__ import annotations

import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _extension
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import cuda, registry
from tests.conftest import rel_error

BAR = 5e-3  # DESIGN's accuracy bar against the float64 reference


def weight(n, k, layout, gen):
    # Per-column magnitudes over 6 decades: block scales span e4m3's range, subnormals included,
    # while fp16 outputs stay finite.
    w = torch.randn(n, k, generator=gen)
    w = w * torch.logspace(-5, 1, k)[torch.randperm(k, generator=gen)]
    return nk.quantize(w.cuda(), scale_layout=layout)


def f64(q: nk.NVFP4):
    """The weight's exact values in float64 (on the CPU)."""
    flat = q.as_2d()
    return ref.dequantize_unscaled(flat.data.cpu(), flat.scale.cpu(), q.scale_layout,
                                   torch.float64) / q.global_scale.double().cpu()


def alpha(w):
    """The W4A16 alpha of a weight: 1/gs as a 1-element float32 tensor."""
    return (1.0 / w.global_scale).reshape(1).float()


def every_code_weight(k):
    """One weight row per (E2M1 code, e4m3 scale from 2^-9 to 448), global scale 1: returns the
    packed codes, the linear scales and the NVFP4 weight (swizzled scales) on the GPU."""
    codes = torch.arange(16, dtype=torch.uint8)
    scale_bytes = torch.tensor([0x01, 0x07, 0x08, 0x38, 0x40, 0x7E], dtype=torch.uint8)
    n = 16 * len(scale_bytes)
    data = (codes.repeat_interleave(len(scale_bytes)) * 0x11).reshape(n, 1).repeat(1, k // 2)
    scale_lin = scale_bytes.repeat(16).reshape(n, 1).repeat(1, k // 16).view(torch.float8_e4m3fn)
    w = nk.NVFP4(data.cuda(), ref.swizzle_scales(scale_lin).cuda(),
                 torch.tensor(1.0, device="cuda"), "swizzled", torch.Size((n, k)))
    return data, scale_lin, w


def poisoned_call(kernel, a, a_scale, w, alpha, bias, out_dtype, variant=0):
    """The extension's gemm_<kernel> itself (not a fallback), into an output the allocator hands
    out poisoned: a NaN-filled block of the output's size is freed right before the call."""
    torch.full((a.shape[0], w.data.shape[0]), float("nan"), dtype=out_dtype, device="cuda")
    return getattr(_extension.extension(), f"gemm_{kernel}")(
        a, a_scale, w.data, w.scale, w.scale_layout == "swizzled", alpha, bias, out_dtype, variant)


def splits(kernel, m, n, k, variant=0):
    """The split-K count gemm_<kernel> picks here (one resident CTA per SM)."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return getattr(_extension.extension(), f"gemm_{kernel}_splits")(m, n, k, sms, variant)


def why_no_wgmma(device: torch.device) -> str | None:
    """Why the sm_90a wgmma GEMM cannot run on `device` (None: it can)."""
    reason = cuda.why_unavailable(device)
    if reason is None and not getattr(_extension.extension(), "HAS_WGMMA_GEMM", False):
        reason = "extension built without sm_90a (no wgmma GEMM)"
    if reason is None and registry.capability(device) != (9, 0):
        reason = f"SM{registry.capability(device)}: the wgmma GEMM is sm_90a code"
    return reason


def check_layouts_bias_and_per_row_alpha(call, m, layout, bias_dtype):
    """call(a, w, alpha, bias, out_dtype) within the bar for both scale layouts, every bias
    dtype, a per-row alpha (fused shards with their own scales) and both output dtypes."""
    gen = torch.Generator().manual_seed(11)
    n, k = 200, 384
    w = weight(n, k, layout, gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    bias = None if bias_dtype is None else torch.randn(n, generator=gen).to(bias_dtype).cuda()
    per_row = torch.rand(n, generator=gen) + 0.5
    want = (a.double().cpu() @ f64(w).T) * per_row.double()
    if bias is not None:
        want = want + bias.double().cpu()
    for out_dtype in (torch.bfloat16, torch.float16):
        y = call(a, w, (per_row / w.global_scale.cpu()).float().cuda(), bias, out_dtype)
        assert rel_error(y, want) < BAR
