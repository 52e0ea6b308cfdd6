"""The cuda backend's automatic use of the Hopper wgmma GEMM (backends/cuda.py: DECODE_MAX_M <
M <= WGMMA_MAX_M on SM90 builds with sm_90a, launch shape by M and N): which token counts reach
it, W4A16 and W4A4 (activations decoded to bf16 by the pre-permuting pass, or by a dequantize
launch first for the wide shape) within the accuracy bar on odd shapes and both output dtypes,
bitwise equal to the kernel called directly, and the W4A4 path captured in a CUDA graph. The
kernel itself is tested in test_wgmma_gemm.py."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _extension
from nvfp4_kernels.backends import cuda
from nvfp4_kernels.benchmarking import capture
from gemm_testlib import BAR, why_no_wgmma
from gemm_testlib import alpha as _alpha
from gemm_testlib import f64 as _f64
from gemm_testlib import weight as _weight
from tests.conftest import rel_error

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = why_no_wgmma(_HERE)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]


def _direct(a, w, out_dtype):
    variant = cuda._wgmma_variant(a.shape[0], w.data.shape[0])
    return _extension.extension().gemm_wgmma(a, None, w.data, w.scale, True, _alpha(w), None,
                                             out_dtype, variant)


def _takes(m):
    return cuda.DECODE_MAX_M < m <= cuda.WGMMA_MAX_M


@pytest.mark.parametrize("m,n,k", [(16, 300, 1056), (17, 300, 1056), (64, 300, 1056),
                                   (65, 300, 1056), (100, 300, 1056), (128, 300, 1056),
                                   (129, 300, 1056), (40, 32768, 64), (64, 32800, 96),
                                   (65, 32768, 64)])
def test_the_backend_uses_it_for_its_token_range(m, n, k):
    """Both launch shapes: wide layers (N >= 32768) at M <= 64 take the three-warpgroup one."""
    gen = torch.Generator().manual_seed(m + n)
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    assert cuda._wgmma_gemm_takes(a, w.data, w.scale) == _takes(m)
    y = nk.gemm(a, w, backend="cuda")
    assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR
    if _takes(m):
        assert torch.equal(y, _direct(a, w, torch.bfloat16))


@pytest.mark.parametrize("m,n,k", [(17, 200, 160), (65, 200, 160), (100, 300, 1056),
                                   (128, 520, 4096), (33, 32768, 64)])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_w4a4_decodes_the_activations_exactly(m, n, k, out_dtype):
    """The bf16 copy of the quantized activations is exact, so the result is the W4A4 product
    within the same bar, and equal to the W4A16 kernel on the dequantized activations."""
    gen = torch.Generator().manual_seed(m * 7 + n + k)
    w = _weight(n, k, "swizzled", gen)
    qa = nk.quantize((torch.randn(m, k, generator=gen) * 4).cuda())
    assert cuda._wgmma_gemm_takes(qa.data, w.data, w.scale, qa.scale)
    torch.full((m, n), float("nan"), dtype=out_dtype, device="cuda")  # poison the allocator
    y = nk.gemm(qa, w, backend="cuda", out_dtype=out_dtype)
    assert y.dtype == out_dtype and y.shape == (m, n)
    assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR
    assert not torch.isnan(y).any()


def test_w4a4_path_in_a_cuda_graph():
    gen = torch.Generator().manual_seed(11)
    w = _weight(512, 2048, "swizzled", gen)
    qa = nk.quantize(torch.randn(96, 2048, generator=gen).cuda())
    eager = nk.gemm(qa, w, backend="cuda")
    graph, out = capture(lambda: nk.gemm(qa, w, backend="cuda"), warmup=1)
    for _ in range(2):
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
