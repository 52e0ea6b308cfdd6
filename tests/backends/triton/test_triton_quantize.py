"""Triton quantize: bit-exact with nvfp4_kernels.reference (dequantize: test_triton_dequantize)."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from triton_testlib import assert_same_codes, poisoned

triton_quantize = pytest.importorskip("nvfp4_kernels.backends.triton.quantize")
from nvfp4_kernels.backends.triton import _bits  # noqa: E402

TIES = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.0, 0.5, 6.0])


def tie_heavy(rows, cols, gen):
    """Blocks whose scale is an exact power of two (amax = 6 * 2**e, gs = 1), every other value
    an exact rounding tie times that scale, signs random: x * inv hits the ties exactly."""
    blocks = cols // 16
    idx = torch.randint(0, len(TIES), (rows, blocks, 16), generator=gen)
    vals = TIES[idx]
    vals[..., 0] = 6.0
    sign = torch.randint(0, 2, vals.shape, generator=gen) * 2 - 1
    exp = torch.randint(-8, 6, (rows, blocks, 1), generator=gen).float()
    return (vals * sign * torch.exp2(exp)).reshape(rows, cols)


def _check_quantize(x, gs, layout, device):
    rows, cols = x.shape
    srows, scols = (ref.swizzled_shape(rows, cols // 16) if layout == "swizzled"
                    else (rows, cols // 16))
    out = (poisoned((rows, cols // 2), torch.uint8, device),
           poisoned((srows, scols), torch.float8_e4m3fn, device))
    data, scale = triton_quantize.quantize(x, gs, layout, out=out)
    exp_data, exp_scale, _ = ref.quantize(x.cpu(), gs.cpu(), layout)
    assert_same_codes(data, exp_data)
    assert torch.equal(scale.view(torch.uint8).cpu(), exp_scale.view(torch.uint8))
    return data, scale


@pytest.mark.parametrize("rows", [1, 7, 33, 150])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_quantize_random_bit_exact(rows, dtype, device, gen):
    cols = 48 if rows > 1 else 160
    x = (torch.randn(rows, cols, generator=gen) * 10).to(dtype).to(device)
    gs = ref.global_scale(x)
    layout = "swizzled" if rows % 2 else "linear"
    data, scale = _check_quantize(x, gs, layout, device)
    if layout == "swizzled":  # the padding rows/cols of the 128x4 tiles are zeros
        live = ref.swizzle_scales(torch.ones(rows, cols // 16)) != 0
        assert live.sum() < live.numel()
        assert (scale.view(torch.uint8).cpu()[~live] == 0).all()


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_quantize_ties_bit_exact(layout, dtype, device, gen):
    x = tie_heavy(33, 64, gen).to(dtype).to(device)
    gs = torch.ones((), device=device)
    _check_quantize(x, gs, layout, device)
    # Zeros, all-zero blocks and a huge global scale (clamped scales) too.
    x[3] = 0
    _check_quantize(x, torch.tensor(1e6, device=device), layout, device)


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.filterwarnings("ignore:All-NaN slice")  # the interpreter's reduction of a NaN block
def test_non_finite_blocks_bit_exact(layout, device, gen):
    """A NaN block gets the e4m3 NaN scale (0x7F) and zero codes, an infinite one scale 448, as
    the reference does (docs/format.md, "Non-finite and extreme input")."""
    x = torch.randn(5, 64, generator=gen)
    x[1, 3], x[2, 40], x[4, 63], x[0, 16:32] = float("nan"), float("inf"), -float("inf"), \
        float("nan")
    _check_quantize(x.to(device), torch.tensor(100.0, device=device), layout, device)




@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_quantize_computed_scale_bit_exact(layout, device, gen):
    """The triton backend's computed-scale quantize (amax pass, quantize, alpha division)."""
    x = (torch.randn(9, 64, generator=gen) * 10).to(torch.bfloat16)
    x[3, 7] = float("inf")
    wa = torch.rand(5, generator=gen) + 0.5
    data, scale, gs, alpha = torch.ops.nvfp4.quantize_computed_scale(
        x.to(device), layout, wa.to(device), backend="triton")
    want_data, want_scale, want_gs = ref.quantize(x, None, layout)
    assert_same_codes(data, want_data)
    assert torch.equal(scale.view(torch.uint8).cpu(), want_scale.view(torch.uint8))
    assert torch.equal(gs.cpu(), want_gs) and torch.equal(alpha.cpu(), wa / want_gs)


def test_public_path(device, gen):
    x = torch.randn(2, 5, 32, generator=gen).to(torch.float16).to(device)
    q = nk.quantize(x, backend="triton")
    expected = nk.quantize(x.cpu(), backend="reference")
    assert_same_codes(q.data.reshape(-1, 16), expected.data.reshape(-1, 16))
    assert torch.equal(q.scale.view(torch.uint8).cpu(), expected.scale.view(torch.uint8))
    back = nk.dequantize(q, torch.float32, backend="triton")
    assert torch.equal(back.cpu(), nk.dequantize(expected, torch.float32, backend="reference"))


@triton.jit
def _e2m1_kernel(v_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    v = tl.load(v_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr + offs, _bits.e2m1_rne(v), mask=offs < n)


def test_e2m1_encode_around_every_boundary(device):
    """_bits.e2m1_rne (the FFMA rounding of csrc/include/nvfp4/e2m1_encode.h) against
    reference.e2m1_rne(clamp(v)) on every float32 within 256 steps of each rounding boundary,
    grid value and binade edge, both signs, plus zeros, infinities and NaN (code 0)."""
    points = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0,
                           5.0, 6.0, 8.0, 1e-30, 1e30])
    steps = torch.arange(-256, 257, dtype=torch.int32)
    bits = (points.view(torch.int32)[:, None] + steps[None, :]).reshape(-1)
    v = bits.view(torch.float32)
    v = v[torch.isfinite(v)]
    v = torch.cat([v, -v, torch.tensor([float("inf"), -float("inf"), float("nan"), -0.0])])
    out = torch.empty(v.numel(), dtype=torch.int32, device=device)
    _e2m1_kernel[(triton.cdiv(v.numel(), 1024),)](v.to(device), out, v.numel(), BLOCK=1024)
    want = ref.e2m1_rne(torch.clamp(v, -ref.E2M1_MAX, ref.E2M1_MAX)).to(torch.int32)
    want[torch.isnan(v)] = 0  # the reference's compares are false for NaN: code 0
    assert torch.equal(out.cpu(), want)


@pytest.mark.parametrize("config", triton_quantize.CANDIDATES)
def test_every_tile_candidate_is_bit_exact(config, device, gen):
    """The sweep in benchmarks/bench_quantize.py may make any candidate the default."""
    x = tie_heavy(130, 96, gen).to(device)
    gs = ref.global_scale(x.cpu()).to(device)
    for layout in ("swizzled", "linear"):
        data, scale = triton_quantize.quantize(x, gs, layout, config=config)
        exp_data, exp_scale, _ = ref.quantize(x.cpu(), gs.cpu(), layout)
        assert_same_codes(data, exp_data)
        assert torch.equal(scale.view(torch.uint8).cpu(), exp_scale.view(torch.uint8))
