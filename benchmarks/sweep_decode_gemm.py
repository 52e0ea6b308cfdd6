"""Launch shapes of the CUDA decode GEMMs (`variant` of csrc/gemm_decode.cu for M <= 16 and of
csrc/gemm_mid.cu for 16 < M <= 64, and of the Hopper wgmma GEMM csrc/gemm_wgmma.cu), timed by
CUDA-graph replay on the Gemma-4-31B layers, to choose the defaults.

    python benchmarks/sweep_decode_gemm.py [--m 1 8 16 32 64] [--variants 0 1 ...] [--out DIR]
    python benchmarks/sweep_decode_gemm.py --kernel wgmma --m 32 64 128 256 --out DIR

Each M runs the kernel the cuda backend uses for it (`--kernel decode|mid|wgmma` forces one; the
mid kernel takes any M <= 64, the wgmma kernel (sm_90a builds only, not used by the backend yet)
any M <= 256). `--cublas` (on by default for wgmma) also times cuBLAS bf16 (`a @ w.T`, same
graph replay over rotated inputs) in the same run and adds `vN_x_cublas`; wgmma rows at M <= 64
also time the mid kernel's default (`mid_v0_ms`), and carry `v0_rel_err`: the max error of
variant 0 against a float32 matmul with the dequantized weight, relative to the largest output
(a first correctness check at layer size; the tests hold the 5e-3 bar against float64). Every variant's output is also compared with variant 0 on the first
rotated input (`vN_max_diff`: a launch shape must not change the result beyond fp32 summation
order). Rows of the mid kernel also carry `splits_at_1_cta_per_sm`: the split-K count of its
default on this GPU when one CTA fits per SM (M > 24; two fit at M <= 24).
"""

from __future__ import annotations

import argparse

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
            if kernel == "wgmma" and not getattr(ext, "HAS_WGMMA_GEMM", False):
                raise SystemExit("the extension has no wgmma GEMM (build with "
                                 "NVFP4_CUDA_ARCHS=sm_90a)")
            count = getattr(ext, f"{kernel.upper()}_GEMM_VARIANTS", 1)
            variants = [v for v in args.variants or range(count) if v < count]
            inputs = [(torch.randn(m, k, device=device, dtype=torch.bfloat16), *w)
                      for w in harness.rotated(lambda: harness.nvfp4_weight(n, k, device))]
            row = {"layer": layer, "N": n, "K": k, "M": m, "kernel": kernel}
            if kernel in ("mid", "wgmma"):
                sms = torch.cuda.get_device_properties(device).multi_processor_count
                splits = getattr(ext, f"gemm_{kernel}_splits")
                row["splits_at_1_cta_per_sm"] = splits(m, n, k, sms)
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
            if kernel == "wgmma":
                row["v0_rel_err"] = _rel_err_vs_dequantized(first, a0, b0, s0, al0)
                if m <= 64:
                    row["mid_v0_ms"], err = harness.try_graph(
                        lambda a, b, s, al: ext.gemm_mid(a, None, b, s, True, al, None,
                                                         torch.bfloat16, 0), inputs, args)
                    if err:
                        row["mid_v0_error"] = err
            if args.cublas or (args.cublas is None and kernel == "wgmma"):
                row["cublas_bf16_ms"], err = harness.try_graph(
                    lambda a, w: a @ w.T, harness.rotated(lambda: (
                        torch.randn(m, k, device=device, dtype=torch.bfloat16),
                        torch.randn(n, k, device=device, dtype=torch.bfloat16))), args)
                if err:
                    row["cublas_bf16_error"] = err
                base = row["cublas_bf16_ms"]
                for key in [key for key in row if key.endswith("_ms") and key[0] in "vm"]:
                    if base and row[key]:
                        row[key[:-3] + "_x_cublas"] = base / row[key]
            rows.append(row)
            print(row, flush=True)
    harness.write_results("sweep_decode_gemm", rows, args.out)
    return rows


def _rel_err_vs_dequantized(y, a, data, scale, alpha):
    """max |y - a @ (alpha * W)^T| / max |reference| with W dequantized in float32."""
    from nvfp4_kernels import reference as ref
    w = ref.dequantize_unscaled(data, scale, "swizzled", torch.float32) * alpha
    want = a.float() @ w.T
    return float((y.float() - want).abs().max() / want.abs().max().clamp_min(1e-30))


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    p.add_argument("--kernel", choices=["decode", "mid", "wgmma"], default=None,
                   help="time this kernel at every M (default: the one the cuda backend uses)")
    p.add_argument("--variants", type=int, nargs="+", default=None,
                   help="launch shapes to time (default: all the extension has)")
    p.add_argument("--cublas", action=argparse.BooleanOptionalAction, default=None,
                   help="also time cuBLAS bf16 in the same run (default: with --kernel wgmma)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
