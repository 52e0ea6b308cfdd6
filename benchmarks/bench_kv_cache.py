"""Triton FP8 KV cache write and gather (4096 tokens x 16 heads x 256 by default), as a fraction
of the device copy bandwidth measured in the same run.

    python benchmarks/bench_kv_cache.py [--tokens 4096 --heads 16 --dim 256 --block-size 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

import torch  # noqa: E402


def run(args):
    device = harness.setup_device(args)
    from nvfp4_kernels.backends.triton import kv_cache as tk

    tokens, heads, dim, bs = ((64, 2, 64, 16) if args.smoke else
                              (args.tokens, args.heads, args.dim, args.block_size))
    dtype = torch.float16 if device.type == "cpu" else torch.bfloat16
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
    w_ms = harness.time_ms(lambda *a: tk.kv_cache_write(*a), inputs, args)
    table = torch.randperm(num_blocks, device=device)[:per_seq * seqs].reshape(seqs, per_seq)
    lens = torch.full((seqs,), tokens // seqs, dtype=torch.int32, device=device)
    g_ms = harness.time_ms(
        lambda kc, vc, s: tk.kv_cache_gather(kc, vc, table, lens, s, s, tokens, dtype),
        [(i[2], i[3], i[5]) for i in inputs], args)
    moved = 2 * tokens * heads * dim * (2 + 1)  # K and V: 2-byte values + 1-byte cache
    copy_bw = harness.copy_bandwidth(moved, device, args)
    rows = harness.bandwidth_rows({"write": w_ms, "gather": g_ms}, moved, copy_bw,
                                  tokens=tokens, heads=heads, dim=dim, block_size=bs)
    harness.write_results("bench_kv_cache", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--block-size", type=int, default=16)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
