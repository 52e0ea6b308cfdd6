"""Quantize/dequantize numerics: hand-built cases with known answers, and an independent oracle."""

from __future__ import annotations

import math

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


def test_computed_scale_op_gives_the_reference_outputs_and_the_gemm_alpha():
    """nvfp4::quantize_computed_scale (what nk.quantize(x) and the dynamic NVFP4Linear call):
    reference.quantize(x) bit for bit, and alpha = weight_alpha / gs elementwise."""
    x = torch.randn(7, 48, dtype=torch.bfloat16) * 3
    x[2, 5] = math.nan
    wa = torch.rand(12) + 0.5
    data, scale, gs, alpha = torch.ops.nvfp4.quantize_computed_scale(x, "linear", wa)
    want_data, want_scale, want_gs = ref.quantize(x, None, "linear")
    assert_same_codes(data, want_data)
    assert_same_bits(scale, want_scale)
    assert_same_bits(gs.reshape(1), want_gs.reshape(1))
    assert_same_bits(alpha, wa / want_gs)
    no_alpha = torch.ops.nvfp4.quantize_computed_scale(x, "swizzled")[3]
    assert no_alpha.shape == (0,) and no_alpha.dtype == torch.float32
    q = nk.quantize(x, scale_layout="linear")
    assert_same_codes(q.data, want_data)
    assert_same_bits(q.global_scale.reshape(1), want_gs.reshape(1))


@pytest.mark.parametrize("weight_alpha,error,match", [
    (torch.ones(1, dtype=torch.float64), TypeError, "weight_alpha: dtype"),
    (torch.ones(0), ValueError, "weight_alpha: expected at least 1 element"),
    (torch.ones(4, 2).t(), ValueError, "weight_alpha: must be contiguous"),
])
def test_computed_scale_op_names_a_bad_weight_alpha(weight_alpha, error, match):
    with pytest.raises(error, match=match):
        torch.ops.nvfp4.quantize_computed_scale(torch.zeros(2, 16), "linear", weight_alpha)


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


# ---------------------------------------------------------------------------------------------
# Non-finite and extreme input (docs/format.md, "Non-finite and extreme input")
# ---------------------------------------------------------------------------------------------

def _bits(t):
    return t.contiguous().view(torch.uint8)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_non_finite_element_stays_in_its_block(bad, dtype):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 64, generator=gen) * 3).to(dtype)
    x[2, 37] = bad  # block (2, 2)
    clean = x.clone()
    clean[2, 37] = 0
    q = nk.quantize(x, scale_layout="linear")
    qc = nk.quantize(clean, scale_layout="linear")
    assert q.global_scale.item() == qc.global_scale.item() == nk.global_scale(clean).item()
    codes, ccodes = codes_of(q), codes_of(qc)
    blk = torch.zeros(6, 4, dtype=torch.bool)
    blk[2, 2] = True
    elem = blk.repeat_interleave(16, 1)
    assert torch.equal(codes[~elem], ccodes[~elem])
    assert torch.equal(_bits(q.scale)[~blk], _bits(qc.scale)[~blk])
    back = nk.dequantize(q, torch.float32)
    assert torch.isfinite(back[~elem]).all()
    assert torch.equal(back[~elem], nk.dequantize(qc, torch.float32)[~elem])
    block = back[2, 32:48]
    if math.isnan(bad):  # NaN scale, zero codes: the block reads back as NaN
        assert math.isnan(q.scale.float()[2, 2].item()) and torch.isnan(block).all()
    else:  # Inf saturates: scale 448, the element becomes +-6 * 448 / gs = +-amax(finite)
        assert q.scale.float()[2, 2].item() == 448.0 and torch.isfinite(block).all()
        want = torch.tensor(math.copysign(2688.0, bad)) / q.global_scale  # float32 division
        assert block[5].item() == want.item()


def test_non_finite_input_matches_the_oracle():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 48, generator=gen)
    x[0, 3], x[1, 20], x[4, 47] = math.inf, math.nan, -math.inf
    q = nk.quantize(x, scale_layout="linear")
    codes, scales, gs = oracle.quantize(x.numpy())
    assert q.global_scale.item() == np.float32(gs)
    np.testing.assert_array_equal(q.scale.float().double().numpy(), scales)  # NaN == NaN here
    assert_same_codes(q.data, ref.pack_e2m1(torch.from_numpy(codes)))


def test_no_finite_element_gives_global_scale_one():
    x = torch.full((2, 32), math.inf)
    x[1] = math.nan
    assert nk.global_scale(x).item() == 1.0


def test_explicit_global_scale_keeps_non_finite_in_its_block():
    x = torch.randn(2, 32)
    x[0, 0] = math.nan
    back = nk.dequantize(nk.quantize(x, 100.0, scale_layout="linear"), torch.float32)
    assert torch.isnan(back[0, :16]).all() and torch.isfinite(back[0, 16:]).all()
    assert torch.isfinite(back[1]).all()


@pytest.mark.parametrize("amax", [1e-37, 3e-37, 7e-36])
def test_tiny_tensors_keep_their_values(amax):
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(4, 32, generator=gen) * 0.75 + 0.25) * amax
    x[0, 0] = amax
    gs = nk.global_scale(x)
    assert gs.item() == torch.finfo(torch.float32).max  # clamped, not inf
    q = nk.quantize(x, scale_layout="linear")
    back = nk.dequantize(q, torch.float32)
    assert torch.isfinite(back).all()
    assert ((back.double() - x.double()).norm() / x.double().norm()).item() < 0.15
    codes, scales, ogs = oracle.quantize(x.numpy())
    assert ogs == gs.item() and q.scale.float().double().numpy().tolist() == scales.tolist()
    assert_same_codes(q.data, ref.pack_e2m1(torch.from_numpy(codes)))


def test_subnormal_only_tensors_stay_finite():
    # Below ~1.8e-38 the float32 steps of the spec overflow inv (docs/format.md): the values are
    # coarse, but never NaN or Inf, and zeros stay zero.
    x = torch.rand(2, 32, generator=torch.Generator().manual_seed(6)) * 5e-39
    x[1, :16] = 0
    q = nk.quantize(x, scale_layout="linear")
    back = nk.dequantize(q, torch.float32)
    assert torch.isfinite(back).all() and torch.isfinite(q.scale.float()).all()
    assert torch.all(back[1, :16] == 0)


def test_global_scale_clamps_to_flt_max_at_the_boundary():
    flt_max = torch.finfo(torch.float32).max
    assert nk.global_scale(torch.tensor([7.0e-36])).item() == flt_max
    big = nk.global_scale(torch.tensor([1e-35])).item()
    assert big < flt_max and math.isfinite(big)


def test_global_scale_reads_no_value_on_the_host():
    # A host read (.item(), bool()) would break a fullgraph trace; so would a CUDA-graph capture.
    compiled = torch.compile(ref.global_scale, fullgraph=True, backend="eager")
    x = torch.randn(8, 32)
    x[1, 1] = math.inf
    assert torch.equal(compiled(x), ref.global_scale(x))
