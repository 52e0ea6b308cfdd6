"""The decode-size GEMM of the cuda backend (csrc/include/nvfp4/decode_gemm.cuh) on the GPU:
within the accuracy bar against a float64 reference on fresh random data and odd shapes, every
E2M1 code and extreme e4m3 scales decoded exactly, deterministic, outputs written over poisoned
memory. Skips without a GPU or without an extension built for an SM80-SM90 target."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _extension
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import cuda
from nvfp4_kernels.benchmarking import capture
from gemm_testlib import BAR, every_code_weight
from gemm_testlib import alpha as _alpha
from gemm_testlib import f64 as _f64
from gemm_testlib import weight as _weight
from tests.conftest import rel_error

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = cuda.why_unavailable(_HERE)
if _REASON is None and not getattr(_extension.extension(), "HAS_DECODE_GEMM", False):
    _REASON = "extension built without an SM80-SM90 target (no decode GEMM)"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]


def _poison(nbytes=64 << 20):
    """Fill memory the caching allocator hands out next with NaN-ish bytes."""
    block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    block.fill_(0xFF)
    del block


def _direct(a, a_scale, w, alpha, bias, out_dtype, variant=0):
    """The kernel itself (not a fallback): the extension entry point."""
    _poison()
    return _extension.extension().gemm_decode(a, a_scale, w.data, w.scale,
                                              w.scale_layout == "swizzled", alpha, bias,
                                              out_dtype, variant)


# csrc/gemm_decode.cu: 8 warps per CTA with the word decode (word_pairs), and the same shapes
# without it.
WORD_DECODE_VARIANT, PAIR_DECODE_VARIANT = 4, 5


@pytest.mark.parametrize("m", [1, 3, 8, 9, 15, 16])
@pytest.mark.parametrize("n,k", [(16, 32), (50, 96), (130, 160), (300, 1024)])
@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
def test_w4a16_within_bar(m, n, k, a_dtype):
    gen = torch.Generator().manual_seed(m * 1009 + n * 31 + k)
    w = _weight(n, k, "swizzled", gen)
    a = (torch.randn(m, k, generator=gen) * 3).to(a_dtype).cuda()
    alpha = _alpha(w)
    for out_dtype in (torch.bfloat16, torch.float16):
        y = _direct(a, None, w, alpha, None, out_dtype)
        assert y.dtype == out_dtype and y.shape == (m, n)
        assert torch.isfinite(y).all()
        assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.parametrize("bias_dtype", [None, torch.float32, torch.bfloat16, torch.float16])
def test_w4a16_layouts_bias_and_per_row_alpha(layout, bias_dtype):
    gen = torch.Generator().manual_seed(11)
    m, n, k = 5, 200, 384
    w = _weight(n, k, layout, gen)
    a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
    bias = None if bias_dtype is None else torch.randn(n, generator=gen).to(bias_dtype).cuda()
    per_row = torch.rand(n, generator=gen) + 0.5  # fused shards with their own scales
    alpha = (per_row / w.global_scale.cpu()).float().cuda()
    y = _direct(a, None, w, alpha, bias, torch.bfloat16)
    want = (a.double().cpu() @ _f64(w).T) * per_row.double()
    if bias is not None:
        want = want + bias.double().cpu()
    assert rel_error(y, want) < BAR


@pytest.mark.parametrize("m", [1, 7, 9, 16])
@pytest.mark.parametrize("n,k", [(48, 64), (260, 512)])
def test_w4a4_within_bar(m, n, k):
    gen = torch.Generator().manual_seed(m * 17 + n + k)
    w = _weight(n, k, "swizzled", gen)
    qa = nk.quantize((torch.randn(m, k, generator=gen) * 4).cuda())
    alpha = (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float()
    y = _direct(qa.data, qa.scale, w, alpha, None, torch.bfloat16)
    assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR


@pytest.mark.parametrize("variant", [0, WORD_DECODE_VARIANT])
@pytest.mark.parametrize("a_dtype", [torch.bfloat16, torch.float16])
def test_every_code_and_extreme_scales_exact(a_dtype, variant):
    """One weight row per (code, scale): with a one-hot activation the output is the decoded
    weight itself, lut[code] * s, which must come out exactly (it is representable). Every
    position of a 32-bit word (both nibbles of each of its 4 bytes) is picked by some token, so
    each of the word decode's four pairs is checked; 8 tokens (one token tile) and 16 (two)."""
    k = 64
    data, scale_lin, w = every_code_weight(k)
    odd = [5 * i + 1 for i in range(8)]  # word positions 1, 6, 3, 0, 5, 2, 7, 4
    for cols in (odd, odd + [2 * i for i in range(8)]):
        a = torch.zeros(len(cols), k, dtype=a_dtype)
        for i, c in enumerate(cols):
            a[i, c] = 1.0
        want = ref.dequantize_unscaled(data, scale_lin, "linear", torch.float64)[:, cols].T
        y = _direct(a.cuda(), None, w, torch.ones(1, device="cuda"), None, torch.float16,
                    variant)
        assert torch.equal(y.double().cpu(), want.to(torch.float16).double())


@pytest.mark.parametrize("m", [1, 6, 16])
@pytest.mark.parametrize("act", ["bf16", "fp16", "nvfp4"])
def test_word_decode_is_bitwise_the_default(m, act):
    """The word decode produces the pair decode's MMA operands bit for bit and sums in the same
    order, so the whole output is bitwise equal (odd N and K: partial tiles, a short last chunk)."""
    gen = torch.Generator().manual_seed(m * 3 + len(act))
    n, k = 333, 1184
    w = _weight(n, k, "swizzled", gen)
    x = torch.randn(m, k, generator=gen) * 3
    if act == "nvfp4":
        qa = nk.quantize(x.cuda())
        args = (qa.data, qa.scale, w, (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float())
    else:
        a = x.to(torch.bfloat16 if act == "bf16" else torch.float16).cuda()
        args = (a, None, w, _alpha(w))
    for out_dtype in (torch.bfloat16, torch.float16):
        base = _direct(*args, None, out_dtype, PAIR_DECODE_VARIANT)
        word = _direct(*args, None, out_dtype, WORD_DECODE_VARIANT)
        assert torch.equal(word, base)


_VARIANTS = range(getattr(_extension.extension(), "DECODE_GEMM_VARIANTS", 1) if _REASON is None
                   else 1)


@pytest.mark.parametrize("variant", _VARIANTS)
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_every_launch_shape_within_bar(variant, layout):
    """Each launch shape of the sweep (csrc/gemm_decode.cu), not only the default: odd N and K
    (partial row tiles, a last K chunk shorter than 128), both token tiles, W4A16 and W4A4.
    K = 2048 (16 chunks) keeps 8 warps per CTA where the default chooses the warp count; 416,
    1056 and 5376 (4, 9 and 42 chunks) take 7 (one token tile) or 6 (two)."""
    gen = torch.Generator().manual_seed(variant * 7 + len(layout))
    ext = _extension.extension()
    for m, n, k in ((1, 50, 96), (5, 130, 416), (16, 300, 1056), (1, 70, 2048), (12, 40, 5376),
                    (3, 33, 5376), (1, 45, 5376)):
        w = _weight(n, k, layout, gen)
        a_dtype = torch.float16 if m == 5 else torch.bfloat16  # the decodes differ by dtype
        a = (torch.randn(m, k, generator=gen) * 3).to(a_dtype).cuda()
        _poison()
        y = ext.gemm_decode(a, None, w.data, w.scale, layout == "swizzled", _alpha(w), None,
                            torch.float16, variant)
        assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR
        if layout == "swizzled":
            qa = nk.quantize(a.float())
            alpha = (1.0 / (qa.global_scale * w.global_scale)).reshape(1).float()
            _poison()
            y = ext.gemm_decode(qa.data, qa.scale, w.data, w.scale, True, alpha, None,
                                torch.bfloat16, variant)
            assert rel_error(y, _f64(qa) @ _f64(w).T) < BAR


def test_deterministic_and_through_the_op():
    gen = torch.Generator().manual_seed(5)
    w = _weight(1000, 2048, "swizzled", gen)
    a = torch.randn(16, 2048, generator=gen).to(torch.bfloat16).cuda()
    alpha = _alpha(w)
    first = _direct(a, None, w, alpha, None, torch.bfloat16)
    for _ in range(3):
        assert torch.equal(_direct(a, None, w, alpha, None, torch.bfloat16), first)
    via_op = torch.ops.nvfp4.gemm_w4a16(a, w.data, w.scale, alpha, "swizzled", None, None,
                                        backend="cuda")
    assert torch.equal(via_op, first)
    assert torch.equal(nk.gemm(a, w, backend="cuda"), first)


def test_shapes_the_kernel_does_not_take_fall_back():
    gen = torch.Generator().manual_seed(6)
    for m, k in ((17, 64), (4, 48), (0, 64)):  # too many tokens, K % 32 != 0, no tokens
        w = _weight(40, k, "swizzled", gen)
        a = torch.randn(m, k, generator=gen).to(torch.bfloat16).cuda()
        assert not cuda._decode_gemm_takes(a, w.data)
        y = nk.gemm(a, w, backend="cuda")
        assert y.shape == (m, 40)
        if m:
            assert rel_error(y, a.double().cpu() @ _f64(w).T) < BAR


def test_cuda_graph_capture_and_replay():
    gen = torch.Generator().manual_seed(8)
    w = _weight(512, 1024, "swizzled", gen)
    a = torch.randn(4, 1024, generator=gen).to(torch.bfloat16).cuda()
    alpha = _alpha(w)
    eager = _direct(a, None, w, alpha, None, torch.bfloat16)
    graph, out = capture(lambda: _extension.extension().gemm_decode(
        a, None, w.data, w.scale, True, alpha, None, torch.bfloat16), warmup=1)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)
