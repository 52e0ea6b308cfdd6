"""Helpers for the Triton backend tests (imported by name: this folder has no __init__.py).

The comparisons every backend's tests share (E2M1 codes with -0 as 0, relative error) live in
tests/conftest.py; this module adds what only kernel-level tests need.
"""

from __future__ import annotations

import torch

from tests.conftest import assert_same_codes, rel_error  # noqa: F401 (re-used by these tests)


def poisoned(shape, dtype, device):
    """An output buffer full of NaN (0xFF bytes for u8/e4m3) so unwritten elements are caught."""
    if dtype in (torch.uint8, torch.float8_e4m3fn):
        return torch.full(shape, 0xFF, dtype=torch.uint8, device=device).view(dtype)
    return torch.full(shape, float("nan"), dtype=dtype, device=device)
