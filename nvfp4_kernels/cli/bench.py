"""``nvfp4-kernels bench``: a quick microbenchmark of quantize, dequantize and GEMM.

Runs on the GPU when there is one (CUDA-event timing, median of repeats) and on the CPU
reference otherwise (small default shapes, wall-clock median), so it is the README's "main job"
on any machine. The full comparative benchmarks (cuBLAS, FP8, int4 baselines, plots) live in
``benchmarks/``; this command answers "what does this install do here, and how fast". Both use
one harness, ``nvfp4_kernels.benchmarking`` (this command its CUDA-event timer, which needs no
Triton).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from nvfp4_kernels import benchmarking

GPU_SHAPES = "1x43008x5376,16x43008x5376,128x5376x21504,1024x16384x5376"
CPU_SHAPES = "1x256x512,16x256x512,64x512x512"
OPS = ("quantize", "dequantize", "gemm_w4a16", "gemm_w4a4")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time quantize/dequantize/GEMM at chosen shapes")
    p.add_argument("--shapes", default=None,
                   help="comma-separated MxNxK (weight is [N, K]); default depends on device: "
                        f"GPU {GPU_SHAPES}; CPU {CPU_SHAPES}")
    p.add_argument("--ops", default=",".join(OPS),
                   help=f"comma-separated subset of {','.join(OPS)} (default: all)")
    p.add_argument("--device", default=None, choices=["cuda", "cpu"],
                   help="where to run (default: cuda if available, else cpu)")
    p.add_argument("--backend", default=None, choices=["cutlass", "cuda", "triton", "reference"],
                   help="force a backend (default: the automatic choice); 'nvfp4-kernels info' "
                        "says which can run here")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"],
                   help="activation dtype (default: bfloat16)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="timed runs per case, after one warm-up (default: 50 on GPU, 5 on CPU)")
    p.add_argument("--csv", default=None, metavar="PATH", help="write rows to this CSV file")
    p.add_argument("--json", default=None, metavar="PATH", help="write rows to this JSON file")
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"--shapes: expected MxNxK, got {item!r}")
        m, n, k = (int(p) for p in parts)
        if k % 16:
            raise ValueError(f"--shapes: K must be a multiple of 16 (NVFP4 blocks), got "
                             f"K={k} in {item!r}")
        shapes.append((m, n, k))
    return shapes


def cases(m, n, k, dtype, device, backend):
    """(op, fn, bytes moved, flops) for each op at one shape, on fresh random data."""
    import nvfp4_kernels as nk

    a = torch.randn(m, k, device=device).to(dtype)
    w = nk.quantize(torch.randn(n, k, device=device), backend=backend)
    qa = nk.quantize(a, backend=backend)
    gs = nk.global_scale(a)
    packed = m * k // 2 + m * k // 16
    weight_bytes = n * k // 2 + n * k // 16
    flops = 2 * m * n * k
    yield "quantize", lambda: nk.quantize(a, gs, backend=backend), a.numel() * a.element_size() \
        + packed, 0
    yield "dequantize", lambda: nk.dequantize(qa, dtype, backend=backend), packed + m * k * 2, 0
    yield "gemm_w4a16", lambda: nk.gemm(a, w, backend=backend), \
        weight_bytes + m * k * 2 + m * n * 2, flops
    yield "gemm_w4a4", lambda: nk.gemm(qa, w, backend=backend), \
        weight_bytes + packed + m * n * 2, flops


def run(args) -> int:
    import nvfp4_kernels as nk

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda requested, but torch sees no CUDA GPU here")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shapes = parse_shapes(args.shapes or (GPU_SHAPES if device.type == "cuda" else CPU_SHAPES))
    ops = [o for o in args.ops.split(",") if o]
    unknown = set(ops) - set(OPS)
    if unknown:
        raise ValueError(f"--ops: unknown {sorted(unknown)}; choose from {OPS}")
    repeats = args.repeats or (50 if device.type == "cuda" else 5)
    dtype = getattr(torch, args.dtype)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)"
    rows = []
    for m, n, k in shapes:
        for op, fn, nbytes, flops in cases(m, n, k, dtype, device, args.backend):
            if op not in ops:
                continue
            backend = nk.backends.registry.choose(
                "gemm" if op == "gemm_w4a4" else op, device,
                (dtype,) if op != "gemm_w4a16" else (dtype, dtype), args.backend)[0]
            ms = benchmarking.event_ms(fn, device, repeats)
            rows.append({"op": op, "backend": backend, "M": m, "N": n, "K": k,
                         "dtype": args.dtype, "ms": ms,
                         "GB/s": nbytes / ms / 1e6,
                         "TFLOP/s": flops / ms / 1e9 if flops else None,
                         "device": str(device), "gpu": gpu, "torch": torch.__version__,
                         "nvfp4_kernels": nk.__version__})
    print_table(rows)
    if args.csv:
        benchmarking.write_csv(args.csv, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(rows, out=None) -> None:
    out = out or sys.stdout
    cols = ("op", "backend", "M", "N", "K", "ms", "GB/s", "TFLOP/s")
    cells = [[_cell(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)), file=out)
    if rows:
        print(f"device: {rows[0]['gpu']}; torch {rows[0]['torch']}", file=out)
