"""The NVFP4 storage layout: block size, nibble packing, and the two scale layouts.

What DESIGN §2 fixes about *where* bits go (as opposed to ``reference.py``, which fixes what
values they hold): ``data`` packs element 2i in the low nibble of byte i; ``linear`` scales are
[R, C/16]; ``swizzled`` scales are the 128x4 layout CUTLASS's block-scaled GEMM reads. Pure
PyTorch and shape arithmetic; the checks, ops, the ``NVFP4`` container and the kernel launchers
import their sizes from here, so each is defined once.
"""

from __future__ import annotations

import torch

BLOCK = 16          # elements sharing one e4m3 scale
SWIZZLE_ROWS = 128  # row tile of the swizzled scale layout
SWIZZLE_COLS = 4    # scale-column tile of the swizzled scale layout


def ceil_to(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes [..., C] -> bytes [..., C/2]: element 2i in the low nibble, 2i+1 in the high."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_e2m1(data: torch.Tensor) -> torch.Tensor:
    """bytes [..., C/2] -> uint8 codes [..., C]."""
    codes = torch.stack([data & 0xF, data >> 4], dim=-1)
    return codes.reshape(*data.shape[:-1], data.shape[-1] * 2)


def swizzled_shape(rows: int, scale_cols: int) -> tuple[int, int]:
    return ceil_to(rows, SWIZZLE_ROWS), ceil_to(scale_cols, SWIZZLE_COLS)


def swizzle_scales(scale: torch.Tensor) -> torch.Tensor:
    """Linear [R, C/16] scales -> the 128x4 swizzled layout CUTLASS reads, as a zero-padded
    [ceil128(R), ceil4(C/16)] tensor whose bytes in memory order are the swizzled order:
    offset(r, c) = ((r//128)*(Cp/4) + c//4)*512 + (r%32)*16 + ((r//32)%4)*4 + c%4."""
    rows, cols = scale.shape
    rp, cp = swizzled_shape(rows, cols)
    padded = torch.zeros((rp, cp), dtype=scale.dtype, device=scale.device)
    padded[:rows, :cols] = scale
    # r = rb*128 + r4*32 + r32, c = cb*4 + c4  ->  memory order (rb, cb, r32, r4, c4)
    tiles = padded.view(rp // 128, 4, 32, cp // 4, 4).permute(0, 3, 2, 1, 4)
    return tiles.contiguous().view(rp, cp)


def unswizzle_scales(scale: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of swizzle_scales: swizzled bytes -> linear [rows, cols] (cols = C/16)."""
    rp, cp = swizzled_shape(rows, cols)
    if scale.numel() != rp * cp:
        raise ValueError(f"scale: swizzled scales for {rows}x{cols} need {rp * cp} elements "
                         f"({rp}x{cp}), got shape {tuple(scale.shape)}")
    tiles = scale.reshape(rp // 128, cp // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    return tiles.reshape(rp, cp)[:rows, :cols].contiguous()
