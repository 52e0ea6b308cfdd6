"""The mid-size GEMM of the cuda backend (csrc/include/nvfp4/mid_gemm.cuh, 16 < M <= 64) on the
GPU: within the accuracy bar against a float64 reference on fresh random data and odd shapes
(partial row tiles and token tiles, a last K chunk shorter than 128), every E2M1 code and
extreme e4m3 scales decoded exactly, the split-K path deterministic, outputs written over
poisoned memory, CUDA-graph capture. Skips without a GPU, without an extension built for an
SM80-SM90 target, or on a GPU whose shared memory cannot hold the kernel's ring."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _extension
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import cuda, registry
from nvfp4_kernels.benchmarking import capture
from gemm_testlib import BAR, check_layouts_bias_and_per_row_alpha, every_code_weight
from gemm_testlib import poisoned_call, splits
from gemm_testlib import alpha as _alpha
from gemm_testlib import f64 as _f64
from gemm_testlib import weight as _weight
from tests.conftest import rel_error

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = cuda.why_unavailable(_HERE)
if _REASON is None and not getattr(_extension.extension(), "HAS_MID_GEMM", False):
    _REASON = "extension built without an SM80-SM90 target (no mid-size GEMM)"
if _REASON is None and registry.capability(_HERE) not in cuda._MID_GEMM_CAPABILITIES:
    _REASON = f"SM{registry.capability(_HERE)}: not enough shared memory for the mid-size GEMM"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

_VARIANTS = range(getattr(_extension.extension(), "MID_GEMM_VARIANTS", 1) if _REASON is None
                  else 1)


def _ext():
    return _extension.extension()


def _call(a, a_scale, w, alpha, bias, out_dtype, variant=0):
    return poisoned_call("mid", a, a_scale, w, alpha, bias, out_dtype, variant)


def _splits(m, n, k, variant=0):
    return splits("mid", m, n, k, variant)


@pytest.mark.parametrize("m", [17, 24, 33, 48, 64])
@pytest.mark.parametrize("n,k", [(200, 32), (200, 160), (300, 1056)])
@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
def test_w4a16_within_bar(m, n, k, a_dtype):
    gen = torch.Generator().manual_seed(m * 1009 + n * 31 + k)
    w = _weight(n, k, "swizzled", gen)
    a = (torch.randn(m, k, generator=gen) * 3).to(a_dtype).cuda()
    want = a.double().cpu() @ _f64(w).T
    for out_dtype in (torch.bfloat16, torch.float16):
        y = _call(a, None, w, _alpha(w), None, out_dtype)
        assert y.dtype == out_dtype and y.shape == (m, n)
        assert torch.isfinite(y).all()
        assert rel_error(y, want) < BAR


@pytest.mark.parametrize("m", [33, 64])
def test_w4a16_layer_sized_split_k(m):
    """N = 5376 + 48 (a partial 256-row tile), K = 5376: the launcher splits K here."""
    n, k = 5376 + 48, 5376
    assert _splits(m, n, k) > 1
    gen = torch.Generator().manual_seed(m)
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    y = _call(a, None, w, _alpha(w), None, torch.bfloat16)
    assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.parametrize("bias_dtype", [None, torch.float32, torch.bfloat16, torch.float16])
def test_w4a16_layouts_bias_and_per_row_alpha(layout, bias_dtype):
    check_layouts_bias_and_per_row_alpha(lambda a, w, alpha, bias, out_dtype: _call(a, None, w, alpha, bias, out_dtype), 37, layout, bias_dtype)


@pytest.mark.parametrize("m", [17, 40, 64])
@pytest.mark.parametrize("n,k", [(48, 64), (260, 512), (300, 1056)])
def test_w4a4_within_bar(m, n, k):
    gen = torch.Generator().manual_seed(m * 17 + n + k)
    w = _weight(n, k, "swizzled", gen)
    qa = nk.quantize((torch.randn(m, k, generator=gen) * 4).cuda())
    alpha = (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float()
    for out_dtype in (torch.bfloat16, torch.float16):
        y = _call(qa.data, qa.scale, w, alpha, None, out_dtype)
        assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR


@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
def test_every_code_and_extreme_scales_exact(a_dtype):
    """One weight row per (code, scale): with one-hot activations the output is the decoded
    weight itself, lut[code] * s, which must come out exactly (it is representable)."""
    k = 256
    data, scale_lin, w = every_code_weight(k)
    m = 40
    a = torch.zeros(m, k, dtype=a_dtype)
    for i in range(m):
        a[i, 5 * i + 1] = 1.0  # token i picks column 5i+1 (odd: the high nibble; both chunks)
    want = ref.dequantize_unscaled(data, scale_lin, "linear", torch.float64)[:, 1::5][:, :m].T
    y = _call(a.cuda(), None, w, torch.ones(1, device="cuda"), None, torch.float16)
    assert torch.equal(y.double().cpu(), want.to(torch.float16).double())


@pytest.mark.parametrize("variant", _VARIANTS)
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_every_launch_shape_within_bar(variant, layout):
    """Each launch shape of the sweep (csrc/gemm_mid.cu), not only the default: odd N and K,
    every token-tile count (3, 4, 6, 8), with and without split-K, W4A16 and W4A4."""
    gen = torch.Generator().manual_seed(variant * 7 + len(layout))
    for m, n, k in ((17, 50, 96), (30, 130, 416), (47, 300, 1056), (64, 600, 2080)):
        w = _weight(n, k, layout, gen)
        a = (torch.randn(m, k, generator=gen) * 3).to(torch.bfloat16).cuda()
        y = _call(a, None, w, _alpha(w), None, torch.float16, variant)
        assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR, (m, n, k)
        if layout == "swizzled":
            qa = nk.quantize(a.float())
            alpha = (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float()
            y = _call(qa.data, qa.scale, w, alpha, None, torch.bfloat16, variant)
            assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR, (m, n, k)


@pytest.mark.parametrize("variant", _VARIANTS)
def test_deterministic_with_split_k(variant):
    """The split-K partials are added in split order by whichever CTA arrives last: the same
    bits every call."""
    gen = torch.Generator().manual_seed(5)
    m, n, k = 48, 700, 4096
    if variant != 1:  # variant 1 never splits
        assert _splits(m, n, k, variant) > 1
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    first = _call(a, None, w, _alpha(w), None, torch.bfloat16, variant)
    assert rel_error(first, a.double().cpu() @ _f64(w).T) < BAR
    for _ in range(3):
        assert torch.equal(_call(a, None, w, _alpha(w), None, torch.bfloat16, variant), first)


def test_the_backend_uses_it_for_17_to_64_tokens():
    gen = torch.Generator().manual_seed(6)
    w = _weight(300, 1024, "swizzled", gen)
    for m in (16, 17, 64, 65):
        a = torch.randn(m, 1024, generator=gen).to(torch.bfloat16).cuda()
        assert cuda._mid_gemm_takes(a, w.data, w.scale) == (16 < m <= 64)
        y = nk.gemm(a, w, backend="cuda")
        assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR
        if 16 < m <= 64 and not cuda._wgmma_gemm_takes(a, w.data, w.scale):
            # (sm_90a builds send these sizes to the wgmma GEMM: test_wgmma_dispatch.py)
            assert torch.equal(y, _call(a, None, w, _alpha(w), None, torch.bfloat16))
    qa = nk.quantize(torch.randn(40, 1024, generator=gen).cuda())
    assert cuda._mid_gemm_takes(qa.data, w.data, w.scale, qa.scale)
    y = nk.gemm(qa, w, backend="cuda")
    assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR


def test_cuda_graph_capture_and_replay():
    """Split-K included: its workspace and arrival counters come from the graph's pool and are
    zeroed by a captured memset, so replays start clean."""
    gen = torch.Generator().manual_seed(8)
    m, n, k = 40, 512, 4096
    assert _splits(m, n, k) > 1
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    alpha = _alpha(w)
    eager = _call(a, None, w, alpha, None, torch.bfloat16)
    graph, out = capture(lambda: _ext().gemm_mid(a, None, w.data, w.scale, True, alpha, None,
                                                 torch.bfloat16), warmup=1)
    for _ in range(2):
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
