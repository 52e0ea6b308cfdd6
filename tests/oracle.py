"""An independent, scalar implementation of docs/format.md in NumPy float32 for cross-checking.

It shares no code with nvfp4_kernels: e4m3 rounding is done from the format's definition and
E2M1 rounding picks the nearest representable value (ties to the even code) by distance, not by
the threshold table reference.py uses.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e4m3_rne(v: float) -> float:
    """Round a non-negative float32 <= 448 to the nearest e4m3 value, ties to even mantissa."""
    v = float(v)
    if v == 0.0:
        return 0.0
    exp = max(math.floor(math.log2(v)), -6)  # below 2^-6 the spacing is fixed (subnormals)
    step = 2.0 ** (exp - 3)
    return float(np.round(v / step)) * step  # np.round rounds half to even


def e2m1_code(v: float) -> int:
    """Nearest E2M1 magnitude to |v| (v in [-6, 6]); a tie goes to the even code."""
    mag = abs(v)
    dist = [abs(mag - e) for e in E2M1]
    best = min(dist)
    code = min(i for i, d in enumerate(dist) if d == best and (i % 2 == 0 or dist.count(best) == 1))
    return code | (8 if v < 0 and code else 0)


def quantize(x: np.ndarray, gs: float | None = None):
    """x float32 [R, C] -> (codes uint8 [R, C], linear scales as float [R, C/16], gs)."""
    x = x.astype(F32)
    if gs is None:
        finite = np.abs(x[np.isfinite(x)])  # NaN/Inf do not take part in the global scale
        amax = F32(finite.max()) if finite.size else F32(0)
        with np.errstate(over="ignore"):
            gs = F32(1.0) if amax == 0 else min(F32(F32(2688.0) / amax), FLT_MAX)
    gs = F32(gs)
    rows, cols = x.shape
    codes = np.zeros((rows, cols), np.uint8)
    scales = np.zeros((rows, cols // 16), np.float64)
    sixth = F32(1.0) / F32(6.0)
    for r in range(rows):
        for b in range(cols // 16):
            blk = x[r, b * 16:(b + 1) * 16]
            amax = F32(np.abs(blk).max())
            if np.isnan(amax):  # docs/format.md: a NaN block gets a NaN scale and zero codes
                scales[r, b] = np.nan
                continue
            s = e4m3_rne(min(F32(gs * F32(amax * sixth)), F32(448.0)))
            scales[r, b] = s
            inv = F32(0) if s == 0 else F32(F32(1.0) / F32(F32(s) * F32(F32(1.0) / gs)))
            for i, xv in enumerate(blk):
                v = float(np.clip(F32(xv * inv), -6.0, 6.0))
                codes[r, b * 16 + i] = e2m1_code(v)
    return codes, scales, float(gs)
