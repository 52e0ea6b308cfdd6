"""CUDA-graph timing for the memory-bound benchmarks (issue 11 asks for CUDA-graph numbers).

``triton.testing.do_bench_cudagraph`` replays one captured call many times, so launch overhead
(tens of microseconds of Python per call) is excluded and the number is the kernel's. One input
set only (a graph replays the addresses it captured): use it for shapes larger than L2.
"""

from __future__ import annotations

import torch


def time_graph_ms(fn, rep_ms: int = 100) -> float:
    """Median ms of fn() replayed from a CUDA graph."""
    import triton.testing

    fn()  # compile / choose backends outside the capture
    torch.cuda.synchronize()
    return float(triton.testing.do_bench_cudagraph(fn, rep=rep_ms, return_mode="median"))
