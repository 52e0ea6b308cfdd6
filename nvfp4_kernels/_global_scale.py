"""Global scales and GEMM alphas computed with device operations only.

Nothing here builds a tensor from host memory (``torch.tensor(2688., device=...)`` copies from
pageable memory, which a CUDA graph cannot capture) or reads a value back, so every function is
CUDA-graph capturable and sync-free. The arithmetic is ``reference.global_scale``'s (finite
elements' amax, ``min(2688 / amax, FLT_MAX)``, 1 when amax is 0); on a GPU with Triton one fused
kernel computes the same bits.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import reference as ref


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """Encode-direction global scale of x as a 0-dim float32 tensor on x's device.

    On a GPU with Triton: one fill and one kernel (the amax and the division fused); otherwise
    the reference's few device ops."""
    # Under torch.compile the plain torch ops below are traced instead (inductor fuses them);
    # the hand-written kernels are for eager calls and captured graphs.
    if x.is_cuda and x.numel() and not torch.compiler.is_compiling():
        try:
            from nvfp4_kernels.backends.triton import amax as triton_amax
        except ImportError:
            pass
        else:
            return triton_amax.global_scale(x)
    return ref.global_scale(x)


def as_global_scale(value, device) -> torch.Tensor:
    """A tensor global scale as a 0-dim view; a Python number as a 0-dim float32 tensor made by
    a fill on the device (no host-to-device copy)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.numel() != 1:
            return value  # (a wrong size is reported by the op's check, naming the argument)
        return value.reshape(())
    return torch.full((), float(value), dtype=torch.float32, device=device)


def inverse(gs: torch.Tensor) -> torch.Tensor:
    """1/gs in float32 with an IEEE division (the decode-direction scale, = ModelOpt's
    weight_scale_2 / input_scale)."""
    return torch.ones_like(gs, dtype=torch.float32).div_(gs)
