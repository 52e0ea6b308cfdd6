"""The ``cutlass`` backend: CUTLASS block-scaled FP4 GEMM on SM100/SM120 tensor cores.

W4A4 ``gemm`` runs csrc/gemm_sm120.cu (sm_120a) or csrc/gemm_sm100.cu (sm_100a); ``quantize``
is the ``cuda`` backend's function (the extension's CUDA kernel, which on those targets uses the
hardware E2M1 conversion).
These paths are compile-verified (their SASS is checked in CI) but have not run on Blackwell
hardware: see docs/cutlass.md.

The CUTLASS kernel takes one device-resident alpha and no bias; a per-column alpha or a bias is
applied afterwards in float32 (one extra rounding of the GEMM output, well inside the accuracy
bar of DESIGN §2).
"""

from __future__ import annotations

import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.backends import cuda, registry

OPS = frozenset({"gemm", "quantize", "quantize_computed_scale"})
_GEMM_ARCH = {10: ("sm_100a", "HAS_GEMM_SM100", "gemm_sm100"),
              12: ("sm_120a", "HAS_GEMM_SM120", "gemm_sm120")}


def why_unavailable(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"cutlass backend needs a CUDA tensor, got {device.type}"
    major, minor = registry.capability(device)
    if major not in _GEMM_ARCH:
        return f"cutlass backend needs SM100/SM120, this GPU is SM{major}{minor}"
    reason = _extension.why_missing(warn=True)
    if reason:
        return reason
    _, flag, _ = _GEMM_ARCH[major]
    want, built = f"sm_{major}{minor}a", _extension.compiled_archs()
    if want not in built or not getattr(_extension.extension(), flag, False):
        return (f"cutlass backend needs SM100/SM120 and an extension built with {want}; "
                f"this build has: {', '.join(built) or 'no CUDA archs'}")
    return None


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    major, _ = registry.capability(a.device)
    fn = getattr(_extension.extension(), _GEMM_ARCH[major][2])
    if alpha.numel() == 1 and bias is None:
        return fn(a, b, a_scale, b_scale, alpha.reshape(()).contiguous(), out_dtype)
    one = torch.ones((), dtype=torch.float32, device=a.device)
    scalar = alpha if alpha.numel() == 1 else one
    out = fn(a, b, a_scale, b_scale, scalar.reshape(()).contiguous(), out_dtype)
    acc = out.float()
    if alpha.numel() > 1:
        acc = acc * alpha.reshape(-1)
    if bias is not None:
        acc = acc + bias.float()
    return acc.to(out_dtype)


# The quantize of this backend *is* the cuda backend's kernel (one implementation): built for
# sm_100a/sm_120a it converts to E2M1 in hardware, which is why the cutlass backend lists it.
quantize = cuda.quantize
quantize_computed_scale = cuda.quantize_computed_scale
why_unsupported = cuda.why_unsupported


def get(op: str):
    return globals()[op]
