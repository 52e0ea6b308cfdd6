"""Triton backend tests: the interpreter on CPU tensors, compiled kernels on a GPU.

Triton decides at kernel definition whether it interprets, so one process does one or the other:
without a GPU (CI) TRITON_INTERPRET=1 is set here, before any kernel module is imported, and the
tests run on CPU tensors; with a GPU they run compiled on "cuda". To run the interpreter suite on
a GPU machine too, start pytest with TRITON_INTERPRET=1 (benchmarks/run_device.sh does both).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

if importlib.util.find_spec("triton") is None:  # the backend cannot exist without it
    pytest.skip("triton is not installed (pip install 'nvfp4_kernels[triton]')",
                allow_module_level=True)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TRITON_DEVICES = ["cpu"] if INTERPRET else (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=TRITON_DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _interpreter_env(monkeypatch):
    """Other tests may delete TRITON_INTERPRET; the registry reads it per choice."""
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def gen():
    """A fresh, seeded generator per test (CPU; tensors are moved to the device after)."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
