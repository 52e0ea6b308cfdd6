"""Global scales and GEMM alphas computed with device operations only.

Nothing here builds a tensor from host memory (``torch.tensor(2688., device=...)`` copies from
pageable memory, which a CUDA graph cannot capture) or reads a value back: constants enter as
Python scalars of torch ops, so every function is CUDA-graph capturable and sync-free.

The arithmetic is DESIGN §2's: ``gs = min(448 * 6 / amax, FLT_MAX)``, ``gs = 1`` when amax is 0,
in float32 with an IEEE division (``full(2688) / amax``; note that ``2688 / tensor`` in PyTorch is
``reciprocal(tensor) * 2688``, which rounds differently). Non-finite elements are ignored by the
amax, so one inf or NaN in an activation does not zero the whole tensor.
"""

from __future__ import annotations

import torch

ENCODE_MAX = 448.0 * 6.0  # e4m3 max * e2m1 max
FLT_MAX = torch.finfo(torch.float32).max


def amax_finite(x: torch.Tensor) -> torch.Tensor:
    """max |x| over the finite elements, 0-dim float32 on x's device (0 if there are none)."""
    if x.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=x.device)
    if x.is_cuda and not torch.compiler.is_compiling():
        try:
            from nvfp4_kernels.backends.triton import quantize as triton_quantize
        except ImportError:  # no triton: the torch version below (more passes over x)
            pass
        else:
            return triton_quantize.amax(x)  # one pass, non-finite elements skipped in-kernel
    a = x.detach().abs()
    return torch.where(torch.isfinite(a), a, 0).amax().float()


def from_amax(amax: torch.Tensor) -> torch.Tensor:
    """448*6/amax clamped to FLT_MAX, 1.0 where amax == 0 (float32, same shape as amax)."""
    amax = amax.float()
    gs = torch.full_like(amax, ENCODE_MAX).div_(amax).clamp_(max=FLT_MAX)
    return torch.where(amax == 0, 1.0, gs)


def global_scale(x: torch.Tensor) -> torch.Tensor:
    """Encode-direction global scale of x as a 0-dim float32 tensor on x's device.

    On a GPU with Triton: one fill and one kernel (the amax and the division fused); otherwise
    the amax and a few elementwise ops."""
    # Under torch.compile the plain torch ops below are traced instead (inductor fuses them);
    # the hand-written kernels are for eager calls and captured graphs.
    if x.is_cuda and x.numel() and not torch.compiler.is_compiling():
        try:
            from nvfp4_kernels.backends.triton import quantize as triton_quantize
        except ImportError:
            pass
        else:
            return triton_quantize.global_scale(x)
    return from_amax(amax_finite(x))


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
