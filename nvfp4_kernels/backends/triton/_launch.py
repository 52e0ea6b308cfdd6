"""Small launch helpers shared by the Triton launchers (no GPU query at import)."""

from __future__ import annotations

import contextlib
import functools
import os

import torch


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (CPU tensors, numpy semantics)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


_NO_SWITCH = contextlib.nullcontext()


def grid_device(t: torch.Tensor):
    """Launch on t's GPU (Triton launches on the current device, not the tensor's).

    Entering ``torch.cuda.device`` costs a few microseconds per launch even when it changes
    nothing; on the usual single-GPU decode path the tensor is already on the current device,
    so that case returns a shared no-op context instead."""
    if not t.is_cuda:
        return _NO_SWITCH
    index = t.get_device()
    if index == torch.cuda.current_device():
        return _NO_SWITCH
    return torch.cuda.device(index)


@functools.cache
def sm_count(device_type: str, index: int | None) -> int:
    """Streaming multiprocessors of the device; a small stand-in off-GPU (interpreter)."""
    if device_type != "cuda":
        return 4
    return torch.cuda.get_device_properties(index).multi_processor_count
