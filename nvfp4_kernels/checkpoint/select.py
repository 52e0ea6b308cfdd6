"""Which linear weights get quantized, and which belong to one fused projection.

Selection is by module name (``model.layers.3.mlp.up_proj``), the same for the in-memory
``quantize_model`` and the streaming checkpoint writer, so both quantize the same layers.
"""

from __future__ import annotations

import re

BLOCK = 16

# Kept in high precision by default: embeddings (also the tied lm_head), the output head, norms
# and MoE routers (tiny, and vLLM's Gemma-4 path loads routers unquantized).
DEFAULT_EXCLUDE = r"(^|\.)([^.]*embed[^.]*|lm_head|[^.]*norm[^.]*|router|wte|wpe)(\.|$)"

# Sibling projections that serving engines fuse into one GEMM (vLLM: qkv_proj, gate_up_proj).
_FUSED = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv",
          "query": "qkv", "key": "qkv", "value": "qkv",
          "gate_proj": "gate_up", "up_proj": "gate_up"}


def _compile(name: str, pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{name}: invalid regular expression {pattern!r} ({exc})") from None


class Selector:
    """include/exclude are regexes searched in the module name; defaults always apply unless
    ``default_exclude=False``."""

    def __init__(self, include: str | None = None, exclude: str | None = None,
                 default_exclude: bool = True):
        self.include = _compile("include", include) if include else None
        patterns = ([DEFAULT_EXCLUDE] if default_exclude else []) + ([exclude] if exclude else [])
        self.exclude = [_compile("exclude", p) for p in patterns]

    def wants(self, module: str) -> bool:
        if self.include is not None and not self.include.search(module):
            return False
        return not any(p.search(module) for p in self.exclude)


def fused_group(module: str) -> str | None:
    """A key shared by the fused siblings of `module` (q/k/v, gate/up), or None."""
    parent, _, leaf = module.rpartition(".")
    tag = _FUSED.get(leaf)
    return f"{parent}.<{tag}>" if tag else None


def skip_reason(shape, dtype_is_float: bool) -> str | None:
    """Why a selected ``*.weight`` cannot be NVFP4 (None = quantizable)."""
    if len(shape) != 2:
        return f"not 2-D (shape {tuple(shape)})"
    if not dtype_is_float:
        return "not a floating-point tensor"
    if shape[1] % BLOCK:
        return f"K = {shape[1]} is not a multiple of {BLOCK}"
    return None
