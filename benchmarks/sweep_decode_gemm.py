"""Launch shapes of the CUDA decode GEMM (csrc/gemm_decode.cu `variant`), timed by CUDA-graph
replay on the Gemma-4-31B layers, to choose the default.

    python benchmarks/sweep_decode_gemm.py [--m 1 8 16] [--variants 0 1 ...] [--out DIR]

Every variant's output is also compared with variant 0 on the first rotated input
(`vN_max_diff`: a launch shape must not change the result beyond fp32 summation order).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import torch  # noqa: E402

from bench_gemm import LAYERS, _nvfp4_weight  # noqa: E402


def run(args):
    device = harness.setup_device(args)
    if device.type != "cuda":
        return []
    from nvfp4_kernels import _extension
    ext = _extension.extension()
    variants = args.variants or list(range(getattr(ext, "DECODE_GEMM_VARIANTS", 1)))
    rows = []
    for layer, (n, k) in LAYERS.items():
        for m in args.m:
            inputs = [(torch.randn(m, k, device=device, dtype=torch.bfloat16), *w)
                      for w in harness.rotated(lambda: _nvfp4_weight(n, k, device))]
            row = {"layer": layer, "N": n, "K": k, "M": m}
            a0, b0, s0, al0 = inputs[0]
            first = ext.gemm_decode(a0, None, b0, s0, True, al0, None, torch.bfloat16, 0).float()
            for v in variants:
                other = ext.gemm_decode(a0, None, b0, s0, True, al0, None, torch.bfloat16, v)
                row[f"v{v}_max_diff"] = float((other.float() - first).abs().max()
                                              / first.abs().max().clamp_min(1e-30))
                row[f"v{v}_ms"], err = harness.try_graph(
                    lambda a, b, s, al, v=v: ext.gemm_decode(a, None, b, s, True, al, None,
                                                             torch.bfloat16, v), inputs, args)
                if err:
                    row[f"v{v}_error"] = err
            rows.append(row)
            print(row, flush=True)
    harness.write_results("sweep_decode_gemm", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--variants", type=int, nargs="+", default=None,
                   help="launch shapes to time (default: all the extension has)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
