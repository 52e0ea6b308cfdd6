"""Inputs that cover everything a dequantize kernel can meet: every E2M1 code in every block,
every finite e4m3 scale byte (subnormals, 448, negative scales), and global scales at and around
the edges of the kernels' fast division (2**-100 .. 2**100), down to a subnormal gs."""

from __future__ import annotations

import torch

# Every finite e4m3 byte (0x7F and 0xFF are NaN): 254 values, both signs, zero, subnormals.
FINITE_E4M3 = torch.tensor([b for b in range(256) if b & 0x7F != 0x7F], dtype=torch.uint8)

# Global scales (float32, encode direction). Inside the fast-division range: 1, a typical
# weight's gs, the range ends; outside it (exact division per value): just past each end, the
# smallest gs the library computes (2688 / FLT_MAX), FLT_MAX, a subnormal gs.
GLOBAL_SCALES = (1.0, 2688.0 / 0.0371, 2.0 ** -100, 2.0 ** 100, 3.7e-3, 1.9e5,
                 2.0 ** -100 * 0.999, 2.0 ** 100 * 1.001, 7.9e-36, 3.4028234663852886e38, 1e-42)


def every_code_and_scale(rows: int, cols: int, gen: torch.Generator):
    """(data u8 [rows, cols/2], linear e4m3 scales [rows, cols/16]): each 16-value block holds
    all 16 E2M1 codes in a random order; scale bytes cycle through FINITE_E4M3 from a random
    start, so every byte appears once `rows * cols / 16 >= 254`."""
    assert cols % 16 == 0
    blocks = rows * cols // 16
    codes = torch.argsort(torch.rand(blocks, 16, generator=gen), dim=1).to(torch.uint8)
    codes = codes.reshape(rows, cols)
    data = codes[:, 0::2] | (codes[:, 1::2] << 4)
    start = int(torch.randint(0, len(FINITE_E4M3), (1,), generator=gen))
    idx = (torch.arange(blocks) + start) % len(FINITE_E4M3)
    scale = FINITE_E4M3[idx].reshape(rows, cols // 16).view(torch.float8_e4m3fn)
    return data.contiguous(), scale.contiguous()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (so -0 vs 0 and NaN payloads count), any float dtype."""
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    a, b = a.cpu(), b.cpu()
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
        a.view(ints[a.element_size()]), b.view(ints[b.element_size()]))
