"""The division identity both dequantize kernels use instead of one IEEE division per value.

For p = lut * s (at most 6 significant bits: every E2M1 magnitude times every e4m3 scale) and a
divisor d with r = RN(1/d):  q0 = RN(p * r);  e = RN(q0 * d - p) (one FMA, exact);
q1 = RN(q0 - e * r) (one FMA)  equals RN(p / d), the IEEE float32 quotient.

Every step scales exactly with powers of two while all values are normal float32 (the kernels
take the identity only for 2**-100 <= gs <= 2**100), so it suffices to check every product
significand against every divisor significand in [1, 2): 2**23 of them. This test checks a
random 1/32 of them (a different slice each run); NVFP4_EXHAUSTIVE=1 checks all (about 15 s).
The FMAs are emulated exactly in float64: q0 * d is exact there, q0 * d - p too (they agree to
within an ulp), and the final sum is rounded from its exact two-term form (TwoSum).
"""

from __future__ import annotations

import os

import numpy as np
import torch

F32, F64 = np.float32, np.float64
LUT = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def product_significands() -> np.ndarray:
    """Distinct significands in [1, 2) of lut * s over nonzero codes and finite e4m3 scales."""
    scales = torch.arange(1, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    products = np.array([lut * float(s) for lut in LUT for s in scales], dtype=F64)
    mant, _ = np.frexp(products)
    return np.unique(mant * 2)


def _round_sum(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """RN32 of the exact value s + err, where s = RN64(exact) and err its rounding error."""
    r = s.astype(F32)
    lo = np.where(r.astype(F64) > s, np.nextafter(r, F32(-np.inf)), r)
    hi = np.nextafter(lo, F32(np.inf))
    tie = (s == (lo.astype(F64) + hi.astype(F64)) / 2) & (err != 0)
    return np.where(tie, np.where(err > 0, hi, lo), r)


def identity_quotient(p: float, d: np.ndarray) -> np.ndarray:
    """The kernels' three operations, each rounded once to float32."""
    p32, d32 = F32(p), d.astype(F32)
    r = F32(1) / d32
    q0 = p32 * r
    e = (q0.astype(F64) * d32.astype(F64) - F64(p32)).astype(F32)
    t = e.astype(F64) * r.astype(F64)  # exact: 24 x 24 bits
    s = q0.astype(F64) - t
    b = s - q0.astype(F64)
    err = (q0.astype(F64) - (s - b)) + (-t - b)  # TwoSum: s + err == q0 - t exactly
    return _round_sum(s, err)


def ieee_quotient(p: float, d: np.ndarray) -> np.ndarray:
    # p / d is never within 2**-49 (relative) of a float32 rounding tie (a 25-bit midpoint
    # times a 24-bit d cannot have 6 significant bits), so rounding the float64 quotient, which
    # is within 2**-53, to float32 gives the correctly rounded float32 quotient.
    return (F64(F32(p)) / d.astype(F32).astype(F64)).astype(F32)


def test_products_have_few_significands():
    sig = product_significands()
    assert 1 < len(sig) <= 16
    assert all(float(x * 64).is_integer() for x in sig)  # at most 6 significant bits


def test_identity_equals_ieee_division():
    full = os.environ.get("NVFP4_EXHAUSTIVE") == "1"
    rng = np.random.default_rng()
    base = np.arange(1 << 23, dtype=np.int64)
    if not full:
        base = np.sort(rng.choice(base, size=(1 << 23) // 32, replace=False))
    divisors = ((base | (127 << 23)).astype(np.int32).view(F32)).astype(F64)  # [1, 2)
    for p in product_significands():
        for chunk in np.array_split(divisors, max(1, len(divisors) >> 20)):
            got, want = identity_quotient(p, chunk), ieee_quotient(p, chunk)
            bad = np.nonzero(got != want)[0]
            assert bad.size == 0, f"p={p}, d={chunk[bad[:3]]}: {got[bad[:3]]} vs {want[bad[:3]]}"


def test_one_fma_step_less_is_not_enough():
    """The check has teeth: q0 alone (no correction) differs from IEEE division often."""
    d = np.random.default_rng(0).uniform(1, 2, 100_000)
    p = product_significands()[3]
    q0 = F32(p) * (F32(1) / d.astype(F32))
    assert (q0 != ieee_quotient(p, d)).sum() > 1000
