"""The decode GEMV (backends/triton/gemv.py) against a float64 dequantize-then-matmul reference.

Under the interpreter (CI) the kernel's plain-tl decode runs; on a GPU the inline-PTX decode and
loads. Shapes are small and odd: rows not a multiple of the row block, K = 32, 96, 1056 (K steps
of 2 and 4 words), tokens not a multiple of the tokens per program.
"""

from __future__ import annotations

import pytest
import torch

from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends.triton.plan import GEMV_MAX_M, GemmConfig, GemvConfig

from triton_testlib import poisoned, rel_error

gemv = pytest.importorskip("nvfp4_kernels.backends.triton.gemv")
triton_gemm = pytest.importorskip("nvfp4_kernels.backends.triton.gemm")

BAR = 5e-3
# Forced shapes of the launch: tokens per program (1, 2, 4) and a K split (the reduction
# kernel), beside the plan's own choice (None).
CONFIGS = {
    "plan": None,
    "bm1_split4": GemvConfig(block_m=1, block_k=32, words_per_thread=1, num_warps=4, split_k=4),
    "bm2": GemvConfig(block_m=2, block_k=64, words_per_thread=2, num_warps=4),
    "bm4_split2": GemvConfig(block_m=4, block_k=16, words_per_thread=1, num_warps=2, split_k=2),
}


def _weight(n, k, layout, gen, device):
    w = torch.randn(n, k, generator=gen)
    w[: n // 3] *= 20.0  # blocks of different magnitude: scales spread over the e4m3 range
    gs = ref.global_scale(w)
    data, scale, _ = ref.quantize(w, gs, layout)
    return data.to(device), scale.to(device), gs.to(device)


def _expected_w4a16(a, b, b_scale, alpha, layout, bias):
    return ref.gemm_w4a16(a.cpu(), b.cpu(), b_scale.cpu(), alpha.cpu(), layout, torch.float64,
                          None if bias is None else bias.cpu(), compute_dtype=torch.float64)


@pytest.mark.parametrize("m,n,k", [(1, 37, 96), (3, 20, 32), (5, 33, 80), (16, 9, 64)])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_w4a16_odd_shapes(m, n, k, layout, device, gen):
    b, b_scale, gs = _weight(n, k, layout, gen, device)
    bias = torch.randn(n, generator=gen).to(device) if m % 2 else None
    alpha = (1.0 / gs).reshape(1)
    if m != 1:  # per-row alpha (a per-channel weight scale)
        alpha = alpha * (torch.rand(n, generator=gen).to(device) + 0.5)
    for a_dtype, out_dtype in ((torch.bfloat16, torch.float16), (torch.float16, torch.bfloat16)):
        a = torch.randn(m, k, generator=gen).to(a_dtype).to(device)
        out = poisoned((m, n), out_dtype, device)
        got = gemv.gemv_w4a16(a, b, b_scale, alpha, layout, out_dtype, bias, out=out,
                              config=GemvConfig(0, 32, 1, 4) if m == 16 else None)
        assert got is out and not got.isnan().any()
        assert rel_error(got, _expected_w4a16(a, b, b_scale, alpha, layout, bias)) <= BAR


def test_long_k_with_few_words_per_step(device, gen):
    """K = 1056: 132 words per row, so steps of 4 words (33 of them, split over programs)."""
    b, b_scale, gs = _weight(12, 1056, "swizzled", gen, device)
    a = torch.randn(1, 1056, generator=gen).to(torch.bfloat16).to(device)
    alpha = (1.0 / gs).reshape(1)
    out = poisoned((1, 12), torch.bfloat16, device)
    gemv.gemv_w4a16(a, b, b_scale, alpha, "swizzled", torch.bfloat16, None, out=out)
    assert rel_error(out, _expected_w4a16(a, b, b_scale, alpha, "swizzled", None)) <= BAR


@pytest.mark.parametrize("name", list(CONFIGS))
def test_w4a4_and_launch_shapes(name, device, gen):
    m, n, k = 5, 24, 128
    b, b_scale, gs_b = _weight(n, k, "swizzled", gen, device)
    x = torch.randn(m, k, generator=gen)
    gs_a = ref.global_scale(x)
    a, a_scale, _ = ref.quantize(x, gs_a, "swizzled")
    a, a_scale = a.to(device), a_scale.to(device)
    alpha = (1.0 / (gs_a.to(device) * gs_b)).reshape(1) * (torch.rand(n, generator=gen)
                                                              .to(device) + 0.5)
    bias = torch.randn(n, generator=gen).to(device)
    out = poisoned((m, n), torch.float16, device)
    gemv.gemv(a, b, a_scale, b_scale, alpha, torch.float16, bias, out=out,
              config=CONFIGS[name])
    exp = ref.gemm_w4a4(a.cpu(), b.cpu(), a_scale.cpu(), b_scale.cpu(), alpha.cpu(),
                        torch.float64, bias.cpu(), compute_dtype=torch.float64)
    assert not out.isnan().any() and rel_error(out, exp) <= BAR
    # The same launch shape on the W4A16 path.
    a16 = x.to(torch.bfloat16).to(device)
    out = poisoned((m, n), torch.bfloat16, device)
    alpha16 = (1.0 / gs_b).reshape(1)
    gemv.gemv_w4a16(a16, b, b_scale, alpha16, "swizzled", torch.bfloat16, None, out=out,
                    config=CONFIGS[name])
    assert rel_error(out, _expected_w4a16(a16, b, b_scale, alpha16, "swizzled", None)) <= BAR


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_every_code_and_extreme_scales_exact(layout, device):
    """Every byte (all pairs of E2M1 codes, -0 included) under the smallest subnormal, a
    subnormal, 1.0, and the largest e4m3 scale: with one-hot activations each output is one
    lut * s, which fp16 holds exactly, so the result must be bit-exact."""
    n, k = 32, 64
    data = torch.arange(n * k // 2, dtype=torch.int64).remainder(256).to(torch.uint8)
    data = data.reshape(n, k // 2)
    codes = torch.tensor([0x01, 0x05, 0x38, 0x7E], dtype=torch.uint8)  # 2^-9, 5*2^-9, 1, 448
    scale_lin = codes[torch.arange(n * k // 16).remainder(4)].reshape(n, k // 16)
    scale = ref.swizzle_scales(scale_lin.view(torch.float8_e4m3fn)) if layout == "swizzled" \
        else scale_lin.view(torch.float8_e4m3fn)
    eye = torch.eye(k, dtype=torch.float16)[:16]  # tokens 0..15 pick K columns 0..15
    out = poisoned((16, n), torch.float16, device)
    gemv.gemv_w4a16(eye.to(device), data.to(device), scale.to(device),
                    torch.ones(1, device=device), layout, torch.float16, None, out=out,
                    config=GemvConfig(0, 64, 1, 4))
    exact = ref.dequantize_unscaled(data, scale, layout, torch.float64)[:, :16].T
    assert torch.equal(out.cpu().double(), exact)


def test_deterministic(device, gen):
    b, b_scale, gs = _weight(40, 128, "swizzled", gen, device)
    a = torch.randn(3, 128, generator=gen).to(torch.bfloat16).to(device)
    alpha = (1.0 / gs).reshape(1)
    cfg = GemvConfig(block_m=2, block_k=32, words_per_thread=1, num_warps=4, split_k=2)
    runs = [gemv.gemv_w4a16(a, b, b_scale, alpha, "swizzled", torch.bfloat16, None, config=cfg)
            for _ in range(2)]
    assert all(torch.equal(r, runs[0]) for r in runs[1:])
    assert rel_error(runs[0], _expected_w4a16(a, b, b_scale, alpha, "swizzled", None)) <= BAR


def test_split_must_divide_the_k_steps(device, gen):
    b, b_scale, gs = _weight(8, 128, "swizzled", gen, device)  # 16 words: 4 steps of 4
    a = torch.randn(1, 128, generator=gen).to(torch.float16).to(device)
    with pytest.raises(ValueError, match="split_k=3 does not divide the 4 K steps"):
        gemv.gemv_w4a16(a, b, b_scale, (1.0 / gs).reshape(1), "swizzled", torch.float16, None,
                        config=GemvConfig(1, 32, 1, 4, split_k=3))


def test_empty(device, gen):
    b, b_scale, gs = _weight(8, 32, "swizzled", gen, device)
    a = torch.empty(0, 32, dtype=torch.float16, device=device)
    got = gemv.gemv_w4a16(a, b, b_scale, (1.0 / gs).reshape(1), "swizzled", torch.float16, None)
    assert got.shape == (0, 8)


def test_gemm_entry_points_use_gemv_for_small_m(device, gen, monkeypatch):
    """gemm_w4a16 / gemm take the GEMV for M <= GEMV_MAX_M (operands it can read), else the
    tensor-core kernel; both give the reference result."""
    calls = []
    real = gemv._launch
    monkeypatch.setattr(gemv, "_launch", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    n, k = 16, 64
    b, b_scale, gs = _weight(n, k, "swizzled", gen, device)
    alpha = (1.0 / gs).reshape(1)
    for m in (1, GEMV_MAX_M, GEMV_MAX_M + 1):
        calls.clear()
        a = torch.randn(m, k, generator=gen).to(torch.float16).to(device)
        got = triton_gemm.gemm_w4a16(a, b, b_scale, alpha, "swizzled", torch.float16, None)
        assert bool(calls) == (m <= GEMV_MAX_M), m
        assert rel_error(got, _expected_w4a16(a, b, b_scale, alpha, "swizzled", None)) <= BAR
    # A GemmConfig forces the tensor-core kernel; activations that are not 16-byte aligned
    # (a view 2 elements into its storage) go there too.
    calls.clear()
    a = torch.randn(1, k, generator=gen).to(torch.float16).to(device)
    triton_gemm.gemm_w4a16(a, b, b_scale, alpha, "swizzled", torch.float16, None,
                           config=GemmConfig(16, 32, 64, 4, 1))
    storage = torch.randn(k + 2, generator=gen).to(torch.float16).to(device)
    shifted = storage[2:].reshape(1, k)
    got = triton_gemm.gemm_w4a16(shifted, b, b_scale, alpha, "swizzled", torch.float16, None)
    assert not calls
    assert rel_error(got, _expected_w4a16(shifted, b, b_scale, alpha, "swizzled", None)) <= BAR
