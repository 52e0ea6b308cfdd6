"""A few calls of one GEMM, for Nsight Compute (no timing of its own).

    ncu -k regex:decode_gemm -s 3 -c 1 --section SpeedOfLight --section Occupancy \\
        python benchmarks/profile_gemm.py --layer gate_up --m 1 --backend cuda
"""

from __future__ import annotations

import argparse

import torch

from nvfp4_kernels.benchmarking import GEMMA4_31B_LINEARS as LAYERS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="gate_up", choices=list(LAYERS))
    p.add_argument("--m", type=int, default=1)
    p.add_argument("--backend", default=None, help="force a backend (default: automatic)")
    p.add_argument("--w4a4", action="store_true", help="quantize the activations too")
    p.add_argument("--calls", type=int, default=5)
    args = p.parse_args(argv)
    import nvfp4_kernels as nk
    n, k = LAYERS[args.layer]
    w = nk.quantize(torch.randn(n, k, device="cuda", dtype=torch.bfloat16))
    a = torch.randn(args.m, k, device="cuda", dtype=torch.bfloat16)
    if args.w4a4:
        a = nk.quantize(a)
    for _ in range(args.calls):
        nk.gemm(a, w, backend=args.backend)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
