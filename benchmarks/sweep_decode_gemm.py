"""Launch shapes of the CUDA decode GEMMs (`variant` of csrc/gemm_decode.cu for M <= 16 and of
csrc/gemm_mid.cu for 16 < M <= 64), timed by CUDA-graph replay on the Gemma-4-31B layers, to
choose the defaults.

    python benchmarks/sweep_decode_gemm.py [--m 1 8 16 32 64] [--variants 0 1 ...] [--out DIR]

Each M runs the kernel the cuda backend uses for it (`--kernel decode|mid` forces one; the mid
kernel takes any M <= 64). Every variant's output is also compared with variant 0 on the first
rotated input (`vN_max_diff`: a launch shape must not change the result beyond fp32 summation
order). Rows of the mid kernel also carry `splits_at_1_cta_per_sm`: the split-K count of its
default on this GPU when one CTA fits per SM (M > 24; two fit at M <= 24).
"""

from __future__ import annotations

import torch

from nvfp4_kernels import benchmarking as harness
from nvfp4_kernels.benchmarking import GEMMA4_31B_LINEARS as LAYERS


def run(args):
    device = harness.setup_device(args)
    if device.type != "cuda":
        return []
    from nvfp4_kernels import _extension
    from nvfp4_kernels.backends import cuda
    ext = _extension.extension()
    rows = []
    for layer, (n, k) in LAYERS.items():
        for m in args.m:
            kernel = args.kernel or ("decode" if m <= cuda.DECODE_MAX_M else "mid")
            gemm = getattr(ext, f"gemm_{kernel}")
            count = getattr(ext, f"{kernel.upper()}_GEMM_VARIANTS", 1)
            variants = [v for v in args.variants or range(count) if v < count]
            inputs = [(torch.randn(m, k, device=device, dtype=torch.bfloat16), *w)
                      for w in harness.rotated(lambda: harness.nvfp4_weight(n, k, device))]
            row = {"layer": layer, "N": n, "K": k, "M": m, "kernel": kernel}
            if kernel == "mid":
                sms = torch.cuda.get_device_properties(device).multi_processor_count
                row["splits_at_1_cta_per_sm"] = ext.gemm_mid_splits(m, n, k, sms)
            a0, b0, s0, al0 = inputs[0]
            first = gemm(a0, None, b0, s0, True, al0, None, torch.bfloat16, 0).float()
            for v in variants:
                other = gemm(a0, None, b0, s0, True, al0, None, torch.bfloat16, v)
                row[f"v{v}_max_diff"] = float((other.float() - first).abs().max()
                                              / first.abs().max().clamp_min(1e-30))
                row[f"v{v}_ms"], err = harness.try_graph(
                    lambda a, b, s, al, v=v: gemm(a, None, b, s, True, al, None,
                                                  torch.bfloat16, v), inputs, args)
                if err:
                    row[f"v{v}_error"] = err
            rows.append(row)
            print(row, flush=True)
    harness.write_results("sweep_decode_gemm", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    p.add_argument("--kernel", choices=["decode", "mid"], default=None,
                   help="time this kernel at every M (default: the one the cuda backend uses)")
    p.add_argument("--variants", type=int, nargs="+", default=None,
                   help="launch shapes to time (default: all the extension has)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
