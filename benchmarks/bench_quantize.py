"""NVFP4 quantize (given and computed global scale, swizzled and linear scales) per backend, as a
fraction of the device copy bandwidth measured in the same run (dequantize: bench_dequantize.py).

    python benchmarks/bench_quantize.py [--shape 8192 5376] [--backends triton cuda]
                                        [--graph] [--sweep] [--out DIR]

--graph times CUDA-graph replays over the rotated inputs (harness.graph_ms; launch overhead
excluded); without it, do_bench over rotated inputs. --sweep also times every Triton tile candidate
(``backends.triton.quantize.CANDIDATES``) so the default can be set from measurements.
Bytes moved: x read, packed data and scales written (dequantize: bench_dequantize.py). The
computed-scale quantize reads x twice (amax, then quantize), but is charged the same bytes: its
fraction of copy bandwidth is what the caller sees. Its ``ceiling`` column is that charge over
the bytes a two-pass quantize must move when nothing is reused from L2 (x twice, outputs once):
the fraction it would reach if both passes ran at copy bandwidth (docs/performance.md). The
``amax`` rows time the first pass alone (``nk.global_scale``), charged one read of x.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import benchmarking as harness


def run(args):
    device = harness.setup_device(args)
    import nvfp4_kernels as nk
    from nvfp4_kernels import layout
    from nvfp4_kernels.backends import registry

    rows_, cols = (64, 256) if args.smoke else args.shape
    dtype = torch.float16 if device.type == "cpu" else torch.bfloat16
    graph = args.graph and device.type == "cuda"

    def make():
        x = torch.randn(rows_, cols, device=device, dtype=dtype)
        return x, nk.global_scale(x)
    inputs = harness.rotated(make)

    def timed(fn, inputs_):
        return harness.measure(fn, inputs_, args, graph)

    srows, scols = layout.swizzled_shape(rows_, cols // layout.BLOCK)
    nbytes = {"swizzled": rows_ * cols * 2 + rows_ * cols // 2 + srows * scols,
              "linear": rows_ * cols * 2 + rows_ * cols // 2 + rows_ * cols // 16}
    copy_bw = harness.copy_bandwidth(nbytes["swizzled"], device, args)
    auto = {op: registry.choose(op, device, (dtype,))[0]
            for op in ("quantize", "quantize_computed_scale")}
    print(f"automatic choice here: {auto}")
    x_size = torch.empty((), dtype=dtype).element_size()
    # The amax pass alone (the first half of a computed-scale quantize; backend-independent).
    rows = harness.bandwidth_rows({"amax": timed(lambda x, gs: nk.global_scale(x), inputs)},
                                  rows_ * cols * x_size, copy_bw, rows=rows_, cols=cols,
                                  dtype=str(dtype), timing="cuda_graph" if graph else "do_bench")
    for backend in args.backends:
        reason = registry.why_not(backend, "quantize", device, (dtype,))
        if reason is not None:
            print(f"{backend}: skipped ({reason})")
            continue
        for layout in ("swizzled", "linear"):
            fields = dict(rows=rows_, cols=cols, dtype=str(dtype), backend=backend,
                          layout=layout, timing="cuda_graph" if graph else "do_bench")
            given = timed(lambda x, gs: nk.quantize(x, gs, scale_layout=layout, backend=backend),
                          inputs)
            computed = timed(lambda x, gs: nk.quantize(x, scale_layout=layout, backend=backend),
                             inputs)
            rows += harness.bandwidth_rows({"quantize": given}, nbytes[layout], copy_bw,
                                           scale="given", **fields,
                                           auto_choice=auto["quantize"] == backend)
            ceiling = nbytes[layout] / (nbytes[layout] + rows_ * cols * x_size)
            # (the computed-scale quantize is its own op, nvfp4::quantize_computed_scale, with
            # its own automatic choice: the cuda backend's amax + quantize where it is built)
            rows += harness.bandwidth_rows(
                {"quantize": computed}, nbytes[layout], copy_bw, scale="computed",
                ceiling=ceiling, **fields,
                auto_choice=auto["quantize_computed_scale"] == backend)
    if args.sweep and "triton" in args.backends and registry.why_not(
            "triton", "quantize", device, (dtype,)) is None:
        from nvfp4_kernels.backends.triton import quantize as tq
        for cand in tq.CANDIDATES:
            ms = timed(lambda x, gs, c=cand: tq.quantize(x, gs, "swizzled", config=c), inputs)
            rows += harness.bandwidth_rows({"quantize": ms}, nbytes["swizzled"], copy_bw,
                                           backend="triton", scale="given", rows=rows_,
                                           cols=cols, layout="swizzled", config=str(cand),
                                           timing="cuda_graph" if graph else "do_bench")
        from nvfp4_kernels.backends.triton import amax as tamax
        for block, per_sm in tamax.CANDIDATES:
            ms = timed(lambda x, gs, b=block, p=per_sm: tamax.global_scale(
                x, block=b, programs_per_sm=p), inputs)
            rows += harness.bandwidth_rows({"amax": ms}, rows_ * cols * x_size, copy_bw,
                                           backend="triton", rows=rows_, cols=cols,
                                           config=str((block, per_sm)),
                                           timing="cuda_graph" if graph else "do_bench")
    harness.write_results("bench_quantize", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=2, default=[8192, 5376])
    p.add_argument("--backends", nargs="+", default=["triton", "cuda"],
                   help="backends to time (those that cannot run here are skipped)")
    p.add_argument("--graph", action="store_true", help="CUDA-graph timing")
    p.add_argument("--sweep", action="store_true", help="time every Triton tile candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
