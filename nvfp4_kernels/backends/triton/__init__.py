"""The ``triton`` backend: the fast path on GPUs without FP4 tensor cores (SM80+).

This module only declares what the backend needs; kernels live in submodules imported on first
use, so ``import nvfp4_kernels`` never imports Triton.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import torch

from nvfp4_kernels.backends import registry

OPS = frozenset({"quantize", "quantize_computed_scale", "dequantize", "gemm", "gemm_w4a16",
                 "kv_cache_write", "kv_cache_gather", "attention_decode"})

# op -> (submodule, function); submodules import triton, so they load on first use only.
_IMPLS = {
    "quantize": ("quantize", "quantize"),
    "quantize_computed_scale": ("quantize", "quantize_computed_scale"),
    "dequantize": ("dequantize", "dequantize"),
    "gemm": ("gemm", "gemm"),
    "gemm_w4a16": ("gemm", "gemm_w4a16"),
    "kv_cache_write": ("kv_cache", "kv_cache_write"),
    "kv_cache_gather": ("kv_cache", "kv_cache_gather"),
    "attention_decode": ("attention", "attention_decode"),
}


def why_unavailable(device: torch.device) -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton backend needs the triton package (pip install triton)"
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") == "1":
            return None
        return "triton backend runs on CPU tensors only under TRITON_INTERPRET=1 (tests)"
    if device.type != "cuda":
        return f"triton backend needs a CUDA tensor, got {device.type}"
    major, minor = registry.capability(device)
    if major < 8:
        return f"triton backend needs SM80+, this GPU is SM{major}{minor}"
    return None


def get(op: str):
    module, name = _IMPLS[op]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
