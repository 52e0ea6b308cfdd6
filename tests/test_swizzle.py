"""The 128x4 swizzled scale layout against DESIGN's byte-offset formula, at padded shapes."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk


def formula_offsets(rows: int, cols: int) -> torch.Tensor:
    """DESIGN §2: offset(r, c) = ((r//128)*(Cp/4) + c//4)*512 + (r%32)*16 + ((r//32)%4)*4 + c%4."""
    cp = (cols + 3) // 4 * 4
    r = torch.arange(rows).unsqueeze(1)
    c = torch.arange(cols).unsqueeze(0)
    return ((r // 128) * (cp // 4) + c // 4) * 512 + (r % 32) * 16 + ((r // 32) % 4) * 4 + c % 4


def random_scales(rows, cols, seed):
    gen = torch.Generator().manual_seed(seed)
    # Nonzero random bytes that are valid e4m3 numbers (0x01..0x7e), so padding zeros stand out.
    return torch.randint(1, 0x7F, (rows, cols), generator=gen, dtype=torch.uint8)


@pytest.mark.parametrize("rows", [1, 90, 128, 150, 5376])
@pytest.mark.parametrize("cols", [1, 3, 5, 336])
def test_swizzle_matches_offset_formula(rows, cols):
    raw = random_scales(rows, cols, rows * 1000 + cols)
    s = nk.swizzle_scales(raw.view(torch.float8_e4m3fn))
    rp, cp = (rows + 127) // 128 * 128, (cols + 3) // 4 * 4
    assert s.shape == (rp, cp) and s.dtype == torch.float8_e4m3fn and s.is_contiguous()
    flat = s.view(torch.uint8).reshape(-1)
    offsets = formula_offsets(rows, cols)
    assert torch.equal(flat[offsets.reshape(-1)], raw.reshape(-1))
    # Every byte not addressed by a real (r, c) is padding and must be zero.
    padding = torch.ones(rp * cp, dtype=torch.bool)
    padding[offsets.reshape(-1)] = False
    assert int(padding.sum()) == rp * cp - rows * cols
    assert torch.all(flat[padding] == 0)
    back = nk.unswizzle_scales(s, rows, cols)
    assert torch.equal(back.view(torch.uint8), raw)


def test_quantize_swizzled_equals_swizzle_of_linear():
    x = torch.randn(150, 5 * 16)
    lin = nk.quantize(x, scale_layout="linear")
    swz = nk.quantize(x, scale_layout="swizzled")
    assert torch.equal(swz.scale.view(torch.uint8), nk.swizzle_scales(lin.scale).view(torch.uint8))


def test_unswizzle_rejects_wrong_size():
    s = torch.zeros(128, 4, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="scale"):
        nk.unswizzle_scales(s, 129, 4)


def test_layout_conversion_on_the_container():
    x = torch.randn(3, 7, 48)
    q = nk.quantize(x, scale_layout="linear")
    swz = q.with_scale_layout("swizzled")
    assert swz.scale.shape == (128, 4)
    again = swz.with_scale_layout("linear")
    assert again.scale.shape == q.scale.shape
    assert torch.equal(again.scale.view(torch.uint8), q.scale.view(torch.uint8))
