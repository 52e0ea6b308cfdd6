"""Helpers for the Triton backend tests (imported by name: this folder has no __init__.py)."""

from __future__ import annotations

import torch


def poisoned(shape, dtype, device):
    """An output buffer full of NaN (0xFF bytes for u8/e4m3) so unwritten elements are caught."""
    if dtype in (torch.uint8, torch.float8_e4m3fn):
        return torch.full(shape, 0xFF, dtype=torch.uint8, device=device).view(dtype)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def assert_same_codes(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Packed E2M1 bytes equal, treating -0 (nibble 0x8) as 0."""
    def canon(d):
        lo, hi = d & 0xF, d >> 4
        lo = torch.where(lo == 8, torch.zeros_like(lo), lo)
        hi = torch.where(hi == 8, torch.zeros_like(hi), hi)
        return lo | (hi << 4)
    assert actual.dtype == torch.uint8 and actual.shape == expected.shape
    a, e = canon(actual.cpu()), canon(expected.cpu())
    bad = (a != e).nonzero()
    assert bad.numel() == 0, f"{bad.shape[0]} bytes differ, first at {bad[0].tolist()}"


def rel_error(actual: torch.Tensor, expected64: torch.Tensor) -> float:
    d = actual.cpu().double()
    return ((d - expected64).norm() / expected64.norm()).item()
