"""Triton NVFP4 quantize (bf16 [8192, 5376] -> swizzled scales) and dequantize, as a fraction
of the device copy bandwidth measured in the same run.

    python benchmarks/bench_quantize.py [--shape 8192 5376] [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

import torch  # noqa: E402


def run(args):
    device = harness.setup_device(args)
    from nvfp4_kernels import reference as ref
    from nvfp4_kernels.backends.triton import quantize as tq

    rows_, cols = (64, 256) if args.smoke else args.shape
    dtype = torch.float16 if device.type == "cpu" else torch.bfloat16

    def make():
        x = torch.randn(rows_, cols, device=device, dtype=dtype)
        return x, ref.global_scale(x)
    inputs = harness.rotated(make)
    q_ms = harness.time_ms(lambda x, gs: tq.quantize(x, gs, "swizzled"), inputs, args)
    srows, scols = ref.swizzled_shape(rows_, cols // 16)
    q_bytes = rows_ * cols * 2 + rows_ * cols // 2 + srows * scols
    packed = [ref.quantize(x, gs, "swizzled") for x, gs in inputs]
    d_ms = harness.time_ms(lambda d, s, gs: tq.dequantize(d, s, gs, "swizzled", dtype),
                           packed, args)
    copy_bw = harness.copy_bandwidth(q_bytes, device, args)
    rows = harness.bandwidth_rows({"quantize": q_ms, "dequantize": d_ms}, q_bytes, copy_bw,
                                  rows=rows_, cols=cols, dtype=str(dtype))
    harness.write_results("bench_quantize", rows, args.out)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=2, default=[8192, 5376])
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
