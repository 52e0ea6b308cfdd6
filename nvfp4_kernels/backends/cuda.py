"""The ``cuda`` backend: generic CUDA kernels of the compiled extension, any SM80+ GPU."""

from __future__ import annotations

import torch

from nvfp4_kernels import _extension

OPS = frozenset()  # filled in as the extension's generic kernels land


def why_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"cuda backend needs a CUDA tensor, got {device.type}"
    reason = _extension.why_missing()
    if reason:
        return reason
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"cuda backend needs SM80+, this GPU is SM{major}{minor}"
    return None


def get(op: str):
    raise NotImplementedError(op)
