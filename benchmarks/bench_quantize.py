"""NVFP4 quantize (given and computed global scale, swizzled and linear scales) per backend, as a
fraction of the device copy bandwidth measured in the same run (dequantize: bench_dequantize.py).

    python benchmarks/bench_quantize.py [--shape 8192 5376] [--backends triton cuda]
                                        [--graph] [--sweep] [--out DIR]

--graph times CUDA-graph replays over the rotated inputs (harness.graph_ms; launch overhead
excluded); without it, do_bench over rotated inputs. --sweep also times every Triton tile candidate
(``backends.triton.quantize.CANDIDATES``) so the default can be set from measurements.
Bytes moved: x read, packed data and scales written. The computed-scale quantize reads x twice (amax, then quantize), but is charged the same bytes: its
fraction of copy bandwidth is what the caller sees.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import torch  # noqa: E402


def run(args):
    device = harness.setup_device(args)
    import nvfp4_kernels as nk
    from nvfp4_kernels import reference as ref
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

    srows, scols = ref.swizzled_shape(rows_, cols // 16)
    nbytes = {"swizzled": rows_ * cols * 2 + rows_ * cols // 2 + srows * scols,
              "linear": rows_ * cols * 2 + rows_ * cols // 2 + rows_ * cols // 16}
    copy_bw = harness.copy_bandwidth(nbytes["swizzled"], device, args)
    auto = {op: registry.choose(op, device, (dtype,))[0] for op in ("quantize",)}
    print(f"automatic choice here: {auto}")
    rows = []
    for backend in args.backends:
        reason = registry.why_not(backend, "quantize", device, (dtype,))
        if reason is not None:
            print(f"{backend}: skipped ({reason})")
            continue
        for layout in ("swizzled", "linear"):
            fields = dict(rows=rows_, cols=cols, dtype=str(dtype), backend=backend,
                          layout=layout, timing="cuda_graph" if graph else "do_bench",
                          auto_choice=auto["quantize"] == backend)
            given = timed(lambda x, gs: nk.quantize(x, gs, scale_layout=layout, backend=backend),
                          inputs)
            computed = timed(lambda x, gs: nk.quantize(x, scale_layout=layout, backend=backend),
                             inputs)
            rows += harness.bandwidth_rows({"quantize": given}, nbytes[layout], copy_bw,
                                           scale="given", **fields)
            rows += harness.bandwidth_rows({"quantize": computed}, nbytes[layout], copy_bw,
                                           scale="computed", **fields)
    if args.sweep and "triton" in args.backends and registry.why_not(
            "triton", "quantize", device, (dtype,)) is None:
        from nvfp4_kernels.backends.triton import quantize as tq
        for cand in tq.CANDIDATES:
            ms = timed(lambda x, gs, c=cand: tq.quantize(x, gs, "swizzled", config=c), inputs)
            rows += harness.bandwidth_rows({"quantize": ms}, nbytes["swizzled"], copy_bw,
                                           backend="triton", scale="given", rows=rows_,
                                           cols=cols, layout="swizzled", config=str(cand),
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
