"""Prefill-size NVFP4 GEMMs per route, with each route's peak GPU memory, on the Gemma-4-31B
layer shapes, against cuBLAS bf16 measured in the same run.

    python benchmarks/bench_prefill.py [--m 128 256 512 1024 2048 8192] [--workspace-mib 64 32]
                                       [--small-workspace-mib 16] [--layers gate_up qkv o down]
                                       [--out DIR]

Routes (CUDA-graph replay over rotated inputs, harness.graph_ms):
  prefill       backends/triton/prefill.py: dequantize the weight in chunks of at most
                `workspace_mib` MiB each, torch.mm per chunk. `overlap`: chunk i + 1 is
                dequantized on a side stream of `side_priority` -1 (high) or 0 while chunk i is
                multiplied (two chunk buffers); `ramp`: a small first chunk, doubling;
                `dequant`: which kernel dequantizes ("cuda": the extension's, "triton").
                `variant` names them (Variant.label). W4A16 times the first workspace size in
                order and overlapped per dequantize backend present, then the default with the
                other side-stream priority and with the ramp flipped; the other sizes
                overlapped; the --small-workspace-mib size (16 MiB: may keep a chunk in L2
                between dequantize and GEMM) only at the largest M, in order and overlapped.
                W4A4 times the library's default schedule at the first size.
  prefill_fp8   the same route in its opt-in, lossy FP8 mode (NVFP4_PREFILL_MODE=fp8): e4m3
                weight chunks and activations, torch._scaled_mm with row-wise scales (library
                defaults for overlap and dequantize)
  fused         the Triton kernel that decodes in its K loop (plan.config_for(M))
  auto          the automatic choice (torch.ops.nvfp4 op, no backend forced; W4A16 only: W4A4
                chooses alike); `auto_route` says which of the two it took
  cublas_bf16   torch.mm on a bf16 weight: the baseline of every `*_x_cublas` ratio
W4A4 rows include quantizing the bf16 activations (a given global scale, as a checkpoint's
input_scale provides) in every route's time. `rel_error` is ||D - D_ref|| / ||D_ref|| of the
route's output against the float64 dequantize-then-matmul reference (DESIGN's bar: 5e-3 for the
exact routes; the FP8 mode is lossy and reports its error here). `*_peak_mib` is torch.cuda.max_memory_allocated
during one eager call minus what was allocated before it: the output plus any workspace.
The last rows give, per kind, the smallest M from which the best prefill route beats the fused
kernel on every layer at that M and above (`summary`: the value for plan.PREFILL_MIN_M), and per
prefill variant and M the lowest and geometric-mean `x_cublas` over the layers
(`summary_variant`: to choose prefill.OVERLAP, SIDE_PRIORITY, RAMP, the workspace and the
dequantize backend).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nvfp4_kernels import benchmarking as harness

LAYERS = harness.GEMMA4_31B_LINEARS
SMOKE_LAYERS = {"tiny": (320, 128)}


def peak_mib(fn, inputs) -> float | None:
    """Extra GPU memory one eager call holds at its peak (output included), MiB."""
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = fn(*inputs[0])
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del out
    return peak / 2**20


def run(args):
    device = harness.setup_device(args)
    import nvfp4_kernels as nk  # noqa: F401  (registers the ops)
    from nvfp4_kernels.backends.triton import gemm as tg
    from nvfp4_kernels.backends.triton import prefill
    from nvfp4_kernels.backends.triton.plan import config_for

    on_gpu = device.type == "cuda"
    layers = SMOKE_LAYERS if args.smoke else {k: LAYERS[k] for k in args.layers}
    ms_list = [16, 40] if args.smoke else args.m
    dtype = torch.bfloat16 if on_gpu else torch.float16  # interpreter: fp16 dots
    timer = harness.try_graph if on_gpu else harness.try_time
    workspaces = [1] if args.smoke else args.workspace_mib
    default_dq = prefill.dequant_backend(device)
    rows = []
    for layer, (n, k) in layers.items():
        weights = harness.rotated(lambda: harness.nvfp4_weight(n, k, device))
        for m in ms_list:
            def make_x(w):
                x = torch.randn(m, k, device=device, dtype=dtype)
                return (x, torch.tensor(2688.0 / 4.0, device=device), *w)
            inputs = [make_x(w) for w in weights]
            cfg = config_for(m, not on_gpu)

            def quantized(x, gs_x):
                return torch.ops.nvfp4.quantize(x, gs_x, "swizzled")

            routes = {"w4a16": {}, "w4a4": {}}
            for variant in _variants(args, m, ms_list, device):
                kw = dict(workspace=variant.mib << 20, overlap=variant.overlap,
                          priority=variant.priority, ramp=variant.ramp, dequant=variant.dequant)
                routes["w4a16"][variant] = (
                    lambda x, g, b, s, al, kw=kw: prefill.gemm_w4a16(
                        x, b, s, al, "swizzled", dtype, None, **kw))
                if variant == _default_variant(workspaces[0], device):
                    routes["w4a4"][variant] = (
                        lambda x, g, b, s, al, kw=kw: prefill.gemm(
                            *_pair(quantized(x, g), b, s), al / g, dtype, None, **kw))
            routes["w4a16"]["prefill_fp8"] = lambda x, g, b, s, al: prefill.gemm_w4a16(
                x, b, s, al, "swizzled", dtype, None, mode="fp8")
            routes["w4a4"]["prefill_fp8"] = lambda x, g, b, s, al: prefill.gemm(
                *_pair(quantized(x, g), b, s), al / g, dtype, None, mode="fp8")
            routes["w4a16"]["fused"] = lambda x, g, b, s, al: tg.gemm_w4a16(
                x, b, s, al, "swizzled", dtype, None, config=cfg)
            routes["w4a4"]["fused"] = lambda x, g, b, s, al: tg.gemm(
                *_pair(quantized(x, g), b, s), al / g, dtype, None, config=cfg)
            routes["w4a16"]["auto"] = lambda x, g, b, s, al: torch.ops.nvfp4.gemm_w4a16(
                x, b, s, al, "swizzled", dtype, None, None)
            route_taken = "prefill" if prefill.takes(inputs[0][0]) else "fused"
            base = None
            if on_gpu:
                base, err = harness.try_graph(lambda a, w: a @ w.T, harness.rotated(lambda: (
                    torch.randn(m, k, device=device, dtype=torch.bfloat16),
                    torch.randn(n, k, device=device, dtype=torch.bfloat16))), args)
                rows.append({"layer": layer, "N": n, "K": k, "M": m, "kind": "baseline",
                             "route": "cublas_bf16", "ms": base, "error": err,
                             "peak_mib": m * n * 2 / 2**20})
            for kind, table in routes.items():
                exact = _reference(kind, inputs[0], quantized)
                for route, fn in table.items():
                    ms, err = timer(fn, inputs, args)
                    row = {"layer": layer, "N": n, "K": k, "M": m, "kind": kind,
                           "route": route,
                           "auto_route": route_taken if route == "auto" else None,
                           "ms": ms, "error": err, "peak_mib": peak_mib(fn, inputs),
                           "rel_error": _rel_error(fn, inputs[0], exact),
                           "x_cublas": base / ms if base and ms else None,
                           "tflops": 2 * m * n * k / (ms * 1e-3) / 1e12 if ms else None}
                    if isinstance(route, Variant):
                        row.update(route="prefill", variant=route.label(),
                                   workspace_mib=route.mib, overlap=route.overlap,
                                   side_priority=route.priority if route.overlap else None,
                                   ramp=route.ramp, dequant=route.dequant,
                                   workspace_bytes=prefill.workspace_bytes(
                                       m, n, k, kind == "w4a4", route.mib << 20,
                                       overlap=route.overlap))
                    elif route == "prefill_fp8":
                        row.update(overlap=prefill.OVERLAP, dequant=default_dq,
                                   workspace_bytes=prefill.workspace_bytes(
                                       m, n, k, kind == "w4a4", fp8=True,
                                       overlap=prefill.OVERLAP))
                    rows.append(row)
                    print({key: (f"{v:.4g}" if isinstance(v, float) else v)
                           for key, v in row.items() if v is not None}, flush=True)
    rows += _summary(rows)
    harness.write_results("bench_prefill", rows, args.out)
    return rows


class Variant(NamedTuple):
    """One schedule of the prefill route (keywords of prefill.gemm_w4a16)."""
    mib: int        # weight chunk bound (workspace=), MiB
    overlap: bool
    priority: int   # of the side stream (-1 high, 0 normal)
    ramp: bool      # small first chunk, doubling
    dequant: str    # "cuda" or "triton"

    def label(self) -> str:
        if not self.overlap:
            schedule = "inorder" + ("_ramp" if self.ramp else "")
        else:
            schedule = ("overlap_high" if self.priority < 0 else "overlap_normal") + \
                ("" if self.ramp else "_even")
        return f"ws{self.mib}_{schedule}_{self.dequant}"


def _default_variant(mib, device) -> Variant:
    """The library's defaults (prefill.OVERLAP etc.) at this chunk bound."""
    from nvfp4_kernels.backends.triton import prefill
    return Variant(mib, prefill.OVERLAP, prefill.SIDE_PRIORITY, prefill.OVERLAP and prefill.RAMP,
                   prefill.dequant_backend(device))


def _variants(args, m, ms_list, device) -> list[Variant]:
    """The W4A16 prefill schedules timed at this M: with the first chunk bound, in order and
    overlapped (ramp, high priority) per dequantize backend, then one change at a time from the
    default (the other priority, no ramp); the other bounds overlapped; the small bound only at
    the largest M."""
    from nvfp4_kernels.backends.triton import prefill
    default = _default_variant(([1] if args.smoke else args.workspace_mib)[0], device)
    backends = [default.dequant] + [b for b in prefill.DEQUANT_BACKENDS if b != default.dequant
                                    and device.type == "cuda"
                                    and prefill._cuda_reason(device) is None]
    prio = default.priority
    out = []
    for dq in backends:
        out += [Variant(default.mib, False, prio, False, dq),
                Variant(default.mib, True, prio, True, dq)]
    if args.smoke:
        return out
    out += [Variant(default.mib, True, -1 - default.priority, default.ramp, default.dequant),
            Variant(default.mib, True, default.priority, not default.ramp, default.dequant)]
    out += [default._replace(mib=mib, overlap=True, ramp=True) for mib in args.workspace_mib[1:]]
    if args.small_workspace_mib and m == max(ms_list):
        out += [default._replace(mib=args.small_workspace_mib, overlap=o, ramp=o)
                for o in (False, True)]
    return list(dict.fromkeys(out))  # no schedule twice whatever the defaults are


def _reference(kind, inputs, quantized):
    """float64 dequantize-then-matmul result for one input set (DESIGN's reference)."""
    from nvfp4_kernels import reference as ref
    x, g, b, s, al = inputs
    if kind == "w4a16":
        return ref.gemm_w4a16(x, b, s, al, "swizzled", torch.float64, None,
                              compute_dtype=torch.float64)
    qa, qs = quantized(x, g)
    return ref.gemm_w4a4(qa, b, qs, s, al / g, torch.float64, None, compute_dtype=torch.float64)


def _rel_error(fn, inputs, exact):
    got = fn(*inputs)
    if isinstance(got, str):  # a failed route
        return None
    return ((got.double() - exact).norm() / exact.norm()).item()


def _pair(q, b, b_scale):
    """(a, b, a_scale, b_scale) for the W4A4 ops from quantize's (data, scale) of the input."""
    return q[0], b, q[1], b_scale


def _summary(rows):
    """Per kind: the smallest M from which the best prefill route beats `fused` everywhere."""
    out = []
    for kind in ("w4a16", "w4a4"):
        ms_seen = sorted({r["M"] for r in rows if r.get("kind") == kind})
        wins = {}
        for m in ms_seen:
            sel = [r for r in rows if r.get("kind") == kind and r["M"] == m and r.get("ms")]
            ok = True
            for layer in {r["layer"] for r in sel}:
                pre = [r["ms"] for r in sel if r["layer"] == layer and r["route"] == "prefill"]
                fused = [r["ms"] for r in sel if r["layer"] == layer and r["route"] == "fused"]
                ok &= bool(pre and fused) and min(pre) < fused[0]
            wins[m] = ok
        crossover = None
        for m in reversed(ms_seen):
            if not wins[m]:
                break
            crossover = m
        out.append({"kind": kind, "route": "summary", "prefill_wins_from_M": crossover})
        print(out[-1])
    out += _variant_summary(rows)
    return out


def _variant_summary(rows):
    """Per kind, prefill variant and M: the lowest and the geometric-mean x_cublas over layers."""
    import math
    out = []
    keys = sorted({(r["kind"], r["variant"], r["M"]) for r in rows
                   if r.get("route") == "prefill" and r.get("x_cublas")},
                  key=lambda key: (key[0], key[2], key[1]))
    for kind, variant, m in keys:
        xs = [r["x_cublas"] for r in rows if r.get("route") == "prefill" and
              r.get("kind") == kind and r.get("variant") == variant and r["M"] == m and
              r.get("x_cublas")]
        out.append({"kind": kind, "route": "summary_variant", "variant": variant, "M": m,
                    "layers": len(xs), "min_x_cublas": min(xs),
                    "geomean_x_cublas": math.exp(sum(map(math.log, xs)) / len(xs))})
        print({key: (f"{v:.3f}" if isinstance(v, float) else v) for key, v in out[-1].items()})
    return out


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 8192])
    p.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    p.add_argument("--workspace-mib", type=int, nargs="+", default=[64, 32],
                   help="prefill weight-chunk bounds to time (MiB per chunk buffer; overlap "
                        "holds two); the first is timed in every overlap/dequantize variant")
    p.add_argument("--small-workspace-mib", type=int, default=16,
                   help="one more chunk bound, timed only at the largest M (0: none)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
