"""NVFP4 dequantize (weights -> bf16/fp16) per backend and scale layout, as a fraction of the
device copy bandwidth measured in the same run.

    python benchmarks/bench_dequantize.py [--shapes 43008x5376 5376x21504] [--dtypes bfloat16]
                                          [--backends triton cuda] [--sweep] [--out DIR]

Times are CUDA-graph replays over rotated inputs (harness.graph_ms). Bytes moved: packed data
and scales read, the output written. Rows: `dequantize` (the exact op, lut * s / gs, per
backend) and, for Triton, `dequantize_scaled` (lut * s * alpha[row], what the prefill GEMM route
runs per weight chunk). --sweep times every Triton tile candidate
(backends.triton.dequantize.CANDIDATES) so the default can be set from measurements.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import benchmarking as harness

SHAPES = ("43008x5376", "5376x21504")  # Gemma-4-31B gate_up and down weights [N, K]


def _packed(rows, cols, layout, device):
    """Random codes and scales (dequantize time does not depend on the values)."""
    from nvfp4_kernels import reference as ref
    data = torch.randint(0, 256, (rows, cols // 2), dtype=torch.uint8, device=device)
    srows, scols = ref.swizzled_shape(rows, cols // 16) if layout == "swizzled" else \
        (rows, cols // 16)
    scale = torch.randint(0, 0x7F, (srows, scols), dtype=torch.uint8, device=device)
    gs = torch.tensor(2688.0 / 3.0, device=device)
    return data, scale.view(torch.float8_e4m3fn), gs


def run(args):
    device = harness.setup_device(args)
    import nvfp4_kernels as nk  # noqa: F401  (registers the ops)
    from nvfp4_kernels.backends import registry
    from nvfp4_kernels.backends.triton import dequantize as tdq

    shapes = [(64, 256)] if args.smoke else [tuple(int(v) for v in s.split("x"))
                                            for s in args.shapes]
    dtypes = [torch.float16] if device.type == "cpu" else \
        [getattr(torch, d) for d in args.dtypes]
    graph = device.type == "cuda"
    timing = "cuda_graph" if graph else "wall_clock_interpreter"
    rows = []
    for n_rows, cols in shapes:
        for dtype in dtypes:
            nbytes_out = n_rows * cols * dtype.itemsize
            copy_bw = harness.copy_bandwidth(n_rows * cols // 2 + nbytes_out, device, args)
            auto = registry.choose("dequantize", device, (dtype,))[0]
            for layout in ("swizzled", "linear"):
                inputs = harness.rotated(lambda: _packed(n_rows, cols, layout, device))
                nbytes = n_rows * cols // 2 + inputs[0][1].numel() + nbytes_out
                fields = dict(rows=n_rows, cols=cols, dtype=str(dtype), layout=layout,
                              timing=timing, auto_choice=auto)
                for backend in args.backends:
                    reason = registry.why_not(backend, "dequantize", device, (dtype,))
                    if reason is not None:
                        print(f"{backend}: skipped ({reason})")
                        continue
                    ms = harness.measure(
                        lambda d, s, g, b=backend: torch.ops.nvfp4.dequantize(
                            d, s, g, layout, dtype, b), inputs, args, graph)
                    rows += harness.bandwidth_rows({"dequantize": ms}, nbytes, copy_bw,
                                                   backend=backend, **fields)
                if "triton" in args.backends:
                    alpha = torch.full((n_rows,), 1e-3, device=device)
                    ms = harness.measure(
                        lambda d, s, g: tdq.dequantize_scaled(d, s, alpha, layout, dtype),
                        inputs, args, graph)
                    rows += harness.bandwidth_rows({"dequantize_scaled": ms}, nbytes, copy_bw,
                                                   backend="triton", **fields)
                    if args.sweep:
                        for cand in tdq.CANDIDATES:
                            ms = harness.measure(
                                lambda d, s, g, c=cand: tdq.dequantize(d, s, g, layout, dtype,
                                                                       config=c),
                                inputs, args, graph)
                            rows += harness.bandwidth_rows({"dequantize": ms}, nbytes, copy_bw,
                                                           backend="triton", config=str(cand),
                                                           **fields)
    harness.write_results("bench_dequantize", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), help="ROWSxCOLS of the weight")
    p.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"],
                   choices=["bfloat16", "float16", "float32"])
    p.add_argument("--backends", nargs="+", default=["triton", "cuda"],
                   help="backends to time (those that cannot run here are skipped)")
    p.add_argument("--sweep", action="store_true", help="time every Triton tile candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
