"""Small launch helpers shared by the Triton launchers (no GPU query at import)."""

from __future__ import annotations

import contextlib
import functools
import os

import torch


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (CPU tensors, numpy semantics)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def grid_device(t: torch.Tensor):
    """Launch on t's GPU (Triton launches on the current device, not the tensor's)."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


@functools.cache
def sm_count(device_type: str, index: int | None) -> int:
    """Streaming multiprocessors of the device; a small stand-in off-GPU (interpreter)."""
    if device_type != "cuda":
        return 4
    return torch.cuda.get_device_properties(index).multi_processor_count
