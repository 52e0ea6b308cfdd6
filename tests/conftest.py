"""Shared test helpers: devices, fresh random data, comparisons that treat -0 as 0."""

from __future__ import annotations

import pytest
import torch

from nvfp4_kernels.backends import registry

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _fresh_backend_choice(monkeypatch):
    """Tests may set NVFP4_BACKEND; never let one test's cached choice leak into another."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    registry.clear_cache()
    yield
    registry.clear_cache()


def canonical_codes(data: torch.Tensor) -> torch.Tensor:
    """Packed E2M1 bytes with negative zero (0x8) rewritten as 0x0, nibble by nibble."""
    lo, hi = data & 0xF, data >> 4
    lo = torch.where(lo == 8, torch.zeros_like(lo), lo)
    hi = torch.where(hi == 8, torch.zeros_like(hi), hi)
    return lo | (hi << 4)


def assert_same_codes(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == torch.uint8 and actual.shape == expected.shape
    a, e = canonical_codes(actual.cpu()), canonical_codes(expected.cpu())
    bad = (a != e).nonzero()
    assert bad.numel() == 0, f"{bad.shape[0]} bytes differ, first at {bad[0].tolist()}: " \
                             f"{a[tuple(bad[0])]:#04x} vs {e[tuple(bad[0])]:#04x}"


def assert_same_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bitwise equality for any dtype (fp8 included), shapes too."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a = actual.cpu().contiguous().view(torch.uint8)
    e = expected.cpu().contiguous().view(torch.uint8)
    assert torch.equal(a, e), f"{int((a != e).sum())} bytes differ"


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double().cpu()
    return float((out.double().cpu() - ref).norm() / ref.norm().clamp_min(1e-300))
