"""Per-call CPU cost of every public op at a tiny decode shape, layer by layer (issue 11 item 2).

    python benchmarks/bench_per_call.py [--out DIR] [--calls 2000] [--stub]

Each row is microseconds per call of a loop of ``--calls`` calls with one synchronisation at the
end (so it is host time whenever the GPU keeps up, which it does at this shape): the cost a
decode step pays in Python, dispatch and launch. The layers of one call, outermost first:

    nk.gemm / nk.quantize / nk.kv_cache.write     public function (shapes, scales, NVFP4 glue)
    torch.ops.nvfp4.<op>                           the op through the dispatcher (compile path)
    ops.<op>                                       the same without the dispatcher (eager path)
    _dispatch.<op>                                 argument checks + backend choice + backend
    _checks.<op>_args, registry.choose             those two parts alone
    backend function                               the Triton/CUDA launcher called directly

Reference points in the same run: ``F.linear``, one tiny torch op (a division), one
``torch.empty``, and an empty Triton kernel launched through ``kernel[grid]`` and through the
backend's cached ``launch``. After the table, a breakdown per op prints each layer's own share
(its time minus the next layer inside it), so the line to work on is the largest one.

For the W4A4 ``NVFP4Linear`` forwards two more rows: the ops the forward runs, called in one
loop body outside the module (forward minus that is the module's own glue), and, on a GPU, the
forward captured once in a CUDA graph and replayed (no Python: the GPU time of its kernels; an
eager forward near that figure is bound by the GPU, not by the host).

--stub replaces every backend function by one that returns preallocated outputs: what remains
is this library's own overhead (the only mode that means anything on a CPU-only machine).
Results go to <out>/bench_per_call.json and .csv.
"""

from __future__ import annotations

import time

import torch

from nvfp4_kernels import benchmarking as harness


def per_call_us(fn, calls: int, device) -> float:
    for _ in range(20):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    best = float("inf")
    for _ in range(3):  # best of three loops: the least disturbed by other processes
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def install_stub(device):
    """Make every backend a no-op that returns preallocated outputs (registry.choose still runs)."""
    from nvfp4_kernels.backends import registry
    from nvfp4_kernels.layout import swizzled_shape

    cache = {}

    def outputs(key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def quantize(x, gs, layout):
        rows, cols = x.shape
        shape = swizzled_shape(rows, cols // 16) if layout == "swizzled" else (rows, cols // 16)
        return outputs(("q", x.shape, layout), lambda: (
            torch.empty(rows, cols // 2, dtype=torch.uint8, device=device),
            torch.empty(shape, dtype=torch.float8_e4m3fn, device=device)))

    def quantize_computed_scale(x, layout, weight_alpha):
        data, scale = quantize(x, None, layout)
        gs, alpha = outputs(("qcs", weight_alpha is None), lambda: (
            torch.empty((), device=device),
            torch.empty(0 if weight_alpha is None else weight_alpha.shape, device=device)))
        return data, scale, gs, alpha

    def dequantize(data, scale, gs, layout, dtype):
        return outputs(("dq", data.shape, dtype), lambda: torch.empty(
            data.shape[0], data.shape[1] * 2, dtype=dtype, device=device))

    def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias):
        return outputs(("g", a.shape[0], b.shape[0], out_dtype), lambda: torch.empty(
            a.shape[0], b.shape[0], dtype=out_dtype, device=device))

    def gemm_w4a16(a, b, b_scale, b_alpha, layout, out_dtype, bias):
        return outputs(("g16", a.shape[0], b.shape[0], out_dtype), lambda: torch.empty(
            a.shape[0], b.shape[0], dtype=out_dtype, device=device))

    def kv_cache_write(*args):
        return None

    def kv_cache_gather(kc, vc, table, lens, ks, vs, total, dtype):
        shape = (total, *kc.shape[2:])
        return outputs(("kvg", shape, dtype), lambda: (
            torch.empty(shape, dtype=dtype, device=device),
            torch.empty(shape, dtype=dtype, device=device)))

    stubs = dict(quantize=quantize, quantize_computed_scale=quantize_computed_scale,
                 dequantize=dequantize, gemm=gemm, gemm_w4a16=gemm_w4a16,
                 kv_cache_write=kv_cache_write, kv_cache_gather=kv_cache_gather)
    real = registry.choose

    def choose(op, *args, **kwargs):
        real(op, *args, **kwargs)  # keep its cost in the measurement
        return "stub", stubs[op]
    registry.choose = choose
    return real


def run(args):
    import nvfp4_kernels as nk
    from nvfp4_kernels import _checks, _dispatch, ops
    from nvfp4_kernels.backends import registry

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stub = args.stub or device.type == "cpu"
    dtype = torch.bfloat16
    m, n, k = args.shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=gen).to(device, dtype)
    w = nk.quantize(torch.randn(n, k, generator=gen).to(device, dtype))
    w_alpha = (torch.ones(1) / w.global_scale.cpu().reshape(1)).to(device)
    gs = nk.global_scale(x)
    qx = nk.quantize(x, gs)
    alpha = (w_alpha / gs).reshape(1)
    heads, dim, bs = 32, 256, 16
    key = torch.randn(1, heads, dim, generator=gen).to(device, dtype)
    kc = torch.zeros(64, bs, heads, dim, dtype=torch.float8_e4m3fn, device=device)
    vc = kc.clone()
    slot = torch.tensor([5], device=device)
    one = torch.ones(1, device=device)
    table = torch.tensor([[0, 1]], dtype=torch.int32, device=device)
    lens = torch.tensor([20], dtype=torch.int32, device=device)
    linear = torch.nn.Linear(k, n, device=device, dtype=dtype)
    lin16 = nk.NVFP4Linear.from_linear(linear, activations="bf16")
    lin4s = nk.NVFP4Linear.from_linear(linear, activations="nvfp4", input_global_scale=gs)
    lin4d = nk.NVFP4Linear.from_linear(linear, activations="nvfp4")

    real_choose = install_stub(device) if stub else None
    backend_fns = {}
    if not stub:
        for op in ("gemm_w4a16", "gemm", "quantize", "quantize_computed_scale",
                   "kv_cache_write"):
            backend_fns[op] = registry.choose(op, device, (dtype,) if op != "gemm_w4a16"
                                              else (dtype, dtype))[1]
    w16 = (x, w.data, w.scale, w_alpha, "swizzled", None, None)
    w4 = (qx.data, w.data, qx.scale, w.scale, alpha, dtype, None)
    kv = (key, key, kc, vc, slot, one, one)
    cases = [
        ("reference", "F.linear", lambda: torch.nn.functional.linear(x, linear.weight)),
        ("reference", "one torch op (w_alpha / gs)", lambda: w_alpha / gs),
        ("reference", "torch.empty", lambda: torch.empty((m, n), dtype=dtype, device=device)),
        *_triton_reference_points(device),
        ("gemm W4A16", "nk.gemm", lambda: nk.gemm(x, w)),
        ("gemm W4A16", "nk.gemm(weight_alpha=)", lambda: nk.gemm(x, w, weight_alpha=w_alpha)),
        ("gemm W4A16", "torch.ops.nvfp4.gemm_w4a16",
         lambda: torch.ops.nvfp4.gemm_w4a16(*w16, None)),
        ("gemm W4A16", "ops.gemm_w4a16", lambda: ops.gemm_w4a16(*w16, None)),
        ("gemm W4A16", "_dispatch.gemm_w4a16", lambda: _dispatch.gemm_w4a16(*w16, None)),
        ("gemm W4A16", "_checks.gemm_w4a16_args", lambda: _checks.gemm_w4a16_args(*w16)),
        ("gemm W4A16", "registry.choose", lambda: registry.choose(
            "gemm_w4a16", device, (dtype, dtype), None)),
        ("gemm W4A4", "nk.gemm", lambda: nk.gemm(qx, w)),
        ("gemm W4A4", "nk.gemm(weight_alpha=)", lambda: nk.gemm(qx, w, weight_alpha=w_alpha)),
        ("gemm W4A4", "torch.ops.nvfp4.gemm", lambda: torch.ops.nvfp4.gemm(*w4, None)),
        ("gemm W4A4", "ops.gemm", lambda: ops.gemm(*w4, None)),
        ("gemm W4A4", "_dispatch.gemm", lambda: _dispatch.gemm(*w4, None)),
        ("gemm W4A4", "_checks.gemm_args", lambda: _checks.gemm_args(*w4)),
        ("quantize", "nk.quantize(x, gs)", lambda: nk.quantize(x, gs)),
        ("quantize", "nk.quantize(x, 100.0)", lambda: nk.quantize(x, 100.0)),
        ("quantize", "nk.quantize(x)", lambda: nk.quantize(x)),
        ("quantize", "nk.global_scale(x)", lambda: nk.global_scale(x)),
        ("quantize", "ops.quantize_computed_scale", lambda: ops.quantize_computed_scale(
            x, "swizzled", None, None)),
        ("quantize", "ops.quantize_computed_scale(weight_alpha=)",
         lambda: ops.quantize_computed_scale(x, "swizzled", w_alpha, None)),
        ("quantize", "_dispatch.quantize_computed_scale",
         lambda: _dispatch.quantize_computed_scale(x, "swizzled", None, None)),
        ("quantize", "torch.ops.nvfp4.quantize", lambda: torch.ops.nvfp4.quantize(
            x, gs, "swizzled", None)),
        ("quantize", "ops.quantize", lambda: ops.quantize(x, gs, "swizzled", None)),
        ("quantize", "_dispatch.quantize", lambda: _dispatch.quantize(x, gs, "swizzled", None)),
        ("quantize", "_checks.quantize_args", lambda: _checks.quantize_args(x, gs, "swizzled")),
        ("kv cache", "nk.kv_cache.write", lambda: nk.kv_cache.write(*kv)),
        ("kv cache", "nk.kv_cache.write(float scales)", lambda: nk.kv_cache.write(
            key, key, kc, vc, slot, 1.0, 1.0)),
        ("kv cache", "torch.ops.nvfp4.kv_cache_write",
         lambda: torch.ops.nvfp4.kv_cache_write(*kv, None)),
        ("kv cache", "ops.kv_cache_write", lambda: ops.kv_cache_write(*kv, None)),
        ("kv cache", "_dispatch.kv_cache_write", lambda: _dispatch.kv_cache_write(*kv, None)),
        ("kv cache", "_checks.kv_write_args", lambda: _checks.kv_write_args(*kv)),
        ("kv cache", "nk.kv_cache.gather", lambda: nk.kv_cache.gather(
            kc, vc, table, lens, one, one, total_tokens=20)),
        ("NVFP4Linear", "W4A16 forward", lambda: lin16(x)),
        ("NVFP4Linear", "W4A4 static forward", lambda: lin4s(x)),
        ("NVFP4Linear", "W4A4 dynamic forward", lambda: lin4d(x)),
        # The ops each forward runs, called in sequence outside the module with the module's
        # own buffers (bias included): forward minus this is the module's own glue.
        ("NVFP4Linear", "W4A4 static parts in sequence", lambda: _w4a4_parts(lin4s, x)),
        ("NVFP4Linear", "W4A4 dynamic parts in sequence", lambda: _w4a4_parts(lin4d, x)),
    ]
    if device.type == "cuda" and not stub:
        # One forward captured in a CUDA graph and replayed: no Python, so per call this is the
        # GPU's time for the forward's kernels (plus a replay's small launch cost). An eager
        # forward cannot be faster than this; if it is close, eager is bound by the GPU.
        for name, layer in (("W4A16", lin16), ("W4A4 static", lin4s), ("W4A4 dynamic", lin4d)):
            cases.append(("NVFP4Linear", f"{name} CUDA-graph replay",
                          _graph_replay(lambda layer=layer: layer(x))))
    backend_args = {"gemm_w4a16": ("gemm W4A16", (x, w.data, w.scale, w_alpha, "swizzled", dtype,
                                                  None)),
                    "gemm": ("gemm W4A4", w4), "quantize": ("quantize", (x, gs, "swizzled")),
                    "quantize_computed_scale": ("quantize", (x, "swizzled", None)),
                    "kv_cache_write": ("kv cache", kv)}
    for op, impl in backend_fns.items():
        group, op_args = backend_args[op]
        cases.append((group, f"backend function ({op})",
                      lambda impl=impl, op_args=op_args: impl(*op_args)))
    rows = []
    with torch.no_grad():
        for group, name, fn in cases:
            try:
                us = per_call_us(fn, args.calls, device)
                rows.append({"group": group, "call": name, "us_per_call": round(us, 2),
                             "stub_backends": stub, "device": str(device),
                             "shape": f"{m}x{k} @ {n}x{k}"})
            except Exception as exc:  # noqa: BLE001 (record, keep measuring the rest)
                rows.append({"group": group, "call": name, "us_per_call": None,
                             "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
            print(f"{group:12s} {name:40s} {rows[-1].get('us_per_call')}")
    if real_choose is not None:
        registry.choose = real_choose
    print_breakdown(rows)
    harness.write_results("bench_per_call", rows, args.out)
    return rows


def _w4a4_parts(layer, x):
    """What NVFP4Linear.forward runs for a 2-D bf16 input, without the module around it."""
    from nvfp4_kernels import ops

    b = layer._buffers
    if b["input_global_scale"] is None:
        data, scale, _, alpha = ops.quantize_computed_scale(x, "swizzled", b["weight_alpha"],
                                                            None)
    else:
        alpha = layer._static_alpha(b["weight_alpha"], b["input_global_scale"])
        data, scale = ops.quantize(x, b["input_global_scale"], "swizzled", None)
    return ops.gemm(data, b["weight"], scale, b["weight_scale"], alpha, x.dtype, b["bias"], None)


def _graph_replay(fn):
    """graph.replay of one call of fn captured in a CUDA graph (warmed up on a side stream);
    captured on the first call, so a capture error is recorded in that row like any other."""
    state = {}

    def replay():
        if "graph" not in state:
            state["graph"], state["out"] = harness.capture(fn)
        state["graph"].replay()
    return replay


def _triton_reference_points(device):
    """An empty Triton kernel launched through ``kernel[grid]`` and through the backend's
    ``_launch.launch`` (cached compiled kernel): the floor under every Triton backend call."""
    if device.type != "cuda":
        return []
    try:
        import triton
        import triton.language as tl
        from nvfp4_kernels.backends.triton._launch import launch
    except ImportError:
        return []

    @triton.jit
    def empty_kernel(ptr, n, BLOCK: tl.constexpr):
        pass
    t = torch.zeros(16, device=device)
    return [("reference", "empty Triton kernel[grid](...)",
             lambda: empty_kernel[(1,)](t, 16, BLOCK=16)),
            ("reference", "empty Triton launch() (cached)",
             lambda: launch(empty_kernel, (1,), (t, 16, 16), num_warps=4))]


# Per op: (group, the layers of one call, outermost first, as row names within the group). Each
# layer's own share is its time minus the next one's; the last layer is the backend itself.
CHAINS = {
    "gemm W4A16": ("gemm W4A16", ["nk.gemm", "ops.gemm_w4a16", "_dispatch.gemm_w4a16",
                                  "backend function (gemm_w4a16)"]),
    "gemm W4A4": ("gemm W4A4", ["nk.gemm", "ops.gemm", "_dispatch.gemm",
                                "backend function (gemm)"]),
    "quantize": ("quantize", ["nk.quantize(x, gs)", "ops.quantize", "_dispatch.quantize",
                              "backend function (quantize)"]),
    "quantize (computed scale)": ("quantize", [
        "nk.quantize(x)", "ops.quantize_computed_scale", "_dispatch.quantize_computed_scale",
        "backend function (quantize_computed_scale)"]),
    "kv cache": ("kv cache", ["nk.kv_cache.write", "ops.kv_cache_write",
                              "_dispatch.kv_cache_write", "backend function (kv_cache_write)"]),
}
LAYER_JOBS = ("public function", "op entry (eager bypass)", "checks + backend choice",
              "backend (allocate + launch)")
# NVFP4Linear forwards: the parts each one calls, by (group, row); the rest is module glue.
MODULE_PARTS = {
    "W4A16 forward": [("gemm W4A16", "ops.gemm_w4a16")],
    "W4A4 static forward": [("quantize", "ops.quantize"), ("gemm W4A4", "ops.gemm")],
    # One op computes the input scale, quantizes and gives the GEMM's alpha.
    "W4A4 dynamic forward": [("quantize", "ops.quantize_computed_scale(weight_alpha=)"),
                             ("gemm W4A4", "ops.gemm")],
}


def print_breakdown(rows) -> None:
    """Where each op's per-call time goes, one line per op."""
    t = {(r["group"], r["call"]): r.get("us_per_call") for r in rows}
    print("\nper-call breakdown (us; each layer's own share):")
    for label, (group, chain) in CHAINS.items():
        times = [t.get((group, name)) for name in chain]
        if any(v is None for v in times):
            present = [(n, v) for n, v in zip(chain, times) if v is not None]
            print(f"  {label}: " + ", ".join(f"{n} {v}" for n, v in present))
            continue
        shares = [times[i] - times[i + 1] for i in range(len(times) - 1)] + [times[-1]]
        parts = " + ".join(f"{job} {share:.1f}" for job, share in zip(LAYER_JOBS, shares))
        print(f"  {label}: {chain[0]} {times[0]:.1f} = {parts}")
    for name, parts in MODULE_PARTS.items():
        total = t.get(("NVFP4Linear", name))
        values = [t.get(p) for p in parts]
        if total is None or any(v is None for v in values):
            continue
        listed = " + ".join(f"{call} {v:.1f}" for (_, call), v in zip(parts, values))
        print(f"  NVFP4Linear {name} {total:.1f} = {listed} + module glue "
              f"{total - sum(values):.1f}")
        kind = name.removesuffix(" forward")
        together = t.get(("NVFP4Linear", f"{kind} parts in sequence"))
        if together is not None:  # the parts timed as one loop body (they may overlap)
            print(f"    the same parts in one loop {together:.1f}: module's own glue "
                  f"{total - together:.1f}")
        replay = t.get(("NVFP4Linear", f"{kind} CUDA-graph replay"))
        if replay is not None:
            print(f"    one forward as a CUDA-graph replay (GPU time bound) {replay:.1f}")
    floor = t.get(("reference", "empty Triton launch() (cached)"))
    if floor is not None:
        print(f"  floor: an empty Triton launch() {floor:.1f}, kernel[grid] "
              f"{t.get(('reference', 'empty Triton kernel[grid](...)'))}")


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--shape", type=int, nargs=3, default=[1, 256, 256], metavar=("M", "N", "K"))
    p.add_argument("--stub", action="store_true",
                   help="no-op backends: this library's own overhead only (always on a CPU)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
