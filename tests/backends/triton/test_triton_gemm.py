"""Triton W4A16 / W4A4 GEMMs against a float64 dequantize-then-matmul reference (DESIGN bar)."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends.triton.plan import GemmConfig

from triton_testlib import poisoned, rel_error

triton_gemm = pytest.importorskip("nvfp4_kernels.backends.triton.gemm")

BAR = 5e-3
# Under the interpreter the plan uses small tiles; these force the other code paths.
CONFIGS = {
    "plan": None,
    "split_k": GemmConfig(16, 32, 32, 4, 1, split_k=3),
    "no_swap_grouped": GemmConfig(16, 32, 64, 4, 1, group_m=2, swap_ab=False),
}


def _weight(n, k, layout, gen, device):
    w = torch.randn(n, k, generator=gen).to(device)
    gs = ref.global_scale(w)
    data, scale, _ = ref.quantize(w, gs, layout)
    return data, scale, gs


@pytest.mark.parametrize("m", [1, 7, 16, 33, 150])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_w4a16(m, layout, device, gen):
    n, k = (48, 96) if m < 150 else (32, 64)
    b, b_scale, gs = _weight(n, k, layout, gen, device)
    # bf16 activations under the interpreter use fp32 dot operands (see gemm.py); fp16 is the
    # dtype whose tl.dot the interpreter computes natively.
    a_dtype = torch.float16 if m % 2 else torch.bfloat16
    a = torch.randn(m, k, generator=gen).to(a_dtype).to(device)
    per_col = m % 3 == 0
    alpha = ((1.0 / gs).reshape(1) * (torch.rand(n, generator=gen).to(device) + 0.5)
             if per_col else (1.0 / gs).reshape(1))
    bias = torch.randn(n, generator=gen).to(device) if m != 16 else None
    for out_dtype in (torch.bfloat16, torch.float16):
        out = poisoned((m, n), out_dtype, device)
        got = triton_gemm.gemm_w4a16(a, b, b_scale, alpha, layout, out_dtype, bias, out=out)
        exp = ref.gemm_w4a16(a.cpu(), b.cpu(), b_scale.cpu(), alpha.cpu(), layout,
                             torch.float64, None if bias is None else bias.cpu(),
                             compute_dtype=torch.float64)
        assert got is out and not got.isnan().any()
        assert rel_error(got, exp) <= BAR


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("m", [7, 33])
def test_w4a4_and_configs(name, m, device, gen):
    n, k = 40, 160
    b, b_scale, gs_b = _weight(n, k, "swizzled", gen, device)
    x = torch.randn(m, k, generator=gen).to(device)
    gs_a = ref.global_scale(x)
    a, a_scale, _ = ref.quantize(x, gs_a, "swizzled")
    alpha = (1.0 / (gs_a * gs_b)).reshape(1)
    if m == 33:
        alpha = alpha * (torch.rand(n, generator=gen).to(device) + 0.5)
    bias = torch.randn(n, generator=gen).to(device)
    out = poisoned((m, n), torch.bfloat16, device)
    got = triton_gemm.gemm(a, b, a_scale, b_scale, alpha, torch.bfloat16, bias, out=out,
                           config=CONFIGS[name])
    exp = ref.gemm_w4a4(a.cpu(), b.cpu(), a_scale.cpu(), b_scale.cpu(), alpha.cpu(),
                        torch.float64, bias.cpu(), compute_dtype=torch.float64)
    assert not got.isnan().any() and rel_error(got, exp) <= BAR
    # The same config on the W4A16 path.
    a16 = x.to(torch.float16)
    got = triton_gemm.gemm_w4a16(a16, b, b_scale, (1.0 / gs_b).reshape(1), "swizzled",
                                 torch.float16, None, config=CONFIGS[name])
    exp = ref.gemm_w4a16(a16.cpu(), b.cpu(), b_scale.cpu(), (1.0 / gs_b).reshape(1).cpu(),
                         "swizzled", torch.float64, None, compute_dtype=torch.float64)
    assert rel_error(got, exp) <= BAR


def test_extreme_scales_exact_decode(device, gen):
    """Subnormal e4m3 scales and the 448 clamp: lut*s must stay exact in the fp16 decode."""
    n, k = 32, 64
    w = torch.randn(n, k, generator=gen)
    w[:8] *= 1e-4   # tiny blocks -> subnormal scales once gs is set by the large rows
    w[8:16] *= 1e3
    w = w.to(device)
    gs = ref.global_scale(w)
    b, b_scale, _ = ref.quantize(w, gs, "linear")
    assert (b_scale.view(torch.uint8).cpu() & 0x78 == 0).any()  # some subnormal scales
    eye = torch.eye(k, dtype=torch.float16, device=device)[:32]
    got = triton_gemm.gemm_w4a16(eye, b, b_scale, torch.ones(1, device=device), "linear",
                                 torch.float16, None)
    # Row r of eye picks column r: D = lut*s exactly (fp16 holds every such product).
    exact = ref.dequantize_unscaled(b.cpu(), b_scale.cpu(), "linear", torch.float64)[:, :32].T
    fits = exact.abs() < 65504
    assert torch.equal(got.cpu().double()[fits], exact[fits])


def test_public_path(device, gen):
    w = torch.randn(64, 32, generator=gen).to(device)
    qw = nk.quantize(w, backend="triton")
    x = torch.randn(3, 32, generator=gen).to(torch.float16).to(device)
    got = nk.gemm(x, qw, backend="triton")
    b_alpha = (1.0 / qw.global_scale).reshape(1).cpu()
    exp = ref.gemm_w4a16(x.cpu(), qw.data.cpu(), qw.scale.cpu(), b_alpha, qw.scale_layout,
                         torch.float64, None, compute_dtype=torch.float64)
    assert got.dtype == torch.float16 and rel_error(got, exp) <= BAR
    qx = nk.quantize(x, backend="triton")
    got4 = nk.gemm(qx, qw, backend="triton", out_dtype=torch.float16)
    assert got4.shape == (3, 64) and got4.dtype == torch.float16 and not got4.isnan().any()
