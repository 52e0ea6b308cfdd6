"""The Hopper warpgroup-MMA GEMM (csrc/include/nvfp4/wgmma_gemm.cuh, C.gemm_wgmma, W4A16 for
M <= 256; not in the automatic backend choice yet) on the GPU: within the accuracy bar against a
float64 reference on fresh random data and odd shapes (partial 128-row tiles and token tiles, a
last K chunk shorter than 128), every E2M1 code and extreme e4m3 scales decoded exactly, every
launch shape, the split-K path deterministic, outputs written over poisoned memory, CUDA-graph
capture. Skips without a GPU, without an extension built for sm_90a, or off SM90."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _extension
from nvfp4_kernels import reference as ref
from gemm_testlib import BAR, check_layouts_bias_and_per_row_alpha, every_code_weight
from gemm_testlib import poisoned_call, splits, why_no_wgmma
from gemm_testlib import alpha as _alpha
from gemm_testlib import f64 as _f64
from gemm_testlib import weight as _weight
from tests.conftest import rel_error

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = why_no_wgmma(_HERE)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

_VARIANTS = range(getattr(_extension.extension(), "WGMMA_GEMM_VARIANTS", 1) if _REASON is None
                  else 1)


def _ext():
    return _extension.extension()


def _call(a, w, alpha, bias, out_dtype, variant=0):
    return poisoned_call("wgmma", a, None, w, alpha, bias, out_dtype, variant)


def _splits(m, n, k, variant=0):
    return splits("wgmma", m, n, k, variant)


@pytest.mark.parametrize("m", [1, 17, 32, 33, 64, 65, 100, 128, 129, 256])
@pytest.mark.parametrize("n,k", [(200, 32), (200, 160), (300, 1056)])
@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
def test_w4a16_within_bar(m, n, k, a_dtype):
    gen = torch.Generator().manual_seed(m * 1009 + n * 31 + k)
    w = _weight(n, k, "swizzled", gen)
    a = (torch.randn(m, k, generator=gen) * 3).to(a_dtype).cuda()
    want = a.double().cpu() @ _f64(w).T
    for out_dtype in (torch.bfloat16, torch.float16):
        y = _call(a, w, _alpha(w), None, out_dtype)
        assert y.dtype == out_dtype and y.shape == (m, n)
        assert torch.isfinite(y).all()
        assert rel_error(y, want) < BAR


@pytest.mark.parametrize("m", [64, 128, 256])
def test_w4a16_layer_sized_split_k(m):
    """N = 5376 + 48 (a partial 128-row tile), K = 5376: the launcher splits K here."""
    n, k = 5376 + 48, 5376
    assert _splits(m, n, k) > 1
    gen = torch.Generator().manual_seed(m)
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    y = _call(a, w, _alpha(w), None, torch.bfloat16)
    assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.parametrize("bias_dtype", [None, torch.float32, torch.bfloat16, torch.float16])
def test_w4a16_layouts_bias_and_per_row_alpha(layout, bias_dtype):
    check_layouts_bias_and_per_row_alpha(_call, 77, layout, bias_dtype)


@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [40, 200])
def test_every_code_and_extreme_scales_exact(a_dtype, m):
    """One weight row per (code, scale): with one-hot activations the output is the decoded
    weight itself, lut[code] * s, which must come out exactly (it is representable); at
    M = 200 through the 256-token tile."""
    k = 256
    data, scale_lin, w = every_code_weight(k)
    a = torch.zeros(m, k, dtype=a_dtype)
    cols = [(5 * i + 1) % k for i in range(m)]
    for i, c in enumerate(cols):
        a[i, c] = 1.0
    deq = ref.dequantize_unscaled(data, scale_lin, "linear", torch.float64)
    want = deq[:, cols].T
    y = _call(a.cuda(), w, torch.ones(1, device="cuda"), None, torch.float16)
    assert torch.equal(y.double().cpu(), want.to(torch.float16).double())


@pytest.mark.parametrize("variant", _VARIANTS)
@pytest.mark.parametrize("m", [64, 200])
def test_each_k_and_token_lands_where_it_belongs(m, variant):
    """A diagnosis of the fragment mapping: weight row r is 1.0 at column r only (a 128 x 128
    identity, one K chunk) and a[i, k] = k + 1 + 128 (i % 8) (exact in fp16), so y[i, r] must
    be r + 1 + 128 (i % 8); a wrong slot order shows as the k (and token) that landed there
    instead, which the message lists. Every launch shape: they stage the activations in
    different ways (thread counts, pre-permuted copies)."""
    n = k = 128
    codes = torch.zeros(n, k, dtype=torch.uint8)
    codes[torch.arange(n), torch.arange(n)] = 2  # E2M1 code 2 = 1.0
    data = codes[:, 0::2] | (codes[:, 1::2] << 4)
    scale = torch.full((n, k // 16), 0x38, dtype=torch.uint8).view(torch.float8_e4m3fn)  # 1.0
    w = nk.NVFP4(data.cuda(), ref.swizzle_scales(scale).cuda(), torch.tensor(1.0, device="cuda"),
                 "swizzled", torch.Size((n, k)))
    tok = torch.arange(m).reshape(m, 1) % 8
    a = (torch.arange(k).reshape(1, k) + 1 + 128 * tok).to(torch.float16)
    want = a.double()  # y = a @ I^T
    y = _call(a.cuda(), w, torch.ones(1, device="cuda"), None, torch.float16,
              variant).double().cpu()
    bad = (y != want).nonzero()[:8].tolist()
    found = [(i, r, int(y[i, r]) - 1) for i, r in bad]
    assert not bad, "(token, row, found k + 128 * token % 8): " + str(
        [(i, r, v % 128 if v >= 0 else v, v // 128 if v >= 0 else None) for i, r, v in found])


@pytest.mark.parametrize("variant", _VARIANTS)
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_every_launch_shape_within_bar(variant, layout):
    """Each launch shape of the sweep (csrc/gemm_wgmma.cu), not only the default: odd N and K,
    every token tile (32, 64, 128, 256), with and without split-K."""
    gen = torch.Generator().manual_seed(variant * 7 + len(layout))
    for m, n, k in ((17, 50, 96), (60, 130, 416), (127, 300, 1056), (250, 600, 2080)):
        w = _weight(n, k, layout, gen)
        a = (torch.randn(m, k, generator=gen) * 3).to(torch.bfloat16).cuda()
        y = _call(a, w, _alpha(w), None, torch.float16, variant)
        assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR, (m, n, k)


@pytest.mark.parametrize("variant", _VARIANTS)
def test_deterministic_with_split_k(variant):
    """The split-K partials are added in split order by whichever CTA arrives last: the same
    bits every call."""
    gen = torch.Generator().manual_seed(5)
    m, n, k = 96, 700, 4096
    if variant != 1:  # variant 1 never splits
        assert _splits(m, n, k, variant) > 1
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    first = _call(a, w, _alpha(w), None, torch.bfloat16, variant)
    assert rel_error(first, a.double().cpu() @ _f64(w).T) < BAR
    for _ in range(3):
        assert torch.equal(_call(a, w, _alpha(w), None, torch.bfloat16, variant), first)


def test_split_by_waves_variant_splits_gate_up():
    """Variant 11 (variant 2's kernels, split count by modelled waves): on 132 SMs gate_up's
    168 row tiles of 256 are split in 2 at M = 128, which variant 2 leaves whole (and splits in
    3 at M = 64); at M = 256 (variant 0's 336 tiles of 128) it does not split."""
    n, k = 43008, 5376
    assert _ext().gemm_wgmma_splits(128, n, k, 132, 2) == 1
    assert _ext().gemm_wgmma_splits(64, n, k, 132, 2) == 3
    for m in (64, 128):
        assert _ext().gemm_wgmma_splits(m, n, k, 132, 11) == 2
    assert _ext().gemm_wgmma_splits(256, n, k, 132, 11) == 1


def test_packed_activations_need_a_prepermuting_shape():
    gen = torch.Generator().manual_seed(3)
    w = _weight(128, 256, "swizzled", gen)
    qa = nk.quantize(torch.randn(40, 256, generator=gen).cuda())
    with pytest.raises(RuntimeError, match="need a pre-permuting launch shape"):
        _ext().gemm_wgmma(qa.data, qa.scale, w.data, w.scale, True, _alpha(w), None,
                          torch.bfloat16, 0)


@pytest.mark.parametrize("variant", [8, 9, 10])
@pytest.mark.parametrize("m", [1, 17, 40, 100, 129, 200])
@pytest.mark.parametrize("n,k", [(200, 160), (300, 1056)])
def test_w4a4_decoded_in_the_permute_pass(variant, m, n, k):
    """Packed activations decoded by the pre-permuting pass: within the bar against float64,
    and bitwise what the same shape gives for the activations dequantized to bf16 first (the
    decode is exact, so the GEMM sees the same operands)."""
    gen = torch.Generator().manual_seed(variant * 131 + m * 7 + k)
    w = _weight(n, k, "swizzled", gen)
    qa = nk.quantize((torch.randn(m, k, generator=gen) * 3).cuda())
    alpha = (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float()
    one = torch.ones((), dtype=torch.float32, device="cuda")
    a16 = _ext().dequantize(qa.data, qa.scale, one, True, torch.bfloat16)
    want = _f64(qa) @ _f64(w).T
    for out_dtype in (torch.bfloat16, torch.float16):
        y = poisoned_call("wgmma", qa.data, qa.scale, w, alpha, None, out_dtype, variant)
        assert y.shape == (m, n) and torch.isfinite(y).all()
        assert rel_error(y, want) < BAR
        assert torch.equal(y, poisoned_call("wgmma", a16, None, w, alpha, None, out_dtype,
                                            variant))


@pytest.mark.parametrize("variant", _VARIANTS)
def test_cuda_graph_capture_and_replay(variant):
    """Split-K included: its workspace and arrival counters come from the graph's pool and are
    zeroed by a captured memset, so replays start clean (as the pre-permuted activations of
    variants 8-10)."""
    gen = torch.Generator().manual_seed(8)
    m, n, k = 120, 512, 4096
    if variant != 1:  # variant 1 never splits
        assert _splits(m, n, k, variant) > 1
    w = _weight(n, k, "swizzled", gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    alpha = _alpha(w)
    eager = _call(a, w, alpha, None, torch.bfloat16, variant)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _call(a, w, alpha, None, torch.bfloat16, variant)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = _ext().gemm_wgmma(a, None, w.data, w.scale, True, alpha, None, torch.bfloat16,
                                variant)
    for _ in range(2):
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
