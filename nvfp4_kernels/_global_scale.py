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


def in_graph(t: torch.Tensor) -> bool:
    """True while torch.compile traces or t's current stream captures a CUDA graph. Values
    derived from scales (inverses, alphas, filled constants) are cached between eager calls;
    in a graph they must be computed by the graph itself, so that it reads the live scales (and
    a fill recorded in a graph has not run yet, so its result cannot be cached)."""
    return torch.compiler.is_compiling() or (t.is_cuda and
                                             torch.cuda.is_current_stream_capturing())


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
    a fill on the device (no host-to-device copy; see ``constant``)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 or value.numel() != 1:
            return value  # (a wrong size is reported by the op's check, naming the argument)
        return value.reshape(())
    return constant(float(value), device)


def gemm_alpha(weight_alpha, gs: torch.Tensor) -> torch.Tensor:
    """The ``alpha`` output of ``quantize_computed_scale``: weight_alpha / gs (an IEEE float32
    division, as the cuda kernel divides), or an empty float32 vector without a weight_alpha."""
    if weight_alpha is None:
        return gs.new_empty((0,))
    return weight_alpha / gs


def inverse(gs: torch.Tensor) -> torch.Tensor:
    """1/gs in float32 with an IEEE division (the decode-direction scale, = ModelOpt's
    weight_scale_2 / input_scale)."""
    return torch.ones_like(gs, dtype=torch.float32).div_(gs)


# Python-number scales (``nk.quantize(x, 100.0)``, the KV cache's ``k_scale=0.5``) as device
# tensors. A fill per call is a kernel launch (~10 us of host time on the H100 host), and serving
# code passes the same few numbers on every call, so eager calls reuse one filled tensor per
# (value, device, shape). The cache is bounded, and an entry written in place since it was made
# (its version counter moved) is replaced. While a CUDA graph is captured or torch.compile
# traces, the fill is made afresh and not cached: a fill recorded in a graph has not run yet.
_CONSTANTS: dict = {}
_MAX_CONSTANTS = 64


_is_compiling = torch.compiler.is_compiling
_capturing = torch.cuda.is_current_stream_capturing


def constant(value: float, device: torch.device, shape=()) -> torch.Tensor:
    """A float32 tensor of `shape` holding `value` on `device` (a torch.device), made by a fill
    on the device (no host-to-device copy); eagerly, a cached one."""
    if _is_compiling():
        return torch.full(shape, value, dtype=torch.float32, device=device)
    key = (value, device, shape)
    hit = _CONSTANTS.get(key)
    # hit[2]: the device is a GPU (kept so that a hit reads no torch.device attribute, which
    # costs about a microsecond).
    if hit is not None and hit[0]._version == hit[1] and not (hit[2] and _capturing()):
        return hit[0]
    if device.type == "cuda" and _capturing():
        return torch.full(shape, value, dtype=torch.float32, device=device)
    # A normal tensor even under torch.inference_mode (where serving code runs): an inference
    # tensor has no version counter, so it could not be cached.
    with torch.inference_mode(False):
        t = torch.full(shape, value, dtype=torch.float32, device=device)
    if len(_CONSTANTS) >= _MAX_CONSTANTS:
        _CONSTANTS.clear()
    _CONSTANTS[key] = (t, t._version, device.type == "cuda")
    return t
