"""Quantize/dequantize numerics: hand-built cases with known answers, and an independent oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from tests import oracle
from tests.conftest import assert_same_bits, assert_same_codes, canonical_codes

LUT = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def codes_of(q) -> torch.Tensor:
    """Unpacked codes [R, C] with -0 written as +0."""
    return ref.unpack_e2m1(canonical_codes(q.data.reshape(q.rows, -1)))


def one_block(values, gs=1.0, dtype=torch.float32):
    """A single 16-value row quantized with a given global scale and linear scales."""
    x = torch.tensor([values], dtype=dtype)
    return nk.quantize(x, gs, scale_layout="linear")


def test_every_code_round_trips():
    # amax 6 with gs 1 gives scale e4m3(6 * fl(1/6)) = 1, so each value is its own code.
    values = LUT + [-v for v in LUT]
    q = one_block(values)
    assert q.scale.float().item() == 1.0
    expected = list(range(8)) + [0] + list(range(9, 16))  # -0 -> 0 after canonicalisation
    assert codes_of(q)[0].tolist() == expected
    assert nk.dequantize(q, torch.float32)[0].tolist() == values


def test_rounding_ties_go_to_even_codes():
    ties = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    even = [0, 2, 2, 4, 4, 6, 6]  # codes: 0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0
    values = [6.0] + ties + [-t for t in ties] + [0.0]
    q = one_block(values)
    got = codes_of(q)[0].tolist()
    assert got[1:8] == even
    assert got[8:15] == [c | 8 if c else 0 for c in even]


def test_values_just_off_the_ties_round_to_nearest():
    eps = 1e-3
    values = [6.0, 0.25 + eps, 0.75 - eps, 1.25 + eps, 1.75 - eps, 2.5 + eps, 3.5 - eps,
              5.0 + eps, 5.9, 0.1, 2.9, 4.4, 1.1, 0.6, 1.6, 3.2]
    expected = [7, 1, 1, 3, 3, 5, 5, 7, 7, 0, 5, 6, 2, 1, 3, 5]
    assert codes_of(one_block(values))[0].tolist() == expected


def test_negative_zero_is_zero():
    values = [6.0, -0.0, -0.1, -0.25] + [0.0] * 12
    q = one_block(values)
    assert codes_of(q)[0, 1:4].tolist() == [0, 0, 0]
    assert torch.all(nk.dequantize(q, torch.float32)[0, 1:] == 0)


def test_values_past_six_times_the_scale_saturate():
    # gs 1000 makes gs*amax/6 = 1000 > 448: the scale clamps to 448 and the largest values
    # land at x*inv = 6*1000/448 = 13.4, which must saturate to +-6 (codes 7 and 15).
    values = [6.0, -6.0, 5.0, -5.5] + [0.0] * 12
    q = one_block(values, gs=1000.0)
    assert q.scale.float().item() == 448.0
    assert codes_of(q)[0, :4].tolist() == [7, 15, 7, 15]


def test_zero_blocks_have_zero_scales_and_codes():
    x = torch.randn(4, 64)
    x[1] = 0
    x[2, 16:32] = 0
    q = nk.quantize(x, scale_layout="linear")
    assert torch.all(q.scale[1].float() == 0) and q.scale[2, 1].float().item() == 0
    assert torch.all(codes_of(q)[1] == 0) and torch.all(codes_of(q)[2, 16:32] == 0)


def test_all_zero_tensor_has_global_scale_one():
    x = torch.zeros(3, 32, dtype=torch.bfloat16)
    q = nk.quantize(x)
    assert q.global_scale.item() == 1.0 and q.global_scale.dtype == torch.float32
    assert torch.all(q.data == 0) and torch.all(q.scale.float() == 0)
    assert torch.all(nk.dequantize(q) == 0)


def test_huge_inputs_clamp_scales_and_never_nan():
    x = torch.randn(8, 64) * (3e38 / 5)
    x[0, 0] = torch.finfo(torch.float32).max
    q = nk.quantize(x, scale_layout="linear")
    s = q.scale.float()
    assert not torch.isnan(s).any() and s.max().item() == 448.0
    back = nk.dequantize(q, torch.float32)
    assert torch.isfinite(back).all()
    assert ((back.double() - x.double()).norm() / x.double().norm()).item() < 0.15


def test_tiny_blocks_get_subnormal_e4m3_scales():
    x = torch.zeros(1, 32)
    x[0, :16] = torch.linspace(-1, 1, 16)
    x[0, 16:] = torch.linspace(-1e-5, 1e-5, 16)
    q = nk.quantize(x, scale_layout="linear")
    s = q.scale.float()[0]
    # gs = 2688, so the tiny block's scale is e4m3(2688 * 1e-5 / 6) = e4m3(0.00448) = 2^-8,
    # below e4m3's smallest normal 2^-6.
    assert s[1].item() == 2.0 ** -8
    assert not torch.isnan(s).any()
    assert torch.isfinite(nk.dequantize(q, torch.float32)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 16), (7, 48), (33, 32)])
def test_matches_independent_oracle_on_random_data(dtype, shape):
    gen = torch.Generator().manual_seed(hash((str(dtype), shape)) % 2**31)
    x = (torch.randn(shape, generator=gen) * torch.rand(shape[0], 1, generator=gen) * 10).to(dtype)
    q = nk.quantize(x, scale_layout="linear")
    codes, scales, gs = oracle.quantize(x.float().numpy())
    assert q.global_scale.item() == np.float32(gs)
    assert q.scale.float().double().numpy().tolist() == scales.tolist()
    expected = ref.pack_e2m1(torch.from_numpy(codes))
    assert_same_codes(q.data, expected)


def test_matches_oracle_on_tie_heavy_data():
    # Every value is a rounding tie or an exact code times a power-of-two scale.
    gen = torch.Generator().manual_seed(7)
    grid = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.5, 1.0, 6.0, 0.0])
    idx = torch.randint(0, len(grid), (12, 64), generator=gen)
    sign = torch.randint(0, 2, (12, 64), generator=gen) * 2 - 1
    scale = 2.0 ** torch.randint(-4, 4, (12, 1), generator=gen)
    x = grid[idx] * sign * scale
    x[:, ::16] = 6.0 * scale  # each block's amax is 6 * scale, keeping ties exactly on ties
    for gs in (None, 1.0, 448.0):
        q = nk.quantize(x, gs, scale_layout="linear")
        codes, scales, _ = oracle.quantize(x.numpy(), gs)
        assert q.scale.float().double().numpy().tolist() == scales.tolist()
        assert_same_codes(q.data, ref.pack_e2m1(torch.from_numpy(codes)))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), blocks=st.integers(1, 4), log_scale=st.integers(-20, 20),
       seed=st.integers(0, 2**31 - 1))
def test_property_matches_oracle(rows, blocks, log_scale, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 16 * blocks, generator=gen) * (2.0 ** log_scale)
    q = nk.quantize(x, scale_layout="linear")
    codes, scales, gs = oracle.quantize(x.numpy())
    assert q.global_scale.item() == np.float32(gs)
    assert q.scale.float().double().numpy().tolist() == scales.tolist()
    assert_same_codes(q.data, ref.pack_e2m1(torch.from_numpy(codes)))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(0, 40), blocks=st.integers(0, 5), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_property_dequantize_is_lut_times_scale_over_gs(rows, blocks, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, 16 * blocks, generator=gen) * 3).to(dtype)
    q = nk.quantize(x, scale_layout="linear")
    lut = torch.tensor(LUT + [-v for v in LUT])
    codes = ref.unpack_e2m1(q.data).long()
    expected = lut[codes] * q.scale.float().repeat_interleave(16, dim=1) / q.global_scale
    assert_same_bits(nk.dequantize(q, torch.float32), expected)
    assert_same_bits(nk.dequantize(q, dtype), expected.to(dtype))
    # Quantization error is bounded by half a code step (at most 1 unit of scale/gs) per element.
    if x.numel():
        step = q.scale.float().repeat_interleave(16, dim=1) / q.global_scale
        # (a tie at 5 units rounds to 4: exactly one unit, so allow float rounding of the step)
        assert torch.all((expected - x.float()).abs() <= step * (1 + 1e-6) + 1e-30)


def test_layouts_hold_the_same_scales():
    x = torch.randn(150, 80, dtype=torch.bfloat16)
    lin, swz = nk.quantize(x, scale_layout="linear"), nk.quantize(x, scale_layout="swizzled")
    assert torch.equal(lin.data, swz.data)
    assert_same_bits(nk.unswizzle_scales(swz.scale, 150, 5), lin.scale)
    assert_same_bits(nk.dequantize(lin), nk.dequantize(swz))


def test_leading_dims_are_flattened():
    x = torch.randn(2, 3, 5, 32)
    q = nk.quantize(x, scale_layout="linear")
    assert q.data.shape == (2, 3, 5, 16) and q.scale.shape == (2, 3, 5, 2)
    assert q.shape == x.shape
    flat = nk.quantize(x.reshape(30, 32), scale_layout="linear")
    assert torch.equal(q.data.reshape(30, 16), flat.data)
    assert nk.dequantize(q).shape == x.shape
    swz = nk.quantize(x)
    assert swz.scale.shape == (128, 4)
    assert_same_bits(nk.dequantize(swz), nk.dequantize(q))


@pytest.mark.parametrize("shape", [(0, 32), (5, 0), (0, 0), (0,)])
def test_empty_inputs_work(shape):
    x = torch.zeros(shape, dtype=torch.bfloat16)
    for layout in ("linear", "swizzled"):
        q = nk.quantize(x, scale_layout=layout)
        assert q.global_scale.item() == 1.0
        assert nk.dequantize(q).shape == x.shape


def test_given_global_scale_is_used_as_is():
    x = torch.randn(4, 32)
    q = nk.quantize(x, torch.tensor(100.0))
    assert q.global_scale.item() == 100.0
    q2 = nk.quantize(x, 100.0)
    assert torch.equal(q.data, q2.data) and torch.equal(q.scale.view(torch.uint8),
                                                        q2.scale.view(torch.uint8))


def test_global_scale_formula():
    x = torch.tensor([[0.5, -3.0, 2.0]])
    assert nk.global_scale(x).item() == np.float32(2688.0) / np.float32(3.0)
    assert nk.global_scale(torch.zeros(4)).item() == 1.0


def test_reference_takes_leading_dims_directly():
    x = torch.randn(2, 3, 48, dtype=torch.float16)
    data, scale, gs = ref.quantize(x, scale_layout="linear")
    assert data.shape == (2, 3, 24) and scale.shape == (2, 3, 3)
    flat_data, flat_scale, _ = ref.quantize(x.reshape(6, 48), scale_layout="linear")
    assert torch.equal(data.reshape(6, 24), flat_data)
    back = ref.dequantize(data, scale, gs, "linear", torch.float32)
    assert back.shape == x.shape
    assert_same_bits(back.reshape(6, 48), ref.dequantize(flat_data, flat_scale, gs, "linear",
                                                         torch.float32))
