"""max |x| over finite elements, and the global scale 2688 / amax, in one kernel launch.

A quantize with a computed global scale must read x twice: once here, once to quantize (the
scale of every block depends on the amax of the whole tensor). This pass is a pure read, so it
is written to run at read bandwidth:

- a bounded grid (a few programs per SM) in which each program walks its share of x in a
  grid-stride loop and keeps its maximum in registers; programs then fold their maxima into one
  word with ``atomic_max`` (int32 bits of a non-negative float: int order == float order). A
  grid of one program per 4096 elements would send tens of thousands of atomics to that one
  word on large tensors; a few hundred cost nothing;
- the last program to finish (an atomic counter) reads the maximum and writes the result, so no
  second launch is needed.

Maximum is exact and order-independent, so the result is deterministic whatever order the
programs finish in. Programs walk x in address order, so the tail of x is what sits in L2 when
the quantize pass starts; ``quantize._quantize_kernel`` processes rows from the last one up to
read that tail from L2 (docs/performance.md, "Quantize with a computed scale").
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from nvfp4_kernels.backends.triton._launch import grid_device, launch, sm_count

_BLOCK = 4096          # elements per program per loop step: 32 per thread at 4 warps
_NUM_WARPS = 4
_PROGRAMS_PER_SM = 8   # enough loads in flight per SM to cover HBM latency
# (BLOCK, programs per SM) candidates that benchmarks/bench_quantize.py --sweep times on a GPU;
# the default above is reasoned (32 loads of 2 bytes per thread in flight, 32 warps per SM),
# not yet measured.
CANDIDATES = ((4096, 8), (8192, 4), (4096, 16), (2048, 16), (8192, 8))


@triton.jit
def _amax_kernel(x_ptr, ws_ptr, out_ptr, numel, STEPS, GLOBAL_SCALE: tl.constexpr,
                 BLOCK: tl.constexpr):
    """ws: int32[2] zeros (running max bits, finished-program count). out: float32[1], amax or
    (GLOBAL_SCALE) min(2688 / amax, FLT_MAX), 1 when amax == 0."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    best = tl.zeros([BLOCK], dtype=tl.float32)
    # STEPS is a runtime int: under Triton 3.6's interpreter `range` over it needs
    # _launch.interpreting()'s patch, which every interpreted launch applies first.
    for step in range(0, STEPS):
        offs = (pid + step * programs).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        x = tl.abs(tl.load(x_ptr + offs, mask=offs < numel, other=0.0).to(tl.float32))
        # Non-finite elements are ignored (x == x is false for NaN; inf is not < inf).
        best = tl.maximum(best, tl.where((x == x) & (x < float("inf")), x, 0.0))
    tl.atomic_max(ws_ptr, tl.max(best, axis=0).to(tl.int32, bitcast=True))
    # acq_rel (Triton's default): the last program's increment sees every earlier maximum.
    done = tl.atomic_add(ws_ptr + 1, 1)
    # Every program reads the running maximum (one more atomic each); only the last program's
    # read is complete, and only it stores. A masked store rather than `if`: Triton 3.6's
    # interpreter cannot branch on a tensor under numpy 2.5.
    amax = tl.atomic_max(ws_ptr, 0).to(tl.float32, bitcast=True)  # an atomic read
    result = tl.full([1], 1.0, tl.float32) * amax
    if GLOBAL_SCALE:
        gs = tl.math.div_rn(tl.full([1], 2688.0, tl.float32), result)
        gs = tl.minimum(gs, 3.4028234663852886e38)
        result = tl.where(result == 0.0, 1.0, gs)
    last = tl.full([1], 1, tl.int1) & (done == programs - 1)
    tl.store(out_ptr + tl.arange(0, 1), result, mask=last)


def _reduce(x: torch.Tensor, global_scale: bool, block: int = _BLOCK,
            programs_per_sm: int = _PROGRAMS_PER_SM) -> torch.Tensor:
    flat = x.reshape(-1)
    numel = flat.numel()
    if not numel:
        return torch.full((), 1.0 if global_scale else 0.0, dtype=torch.float32, device=x.device)
    ws = torch.zeros(2, dtype=torch.int32, device=x.device)
    out = torch.empty((), dtype=torch.float32, device=x.device)
    blocks = triton.cdiv(numel, block)
    programs = min(blocks, programs_per_sm * sm_count(x.device.type, x.device.index))
    with grid_device(x):
        launch(_amax_kernel, (programs,),
               (flat, ws, out, numel, triton.cdiv(blocks, programs), global_scale, block),
               num_warps=_NUM_WARPS)
    return out


def amax(x: torch.Tensor) -> torch.Tensor:
    """max |x| over finite elements as a 0-dim float32 tensor; one fill and one kernel, no sync."""
    return _reduce(x, False)


def global_scale(x: torch.Tensor, *, block: int = _BLOCK,
                 programs_per_sm: int = _PROGRAMS_PER_SM) -> torch.Tensor:
    """448*6/amax(|x|) clamped to FLT_MAX, 1.0 when all zero, non-finite elements ignored (as
    ``reference.global_scale``): one fill and one kernel, no host sync.

    block, programs_per_sm: the launch shape (benchmark sweeps; see CANDIDATES)."""
    return _reduce(x, True, block, programs_per_sm)


__all__ = ["amax", "global_scale"]
