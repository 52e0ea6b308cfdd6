"""GEMM semantics (W4A4 and W4A16) through the public API, against float64 references."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from tests.conftest import rel_error

BAR = 5e-3  # DESIGN §2 accuracy bar


def float64_reference(a, b: nk.NVFP4, bias=None):
    """Dequantize both operands in float64 (lut*s/gs), then matmul: the definition of the GEMM."""
    def deq(q):
        flat = q.as_2d()
        return ref.dequantize_unscaled(flat.data, flat.scale, q.scale_layout, torch.float64) / \
            q.global_scale.double()
    a64 = deq(a) if isinstance(a, nk.NVFP4) else a.double().reshape(-1, a.shape[-1])
    out = a64 @ deq(b).T
    if bias is not None:
        out = out + bias.double()
    lead = a.shape[:-1]
    return out.reshape(*lead, b.shape[0])


def make(m, n, k, dtype, gen, device="cpu"):
    a = (torch.randn(m, k, generator=gen) * 2).to(dtype).to(device)
    w = nk.quantize(torch.randn(n, k, generator=gen).to(device))
    return a, w


@pytest.mark.parametrize("m", [1, 7, 33, 150])
@pytest.mark.parametrize("n,k", [(16, 16), (32, 48), (80, 64)])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_w4a16_and_w4a4_within_bar(m, n, k, out_dtype, device):
    gen = torch.Generator().manual_seed(m * 7919 + n * 31 + k)
    a, w = make(m, n, k, torch.bfloat16, gen, device)
    bias = torch.randn(n, generator=gen).to(device)
    y = nk.gemm(a, w, out_dtype=out_dtype, bias=bias)
    assert y.dtype == out_dtype and y.shape == (m, n)
    assert rel_error(y, float64_reference(a, w, bias)) < BAR
    qa = nk.quantize(a)
    y4 = nk.gemm(qa, w, out_dtype=out_dtype)
    assert y4.dtype == out_dtype
    assert rel_error(y4, float64_reference(qa, w)) < BAR


def test_w4a16_linear_and_swizzled_weights_agree():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(9, 64, generator=gen, dtype=torch.float32).half()
    x = torch.randn(40, 64, generator=gen)
    y_lin = nk.gemm(a, nk.quantize(x, scale_layout="linear"))
    y_swz = nk.gemm(a, nk.quantize(x, scale_layout="swizzled"))
    assert y_lin.dtype == torch.float16
    assert torch.equal(y_lin, y_swz)


def test_leading_dims_and_default_dtypes():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(2, 3, 32, generator=gen).bfloat16()
    w = nk.quantize(torch.randn(16, 32, generator=gen))
    y = nk.gemm(a, w)
    assert y.shape == (2, 3, 16) and y.dtype == torch.bfloat16
    y4 = nk.gemm(nk.quantize(a), w)
    assert y4.shape == (2, 3, 16) and y4.dtype == torch.bfloat16


def test_per_column_alpha_scales_each_output_column():
    # Fused projections keep one alpha per output column; the op must apply it column-wise.
    gen = torch.Generator().manual_seed(11)
    qa = nk.quantize(torch.randn(5, 32, generator=gen))
    w = nk.quantize(torch.randn(24, 32, generator=gen))
    col_alpha = (torch.rand(24, generator=gen) + 0.5) / (qa.global_scale * w.global_scale)
    y = torch.ops.nvfp4.gemm(qa.data, w.data, qa.scale, w.scale, col_alpha, torch.float16)
    a64 = ref.dequantize_unscaled(qa.data, qa.scale, "swizzled", torch.float64)
    b64 = ref.dequantize_unscaled(w.data, w.scale, "swizzled", torch.float64)
    assert rel_error(y, (a64 @ b64.T) * col_alpha.double()) < 1e-3


def test_empty_gemms():
    w = nk.quantize(torch.randn(16, 32))
    assert nk.gemm(torch.zeros(0, 32, dtype=torch.bfloat16), w).shape == (0, 16)
    assert nk.gemm(nk.quantize(torch.zeros(0, 32)), w).shape == (0, 16)
    w0 = nk.quantize(torch.randn(16, 0))
    bias = torch.randn(16)
    y = nk.gemm(torch.zeros(3, 0, dtype=torch.bfloat16), w0, bias=bias)
    assert torch.equal(y, bias.bfloat16().expand(3, 16))


def test_reference_float32_close_to_float64():
    gen = torch.Generator().manual_seed(13)
    qa = nk.quantize(torch.randn(33, 256, generator=gen))
    w = nk.quantize(torch.randn(48, 256, generator=gen))
    alpha = (1 / (qa.global_scale * w.global_scale)).reshape(1)
    y32 = ref.gemm_w4a4(qa.data, w.data, qa.scale, w.scale, alpha, torch.float32)
    y64 = ref.gemm_w4a4(qa.data, w.data, qa.scale, w.scale, alpha, torch.float64,
                        compute_dtype=torch.float64)
    assert rel_error(y32, y64) < 1e-6
    # alpha is float32, so 1/(gs_a*gs_b) carries one float32 rounding (~6e-8) vs float64.
    assert rel_error(y64, float64_reference(qa, w)) < 2e-7


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 40), kb=st.integers(1, 6),
       seed=st.integers(0, 2**31 - 1), act=st.sampled_from(["bf16", "fp16", "nvfp4"]))
def test_property_random_shapes(m, n, kb, seed, act):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float16 if act == "fp16" else torch.bfloat16
    a, w = make(m, n, 16 * kb, dtype, gen)
    if act == "nvfp4":
        a = nk.quantize(a)
    y = nk.gemm(a, w, out_dtype=torch.float16)
    assert torch.isfinite(y).all()
    assert rel_error(y, float64_reference(a, w)) < BAR
