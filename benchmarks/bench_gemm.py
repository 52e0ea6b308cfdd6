"""NVFP4 GEMMs (Triton W4A16 and W4A4) against cuBLAS bf16, cuBLASLt FP8 and tinygemm int4,
all measured in the same run, on the Gemma-4-31B layer shapes.

    python benchmarks/bench_gemm.py [--m 1 16 128 1024 8192] [--sweep] [--out DIR]

--sweep also times every candidate in nvfp4_kernels/backends/triton/plan.py for W4A16, so the
per-M-bucket table can be replaced by measured winners.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

import torch  # noqa: E402

# name: (N, K) of the weight [N, K]
LAYERS = {"gate_up": (43008, 5376), "down": (5376, 21504), "qkv": (16384, 5376),
          "o": (5376, 8192)}
SMOKE_LAYERS = {"tiny": (64, 128)}
TINYGEMM_MAX_M = 1024  # beyond this tinygemm takes tens of ms per call


def _nvfp4_weight(n, k, device):
    from nvfp4_kernels import reference as ref
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
    gs = ref.global_scale(w)
    data, scale, _ = ref.quantize(w, gs, "swizzled")
    return data, scale, (1.0 / gs).reshape(1).float()


def _baselines(m, n, k, device, args):
    """{name: (ms, error)} for cuBLAS bf16, FP8 _scaled_mm and int4 tinygemm."""
    res = {}
    res["cublas_bf16"] = harness.try_time(
        lambda a, w: a @ w.T, harness.rotated(lambda: (
            torch.randn(m, k, device=device, dtype=torch.bfloat16),
            torch.randn(n, k, device=device, dtype=torch.bfloat16))), args)

    def fp8_inputs():
        a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device=device).to(torch.float8_e4m3fn)
        one = torch.ones((), device=device)
        return a, w, one
    res["scaled_mm_fp8"] = harness.try_time(
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
            res["tinygemm_int4_g128"] = harness.try_time(
                lambda a, w, sz: torch.ops.aten._weight_int4pack_mm(a, w, 128, sz), inputs, args)
        except Exception as exc:  # noqa: BLE001 (signature differs across torch versions)
            res["tinygemm_int4_g128"] = (None, f"{type(exc).__name__}: {str(exc)[:160]}")
    return res


def run(args):
    device = harness.setup_device(args)
    from nvfp4_kernels import reference as ref
    from nvfp4_kernels.backends.triton import gemm as tg
    from nvfp4_kernels.backends.triton.plan import CANDIDATES, config_for

    layers = SMOKE_LAYERS if args.smoke else {k: LAYERS[k] for k in args.layers}
    ms_list = [1, 16] if args.smoke else args.m
    a_dtype = torch.float16 if device.type == "cpu" else torch.bfloat16  # interpreter: fp16
    rows = []
    for layer, (n, k) in layers.items():
        for m in ms_list:
            weights = harness.rotated(lambda: _nvfp4_weight(n, k, device))
            w4a16_in = [(torch.randn(m, k, device=device, dtype=a_dtype), *w) for w in weights]
            t_w4a16 = harness.time_ms(
                lambda a, b, s, al: tg.gemm_w4a16(a, b, s, al, "swizzled", a_dtype, None),
                w4a16_in, args)

            def w4a4_inputs(w):
                x = torch.randn(m, k, device=device, dtype=a_dtype)
                gs = ref.global_scale(x)
                a, a_s, _ = ref.quantize(x, gs, "swizzled")
                return a, w[0], a_s, w[1], (w[2] / gs).reshape(1)
            t_w4a4 = harness.time_ms(
                lambda a, b, a_s, b_s, al: tg.gemm(a, b, a_s, b_s, al, torch.bfloat16, None),
                [w4a4_inputs(w) for w in weights], args)

            floor_bytes = n * k // 2 + n * k // 16 + 2 * m * k + 2 * m * n
            floor_ms = floor_bytes / harness.COPY_BANDWIDTH * 1e3
            ceiling_ms = 2 * m * n * k / harness.BF16_PEAK * 1e3
            best_possible = max(floor_ms, ceiling_ms)
            row = {"layer": layer, "N": n, "K": k, "M": m,
                   "config": str(config_for(m, device.type == "cpu").as_dict()),
                   "triton_w4a16_ms": t_w4a16, "triton_w4a4_ms": t_w4a4,
                   "memory_floor_ms": floor_ms, "compute_ceiling_ms": ceiling_ms,
                   "w4a16_fraction_of_bound": best_possible / t_w4a16,
                   "w4a16_tflops": 2 * m * n * k / (t_w4a16 * 1e-3) / 1e12}
            if device.type == "cuda":
                for name, (ms, err) in _baselines(m, n, k, device, args).items():
                    row[f"{name}_ms"] = ms
                    row[f"{name}_error"] = err
                    if ms:
                        row[f"w4a16_speedup_vs_{name}"] = ms / t_w4a16
            if args.sweep and device.type == "cuda":
                for i, cfg in enumerate(CANDIDATES):
                    ms, err = harness.try_time(
                        lambda a, b, s, al: tg.gemm_w4a16(a, b, s, al, "swizzled", a_dtype, None,
                                                          config=cfg), w4a16_in, args)
                    rows.append({"layer": layer, "N": n, "K": k, "M": m, "sweep": i,
                                 "config": str(cfg.as_dict()), "triton_w4a16_ms": ms,
                                 "error": err})
            rows.append(row)
            print(", ".join(f"{key}={val:.4g}" if isinstance(val, float) else f"{key}={val}"
                            for key, val in row.items() if val is not None and key != "config"))
    harness.write_results("bench_gemm", rows, args.out, plot=_plot)
    return rows


def _plot(plt, rows):
    fig, ax = plt.subplots(figsize=(8, 5))
    for layer in dict.fromkeys(r["layer"] for r in rows):
        sel = [r for r in rows if r["layer"] == layer and "sweep" not in r]
        ax.plot([r["M"] for r in sel], [r["w4a16_fraction_of_bound"] for r in sel], "o-",
                label=f"{layer} W4A16")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("fraction of max(memory floor, compute ceiling)")
    ax.legend()
    return fig


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[1, 16, 128, 1024, 8192])
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    p.add_argument("--sweep", action="store_true", help="also time every plan candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
