"""The cutlass backend on SM100/SM120 hardware (skips elsewhere: the project has no Blackwell GPU,
so these have never run; the SASS and host-side tests are what CI proves)."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import cutlass
from tests.conftest import assert_same_codes

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = cutlass.why_unavailable(_HERE)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]


@pytest.mark.parametrize("m", [1, 16, 129, 512])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_gemm_w4a4_accuracy(m, out_dtype):
    torch.manual_seed(m)
    n, k = 256, 512
    x, w = torch.randn(m, k, device="cuda"), torch.randn(n, k, device="cuda")
    a, sa, ga = ref.quantize(x)
    b, sb, gb = ref.quantize(w)
    alpha = (1.0 / (ga * gb)).float()
    out = torch.ops.nvfp4.gemm(a, b, sa, sb, alpha, out_dtype, backend="cutlass")
    expected = ref.gemm_w4a4(a.cpu(), b.cpu(), sa.cpu(), sb.cpu(), alpha.cpu(),
                             torch.float64, compute_dtype=torch.float64)
    err = (out.double().cpu() - expected).norm() / expected.norm()
    assert out.dtype == out_dtype and err <= 5e-3


def test_quantize_hardware_e2m1_bit_exact():
    x = torch.randn(257, 512, device="cuda", dtype=torch.bfloat16) * 3
    got = torch.ops.nvfp4.quantize(x, nk.global_scale(x), "swizzled", backend="cutlass")
    data, scale, _ = ref.quantize(x.cpu())
    assert_same_codes(got[0], data)
    assert torch.equal(got[1].cpu().view(torch.uint8), scale.view(torch.uint8))
