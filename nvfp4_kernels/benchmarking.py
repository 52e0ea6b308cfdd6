"""The one benchmark harness: timing, input rotation, environment record, CSV/JSON/PNG output.

Used by the scripts in ``benchmarks/`` (``from nvfp4_kernels import benchmarking as harness``;
run them with the package importable, e.g. ``PYTHONPATH=.`` from the repository root) and by the
``nvfp4-kernels bench`` command. Nothing here is imported by ``import nvfp4_kernels``.

Two timers. ``time_ms``/``graph_ms`` (the benchmark scripts): median of
``triton.testing.do_bench``, eager or over CUDA-graph replays of at least ``--calls-per-replay``
calls (20 by default, as a serving step's graph runs its kernels back to back; a replay of a single
call would add the graph's own launch latency to it). ``event_ms`` (the CLI, which must
run without Triton): median of CUDA-event timings after one warm-up, or wall clock on a CPU. When a call's inputs fit in L2 (50 MB on
the H100), several copies are made and each timed call uses the next one, so a weight-bound
kernel is not flattered by reading its weights from L2 instead of HBM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

L2_BYTES = 50 * 1024 * 1024   # H100 L2
COPY_BANDWIDTH = 3.02e12      # bytes/s, device-to-device copy measured on the lent H100
BF16_PEAK = 989e12            # H100 SXM dense bf16 tensor-core FLOP/s (datasheet)

# Gemma-4-31B's fused linear layers, weight [N, K]: the shapes every GEMM benchmark times.
GEMMA4_31B_LINEARS = {"gate_up": (43008, 5376), "down": (5376, 21504), "qkv": (16384, 5376),
                      "o": (5376, 8192)}


def nvfp4_weight(n: int, k: int, device) -> tuple:
    """A random bf16 [n, k] weight quantized by the reference: (packed data, swizzled scales,
    W4A16 alpha = 1/global scale as a 1-element float32 tensor)."""
    from nvfp4_kernels import reference as ref
    w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
    gs = ref.global_scale(w)
    data, scale, _ = ref.quantize(w, gs, "swizzled")
    return data, scale, (1.0 / gs).reshape(1).float()


def common_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=os.environ.get("OUT", "bench_results"),
                   help="folder for CSV/JSON/PNG results (default: $OUT or bench_results)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes; without a GPU runs the Triton interpreter on CPU just to "
                        "exercise the code paths (times are meaningless)")
    p.add_argument("--warmup", type=int, default=25, help="do_bench warmup, ms")
    p.add_argument("--rep", type=int, default=100, help="do_bench repetitions, ms")
    p.add_argument("--calls-per-replay", type=int, default=20,
                   help="calls captured in one CUDA graph (graph_ms); the per-call time is the "
                        "replay time over this count. 1 adds the graph launch to every call.")
    return p


def setup_device(args) -> torch.device:
    """cuda if present; else CPU + interpreter for --smoke, or a clean exit.

    Under TRITON_INTERPRET=1 a GPU is not used even if present: the interpreter copies every
    argument to the host, which a CUDA graph capture forbids, and its times mean nothing."""
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if torch.cuda.is_available() and not interpreting:
        return torch.device("cuda")
    if not args.smoke:
        print("no CUDA GPU: nothing to measure (use --smoke to exercise the code on CPU)")
        raise SystemExit(0)
    os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
    return torch.device("cpu")


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    return 0


def rotated(make_inputs, max_copies: int = 8):
    """Input sets to cycle through: enough copies that they do not all fit in L2 (at least two,
    so that back-to-back calls never reuse what the previous one left in L2)."""
    first = make_inputs()
    size = tensor_bytes(first)
    copies = 1 if size == 0 else max(2, min(max_copies, -(-2 * L2_BYTES // size)))
    return [first] + [make_inputs() for _ in range(copies - 1)]


def time_ms(fn, inputs, args) -> float:
    """Median ms of fn(*inputs[i]) with inputs rotated; wall clock on CPU (smoke only)."""
    state = {"i": 0}

    def call():
        fn(*inputs[state["i"] % len(inputs)])
        state["i"] += 1

    if torch.cuda.is_available():
        import triton.testing
        return float(triton.testing.do_bench(call, warmup=args.warmup, rep=args.rep,
                                             return_mode="median"))
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def capture(fn, warmup: int = 2):
    """(graph, what fn returned during capture): fn captured in one CUDA graph after `warmup`
    calls on a side stream (they compile kernels and allocate workspaces outside the capture)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def graph_ms(fn, inputs, args) -> float:
    """Median ms per call of fn over the rotated inputs, replayed from one CUDA graph.

    This is how serving stacks run decode (vLLM, torch.compile "reduce-overhead"): launch cost
    is gone, so the number is the kernels' own time. One graph cycles through the input sets
    until it holds at least ``args.calls_per_replay`` calls (launching the graph costs a few
    microseconds that a step of hundreds of kernels pays once, not per kernel); do_bench also
    flushes L2 before each replay.
    """
    import triton.testing

    calls = max(1, getattr(args, "calls_per_replay", 1))
    rounds = -(-calls // len(inputs))  # whole passes over the inputs, at least `calls` calls

    def every_input():
        for _ in range(rounds):
            for inp in inputs:
                fn(*inp)
    graph, _ = capture(every_input, warmup=1)
    ms = triton.testing.do_bench(graph.replay, warmup=args.warmup, rep=args.rep,
                                 return_mode="median")
    return float(ms) / (rounds * len(inputs))


def measure(fn, inputs, args, graph: bool) -> float:
    """graph_ms (CUDA-graph replay) when `graph`, else time_ms (eager do_bench)."""
    return graph_ms(fn, inputs, args) if graph else time_ms(fn, inputs, args)


def try_graph(fn, inputs, args):
    """(ms, None) from graph_ms, or (None, why not)."""
    try:
        return graph_ms(fn, inputs, args), None
    except Exception as exc:  # noqa: BLE001 (record why a path could not be timed)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def try_time(fn, inputs, args):
    """(ms, None) or (None, error text) for baselines that some torch builds lack."""
    try:
        return time_ms(fn, inputs, args), None
    except Exception as exc:  # noqa: BLE001 (record why a baseline is missing)
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"


def copy_bandwidth(nbytes: int, device, args) -> float:
    """Measured device copy bandwidth, bytes read + written per second."""
    n = max(1, nbytes // 2)
    inputs = rotated(lambda: (torch.empty(n, dtype=torch.uint8, device=device),
                              torch.empty(n, dtype=torch.uint8, device=device)))
    ms = time_ms(lambda dst, src: dst.copy_(src), inputs, args)
    return 2 * n / (ms * 1e-3)


def bandwidth_rows(timings: dict, nbytes: int, copy_bw: float, **fields) -> list[dict]:
    """One row per op of a memory-bound benchmark: its bandwidth and fraction of the copy's."""
    rows = []
    for op, ms in timings.items():
        bw = nbytes / (ms * 1e-3)
        rows.append({"op": op, **fields, "ms": ms, "bytes": nbytes, "bandwidth_GBps": bw / 1e9,
                     "copy_bandwidth_GBps": copy_bw / 1e9, "fraction_of_copy": bw / copy_bw})
        print(rows[-1])
    return rows


def environment() -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "missing"
    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU)",
        "torch": torch.__version__, "triton": triton_version,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "git_revision": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "interpreter": os.environ.get("TRITON_INTERPRET") == "1",
    }


def event_ms(fn, device: torch.device, repeats: int) -> float:
    """Median milliseconds of fn() after one warm-up call: CUDA events on a GPU, wall clock on a
    CPU. No Triton needed (the CLI's timer)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def write_csv(path, rows: list[dict], comment: str | None = None) -> None:
    """rows as CSV (the union of their keys as columns), after an optional '# comment' line."""
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["op"]
    with open(path, "w", newline="") as f:
        if comment is not None:
            f.write("# " + comment + "\n")
        # The csv module quotes values holding commas (error messages, tuples), which a plain
        # join would spread over the following columns.
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(keys)
        for r in rows:
            writer.writerow(["" if r.get(k) is None else str(r.get(k)) for k in keys])


def write_results(name: str, rows: list[dict], out_dir: str, plot=None) -> Path:
    """<out>/<name>.json (environment + rows), <name>.csv, and <name>.png if plot is given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out / f"{name}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    write_csv(out / f"{name}.csv", rows, json.dumps(env))
    if plot is not None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no plot")
        else:
            fig = plot(plt, rows)
            fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
            plt.close(fig)
    print(f"wrote {out / name}.json/.csv")
    return out
