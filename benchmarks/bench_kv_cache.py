"""FP8 KV cache write and gather per backend (8192 tokens x 16 heads x 256 by default, the
issue-11 shape), as a fraction of the device copy bandwidth measured in the same run.

    python benchmarks/bench_kv_cache.py [--tokens 8192 --heads 16 --dim 256 --block-size 16]
                                        [--backends triton cuda] [--graph] [--sweep]
                                        [--out DIR]

--graph times CUDA-graph replays over the rotated inputs (harness.graph_ms; launch overhead
excluded); without it, do_bench over rotated inputs. Also times a one-token decode write (32 heads x 256), where launch latency dominates.
"""

from __future__ import annotations

import torch

from nvfp4_kernels import benchmarking as harness


def run(args):
    device = harness.setup_device(args)
    import nvfp4_kernels as nk
    from nvfp4_kernels.backends import registry

    tokens, heads, dim, bs = ((64, 2, 64, 16) if args.smoke else
                              (args.tokens, args.heads, args.dim, args.block_size))
    dtype = torch.float16 if device.type == "cpu" else torch.bfloat16
    graph = args.graph and device.type == "cuda"
    seqs = 16 if tokens % 16 == 0 else 1  # gather: 16 equal sequences
    per_seq = -(-(tokens // seqs) // bs)
    num_blocks = max(-(-tokens // bs), seqs * per_seq)

    def make():
        key = torch.randn(tokens, heads, dim, device=device, dtype=dtype)
        value = torch.randn(tokens, heads, dim, device=device, dtype=dtype)
        cache = torch.zeros(num_blocks, bs, heads, dim, device=device,
                            dtype=torch.float8_e4m3fn)
        slots = torch.randperm(num_blocks * bs, device=device)[:tokens]
        scale = torch.ones(1, device=device)
        return key, value, cache, cache.clone(), slots, scale, scale
    inputs = harness.rotated(make)

    def timed(fn, inputs_):
        return harness.measure(fn, inputs_, args, graph)

    table = torch.randperm(num_blocks, device=device)[:per_seq * seqs].reshape(seqs, per_seq)
    lens = torch.full((seqs,), tokens // seqs, dtype=torch.int32, device=device)
    moved = 2 * tokens * heads * dim * (2 + 1)  # K and V: 2-byte values + 1-byte cache
    copy_bw = harness.copy_bandwidth(moved, device, args)
    auto = {op: registry.choose(op, device, (dtype,))[0]
            for op in ("kv_cache_write", "kv_cache_gather")}
    print(f"automatic choice here: {auto}")
    rows = []
    for backend in args.backends:
        reason = registry.why_not(backend, "kv_cache_write", device, (dtype,))
        if reason is not None:
            print(f"{backend}: skipped ({reason})")
            continue
        w_ms = timed(lambda k, v, kc, vc, s, ks, vs: nk.kv_cache.write(
            k, v, kc, vc, s, ks, vs, backend=backend), inputs)
        g_ms = timed(lambda kc, vc, s: nk.kv_cache.gather(
            kc, vc, table, lens, s, s, dtype=dtype, total_tokens=tokens, backend=backend),
            [(i[2], i[3], i[5]) for i in inputs])
        fields = dict(tokens=tokens, heads=heads, dim=dim, block_size=bs, backend=backend,
                      timing="cuda_graph" if graph else "do_bench",
                      auto_choice=auto["kv_cache_write"] == backend)
        rows += harness.bandwidth_rows({"write": w_ms, "gather": g_ms}, moved, copy_bw, **fields)
        if not args.smoke:  # decode: one token, latency rather than bandwidth
            key1 = torch.randn(1, 32, 256, device=device, dtype=dtype)
            cache1 = torch.zeros(64, bs, 32, 256, device=device, dtype=torch.float8_e4m3fn)
            slot1 = torch.tensor([5], device=device)
            one = torch.ones(1, device=device)
            d_ms = timed(lambda: nk.kv_cache.write(key1, key1, cache1, cache1, slot1, one, one,
                                                   backend=backend), [()])
            rows += harness.bandwidth_rows({"write_decode_1x32x256": d_ms},
                                           2 * 32 * 256 * 3, copy_bw, backend=backend,
                                           timing=fields["timing"])
    if args.sweep and "triton" in args.backends and registry.why_not(
            "triton", "kv_cache_write", device, (dtype,)) is None:
        from nvfp4_kernels.backends.triton import kv_cache as tk
        for cand in tk.CANDIDATES:
            w_ms = timed(lambda k, v, kc, vc, s, ks, vs, c=cand: tk.kv_cache_write(
                k, v, kc, vc, s, ks, vs, config=c), inputs)
            g_ms = timed(lambda kc, vc, s, c=cand: tk.kv_cache_gather(
                kc, vc, table, lens, s, s, tokens, dtype, config=c),
                [(i[2], i[3], i[5]) for i in inputs])
            rows += harness.bandwidth_rows({"write": w_ms, "gather": g_ms}, moved, copy_bw,
                                           tokens=tokens, heads=heads, dim=dim, block_size=bs,
                                           backend="triton", config=str(cand),
                                           timing="cuda_graph" if graph else "do_bench")
    harness.write_results("bench_kv_cache", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--backends", nargs="+", default=["triton", "cuda"],
                   help="backends to time (those that cannot run here are skipped)")
    p.add_argument("--graph", action="store_true", help="CUDA-graph timing")
    p.add_argument("--sweep", action="store_true", help="time every Triton tile candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
