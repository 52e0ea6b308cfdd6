"""Triton dequantize: bit for bit with nvfp4_kernels.reference (every code, every finite scale
byte, global scales inside and outside the fast-division range, odd shapes, both layouts, every
output dtype); and the scaled variant the prefill GEMM route uses."""

from __future__ import annotations

import pytest
import torch

from nvfp4_kernels import reference as ref
from tests.dequant_cases import GLOBAL_SCALES, every_code_and_scale, same_bits
from triton_testlib import poisoned

triton_dequantize = pytest.importorskip("nvfp4_kernels.backends.triton.dequantize")

LAYOUTS = ("swizzled", "linear")
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _scales(scale_linear, layout):
    return ref.swizzle_scales(scale_linear) if layout == "swizzled" else scale_linear


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_code_scale_and_global_scale(layout, dtype, device, gen):
    data, scale = every_code_and_scale(16, 256, gen)  # 256 blocks: every finite scale byte
    scale = _scales(scale, layout)
    for gs_value in GLOBAL_SCALES:
        gs = torch.tensor(gs_value, dtype=torch.float32)
        out = poisoned((16, 256), dtype, device)
        got = triton_dequantize.dequantize(data.to(device), scale.to(device), gs.to(device),
                                           layout, dtype, out=out)
        want = ref.dequantize(data, scale, gs, layout, dtype)
        assert got is out
        assert same_bits(got, want), f"gs={gs_value}"


@pytest.mark.parametrize("rows, cols", [(1, 16), (7, 48), (130, 272), (33, 512)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_odd_shapes(rows, cols, layout, device, gen):
    """Rows past a tile, word columns past a 32-word strip, swizzle padding rows/columns."""
    x = torch.randn(rows, cols, generator=gen) * torch.logspace(-4, 4, cols)
    gs = ref.global_scale(x)
    data, scale, _ = ref.quantize(x, gs, layout)
    for dtype in (torch.bfloat16, torch.float16) if rows * cols < 8192 else (torch.bfloat16,):
        got = triton_dequantize.dequantize(data.to(device), scale.to(device), gs.to(device),
                                           layout, dtype, out=poisoned((rows, cols), dtype, device))
        assert same_bits(got, ref.dequantize(data, scale, gs, layout, dtype))


def test_64_bit_offsets(monkeypatch, device, gen):
    """The path tensors of 2**31 elements or more take (forced here on a small one)."""
    monkeypatch.setattr(triton_dequantize, "_INDEX64_FROM", 0)
    data, scale = every_code_and_scale(130, 48, gen)
    gs = torch.tensor(3.0)
    for layout in LAYOUTS:
        s = _scales(scale, layout)
        got = triton_dequantize.dequantize(data.to(device), s.to(device), gs.to(device), layout,
                                           torch.bfloat16)
        assert same_bits(got, ref.dequantize(data, s, gs, layout, torch.bfloat16))


def test_misaligned_data_view_and_empty(device, gen):
    data, scale = every_code_and_scale(4, 64, gen)
    padded = torch.zeros(4 * 32 + 1, dtype=torch.uint8)
    padded[1:] = data.reshape(-1)
    view = padded[1:].view(4, 32)  # starts one byte past an allocation: not 4-byte aligned
    gs = torch.tensor(3.0)
    got = triton_dequantize.dequantize(view.to(device), scale.to(device), gs.to(device),
                                       "linear", torch.bfloat16)
    assert same_bits(got, ref.dequantize(data, scale, gs, "linear", torch.bfloat16))
    empty = triton_dequantize.dequantize(torch.zeros(0, 8, dtype=torch.uint8, device=device),
                                         torch.zeros(0, 1, dtype=torch.float8_e4m3fn,
                                                     device=device),
                                         gs.to(device), "linear", torch.bfloat16)
    assert empty.shape == (0, 16)


@pytest.mark.parametrize("config", triton_dequantize.CANDIDATES)
def test_every_tile_candidate(config, device, gen):
    """benchmarks/bench_dequantize.py --sweep may make any candidate the default."""
    data, scale = every_code_and_scale(9, 272, gen)  # a partial row tile and word strip
    gs = torch.tensor(2688.0 / 0.7)
    for layout in LAYOUTS:
        s = _scales(scale, layout)
        got = triton_dequantize.dequantize(data.to(device), s.to(device), gs.to(device), layout,
                                           torch.bfloat16, config=config)
        assert same_bits(got, ref.dequantize(data, s, gs, layout, torch.bfloat16))


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_scaled_variant_is_lut_times_scale_times_factor(layout, dtype, per_row, device, gen):
    rows, cols = 150, 64
    data, scale = every_code_and_scale(rows, cols, gen)
    scale = _scales(scale, layout)
    factor = torch.rand(rows if per_row else 1, generator=gen) * 1e-3 + 1e-4
    got = triton_dequantize.dequantize_scaled(data.to(device), scale.to(device),
                                              factor.to(device), layout, dtype,
                                              out=poisoned((rows, cols), dtype, device))
    # lut * s is exact in float32; one float32 multiply by the factor, then the cast.
    unscaled = ref.dequantize_unscaled(data, scale, layout, torch.float32)
    want = (unscaled * factor.reshape(-1, 1)).to(dtype)
    assert same_bits(got, want)


def test_scaled_variant_on_a_128_row_slice_of_swizzled_scales(device, gen):
    """The prefill route dequantizes 128-row-aligned chunks of a weight: the chunk's swizzled
    scales are a contiguous byte range of the whole matrix's."""
    rows, cols = 384, 80
    data, scale = every_code_and_scale(rows, cols, gen)
    sw = ref.swizzle_scales(scale)
    one = torch.ones(1)
    full = ref.dequantize_unscaled(data, sw, "swizzled", torch.float32).to(torch.bfloat16)
    tile = sw.numel() // (sw.shape[0] // 128)
    flat = sw.reshape(-1)
    got = triton_dequantize.dequantize_scaled(data[128:256].to(device),
                                              flat[tile:2 * tile].to(device), one.to(device),
                                              "swizzled", torch.bfloat16)
    assert same_bits(got, full[128:256])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_scale_gives_nan_block(layout, device, gen):
    """A block quantized from a NaN has the e4m3 NaN scale (0x7F) and reads back as 16 NaNs
    (docs/format.md); 0xFF too. Every other block is unaffected."""
    data, scale = every_code_and_scale(4, 64, gen)
    raw = scale.view(torch.uint8).clone()
    raw[1, 2], raw[3, 0] = 0x7F, 0xFF
    scale = _scales(raw.view(torch.float8_e4m3fn), layout)
    gs = torch.tensor(2688.0 / 5.0)
    for dtype in DTYPES:
        got = triton_dequantize.dequantize(data.to(device), scale.to(device), gs.to(device),
                                           layout, dtype).cpu()
        want = ref.dequantize(data, scale, gs, layout, dtype)
        nan = torch.isnan(want)
        assert nan[1, 32:48].all() and nan[3, :16].all() and nan.sum() == 32
        assert torch.equal(torch.isnan(got), nan) and same_bits(got[~nan], want[~nan])
