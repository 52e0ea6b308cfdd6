"""The ``cutlass`` backend: CUTLASS block-scaled FP4 GEMM on SM100/SM120 tensor cores."""

from __future__ import annotations

import torch

from nvfp4_kernels import _extension

OPS = frozenset()  # filled in as the extension's SM100/SM120 kernels land


def why_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"cutlass backend needs a CUDA tensor, got {device.type}"
    major, minor = torch.cuda.get_device_capability(device)
    if major not in (10, 12):
        return f"cutlass backend needs SM100/SM120, this GPU is SM{major}{minor}"
    return _extension.why_missing()


def get(op: str):
    raise NotImplementedError(op)
