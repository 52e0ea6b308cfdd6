"""NVFP4 GEMMs (W4A16 and W4A4) against cuBLAS bf16, cuBLASLt FP8 and tinygemm int4, all
measured in the same run, on the Gemma-4-31B layer shapes.

    python benchmarks/bench_gemm.py [--m 1 2 4 8 16 32 64 128 1024 8192] [--sweep] [--out DIR]

Every GPU time is per call from CUDA-graph replay over inputs rotated so they do not sit in L2
(harness.graph_ms); `w4a16_eager_ms` adds the eager per-call time of the public op. `w4a16` and
`w4a4` are the automatic backend choice (`auto_backend`); `triton_*` and `cuda_*` force one.
`triton_w4a16` / `triton_w4a4` are the triton backend as it dispatches (the FMA GEMV for
M <= plan.GEMV_MAX_M, the tensor-core kernel above); at M <= 16 `triton_gemv_w4a16` and
`triton_tc_w4a16` force each of the two kernels, to place GEMV_MAX_M.

--sweep also times every candidate in nvfp4_kernels/backends/triton/plan.py for W4A16 (the
GEMV candidates at M <= 16), so the tables can be replaced by measured winners.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import benchmarking as harness

# name: (N, K) of the weight [N, K]
LAYERS = harness.GEMMA4_31B_LINEARS
SMOKE_LAYERS = {"tiny": (64, 128)}
TINYGEMM_MAX_M = 1024  # beyond this tinygemm takes tens of ms per call


def _baselines(m, n, k, device, args):
    """{name: (ms, error)} for cuBLAS bf16, FP8 _scaled_mm and int4 tinygemm (CUDA graphs)."""
    res = {}
    res["cublas_bf16"] = harness.try_graph(
        lambda a, w: a @ w.T, harness.rotated(lambda: (
            torch.randn(m, k, device=device, dtype=torch.bfloat16),
            torch.randn(n, k, device=device, dtype=torch.bfloat16))), args)

    def fp8_inputs():
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device=device).to(torch.float8_e4m3fn)
        one = torch.ones((), device=device)
        return a, w, one
    if m >= 16:  # cuBLASLt FP8 wants M a multiple of 16
        res["scaled_mm_fp8"] = harness.try_graph(
            lambda a, w, one: torch._scaled_mm(a, w.T, scale_a=one, scale_b=one,
                                               out_dtype=torch.bfloat16),
            harness.rotated(fp8_inputs), args)

    if m <= TINYGEMM_MAX_M:
        def int4_inputs():
            packed = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=device)
            w = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
            sz = torch.randn(k // 128, n, 2, device=device, dtype=torch.bfloat16)
            return torch.randn(m, k, device=device, dtype=torch.bfloat16), w, sz
        try:
            inputs = harness.rotated(int4_inputs)
            res["tinygemm_int4_g128"] = harness.try_graph(
                lambda a, w, sz: torch.ops.aten._weight_int4pack_mm(a, w, 128, sz), inputs, args)
        except Exception as exc:  # noqa: BLE001 (signature differs across torch versions)
            res["tinygemm_int4_g128"] = (None, f"{type(exc).__name__}: {str(exc)[:160]}")
    return res


def run(args):
    device = harness.setup_device(args)
    from nvfp4_kernels import reference as ref
    from nvfp4_kernels.backends import registry
    from nvfp4_kernels.backends.triton import gemm as tg
    from nvfp4_kernels.backends.triton.plan import (CANDIDATES, GEMV_CANDIDATES, config_for,
                                                    gemv_config_for)

    layers = SMOKE_LAYERS if args.smoke else {k: LAYERS[k] for k in args.layers}
    ms_list = [1, 16] if args.smoke else args.m
    a_dtype = torch.float16 if device.type == "cpu" else torch.bfloat16  # interpreter: fp16
    on_gpu = device.type == "cuda"
    rows = []
    for layer, (n, k) in layers.items():
        for m in ms_list:
            weights = harness.rotated(lambda: harness.nvfp4_weight(n, k, device))
            w4a16_in = [(torch.randn(m, k, device=device, dtype=a_dtype), *w) for w in weights]

            def w4a4_inputs(w):
                x = torch.randn(m, k, device=device, dtype=a_dtype)
                gs = ref.global_scale(x)
                a, a_s, _ = ref.quantize(x, gs, "swizzled")
                return a, w[0], a_s, w[1], (w[2] / gs).reshape(1)
            w4a4_in = [w4a4_inputs(w) for w in weights]

            def op_w4a16(backend):
                return lambda a, b, s, al: torch.ops.nvfp4.gemm_w4a16(
                    a, b, s, al, "swizzled", a_dtype, None, backend)

            def op_w4a4(backend):
                return lambda a, b, a_s, b_s, al: torch.ops.nvfp4.gemm(
                    a, b, a_s, b_s, al, torch.bfloat16, None, backend)

            auto = registry.choose("gemm_w4a16", device, (a_dtype, a_dtype))[0]
            row = {"layer": layer, "N": n, "K": k, "M": m, "auto_backend": auto,
                   "triton_config": str(config_for(m, not on_gpu).as_dict())}
            timer = harness.try_graph if on_gpu else harness.try_time
            paths = {"w4a16": (op_w4a16(None), w4a16_in), "w4a4": (op_w4a4(None), w4a4_in),
                     "triton_w4a16": (op_w4a16("triton"), w4a16_in),
                     "triton_w4a4": (op_w4a4("triton"), w4a4_in)}
            if m <= 16:  # both Triton kernels, whichever the dispatch picks
                def forced(cfg):
                    return lambda a, b, s, al: tg.gemm_w4a16(a, b, s, al, "swizzled", a_dtype,
                                                             None, config=cfg)
                paths["triton_gemv_w4a16"] = (forced(gemv_config_for(not on_gpu)), w4a16_in)
                paths["triton_tc_w4a16"] = (forced(config_for(m, not on_gpu)), w4a16_in)
            if on_gpu and auto == "cuda":
                paths["cuda_w4a16"] = (op_w4a16("cuda"), w4a16_in)
                paths["cuda_w4a4"] = (op_w4a4("cuda"), w4a4_in)
                # Which kernel of the cuda backend this M runs (else it hands over to Triton).
                from nvfp4_kernels.backends import cuda as cuda_backend
                a0, b0, s0, _ = w4a16_in[0]
                row["cuda_kernel"] = cuda_backend.kernel_for(a0, b0, s0) or "next backend"
            for name, (fn, inputs) in paths.items():
                row[f"{name}_ms"], err = timer(fn, inputs, args)
                if err:
                    row[f"{name}_error"] = err
            # Eager per-call time of the public path (launch and Python overhead included).
            row["w4a16_eager_ms"], _ = harness.try_time(op_w4a16(None), w4a16_in, args)
            t_w4a16 = row["w4a16_ms"]

            floor_bytes = n * k // 2 + n * k // 16 + 2 * m * k + 2 * m * n
            floor_ms = floor_bytes / harness.COPY_BANDWIDTH * 1e3
            ceiling_ms = 2 * m * n * k / harness.BF16_PEAK * 1e3
            row.update({"memory_floor_ms": floor_ms, "compute_ceiling_ms": ceiling_ms})
            if t_w4a16:
                row["w4a16_fraction_of_bound"] = max(floor_ms, ceiling_ms) / t_w4a16
                row["w4a16_tflops"] = 2 * m * n * k / (t_w4a16 * 1e-3) / 1e12
            if on_gpu:
                for name, (ms, err) in _baselines(m, n, k, device, args).items():
                    row[f"{name}_ms"] = ms
                    if err:
                        row[f"{name}_error"] = err
                base = row.get("cublas_bf16_ms")
                for name in ("w4a16", "w4a4", "triton_w4a16", "triton_w4a4", "triton_gemv_w4a16",
                             "triton_tc_w4a16", "cuda_w4a16", "cuda_w4a4"):
                    if base and row.get(f"{name}_ms"):
                        row[f"{name}_x_cublas"] = base / row[f"{name}_ms"]
            if args.sweep and on_gpu:
                for i, cfg in enumerate(CANDIDATES + (GEMV_CANDIDATES if m <= 16 else ())):
                    ms, err = harness.try_graph(
                        lambda a, b, s, al: tg.gemm_w4a16(a, b, s, al, "swizzled", a_dtype, None,
                                                          config=cfg), w4a16_in, args)
                    rows.append({"layer": layer, "N": n, "K": k, "M": m, "sweep": i,
                                 "config": str(cfg.as_dict()), "triton_w4a16_ms": ms,
                                 "error": err})
            rows.append(row)
            print(", ".join(f"{key}={val:.4g}" if isinstance(val, float) else f"{key}={val}"
                            for key, val in row.items()
                            if val is not None and not key.endswith(("config", "error"))),
                  flush=True)
    harness.write_results("bench_gemm", rows, args.out, plot=_plot)
    return rows


def _plot(plt, rows):
    fig, ax = plt.subplots(figsize=(8, 5))
    for layer in dict.fromkeys(r["layer"] for r in rows):
        sel = [r for r in rows if r["layer"] == layer and "sweep" not in r]
        sel = [r for r in sel if r.get("w4a16_x_cublas")]
        ax.plot([r["M"] for r in sel], [r["w4a16_x_cublas"] for r in sel], "o-",
                label=f"{layer} W4A16")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("speed-up over cuBLAS bf16 (CUDA graphs, same run)")
    ax.legend()
    return fig


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 1024, 8192])
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    p.add_argument("--sweep", action="store_true", help="also time every plan candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
