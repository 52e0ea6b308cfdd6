"""Bit-level helpers shared by the Triton kernels (``@triton.jit`` device functions).

Everything here is exact: rounding is done with integer arithmetic on IEEE bit patterns or with
single IEEE float32 operations, so the results match ``nvfp4_kernels.reference`` bit for bit on
any GPU and under the interpreter, without relying on how a Triton version lowers fp8 casts.
"""

import triton
import triton.language as tl

# 2**14: an E2M1 nibble moved into fp16 bit positions (see e2m1_pair_fp16) reads as lut * 2**-14.
FP16_FOLD = tl.constexpr(16384.0)  # constexpr: compiled kernels may only read constexpr globals


@triton.jit
def e2m1_rne(v):
    """float32 values -> E2M1 codes (int32 0..15), as reference.e2m1_rne(clamp(v, -6, 6)).

    The CUDA kernel's encode (csrc/include/nvfp4/e2m1_encode.h, which explains it): with
    a = min(|v|, 6) and p = 2^e' the power of two of max(a, 1), one fused a + p * 2^22 rounds a
    onto the E2M1 grid (the sum's spacing is the grid's), leaving k in the sum's low 3 bits; the
    code is 2 e' + k. NaN gets code 0 like the reference (its compares are false).
    """
    a = tl.minimum(tl.abs(v), 6.0)
    p = tl.maximum(a, 1.0).to(tl.int32, bitcast=True) & 0x7F800000
    t = tl.fma(p.to(tl.float32, bitcast=True), 4194304.0, a).to(tl.int32, bitcast=True)
    mag = tl.where(v == v, (p >> 22) - 254 + (t & 7), 0)
    return mag | tl.where(v < 0, 8, 0)


@triton.jit
def e4m3_rne(v):
    """float32 in [-448, 448] -> (e4m3 byte as int32, the rounded value as float32).

    Normals: round the float32 bits to 3 mantissa bits (half to even) and rebias the exponent
    (127 -> 7). Subnormals (|v| < 2**-6): one IEEE add of 2**14 puts the e4m3 subnormal step
    2**-9 at float32's last mantissa place, so the hardware add does the rounding. The sign is
    taken from the bits, so -0 and tiny negatives give 0x80 as torch's cast does.
    """
    a = tl.abs(v)
    b = a.to(tl.int32, bitcast=True)
    rounded = (b + 0x7FFFF + ((b >> 20) & 1)) & -1048576  # clear the 20 dropped bits
    normal_code = (rounded >> 20) - (120 << 3)
    normal_val = rounded.to(tl.float32, bitcast=True)
    shifted = a + 16384.0
    sub_code = shifted.to(tl.int32, bitcast=True) - 0x46800000  # bits of 2**14
    sub_val = shifted - 16384.0
    is_sub = a < 0.015625
    code = tl.where(is_sub, sub_code, normal_code)
    val = tl.where(is_sub, sub_val, normal_val)
    neg = v.to(tl.int32, bitcast=True) < 0
    return code | tl.where(neg, 0x80, 0), tl.where(neg, -val, val)


@triton.jit
def e4m3_to_fp16(code):
    """e4m3 bytes (uint8) -> their exact value as fp16.

    The e4m3 sign/exponent/mantissa moved into fp16 positions read as value * 2**-8 (bias 15
    vs 7), subnormals included; one fp16 multiply by 256 restores the value exactly.
    """
    c = code.to(tl.int16)
    bits = ((c & 0x80) << 8) | ((c & 0x7F) << 7)
    return bits.to(tl.float16, bitcast=True) * 256.0


@triton.jit
def e4m3_to_fp32(code):
    """e4m3 bytes (uint8) -> their exact value as float32; 0x7F/0xFF (e4m3's NaN) -> NaN, as
    torch reads them (a cache slot never written may hold any byte)."""
    val = e4m3_to_fp16(code).to(tl.float32)
    return tl.where((code & 0x7F) == 0x7F, float("nan"), val)


@triton.jit
def e2m1_pair_fp16(byte):
    """Packed bytes (uint8 [R, C]) -> (low-nibble, high-nibble) values as fp16 times 2**-14.

    Each nibble's sign goes to bit 15 and its 3 exponent/mantissa bits to bits 11..9, straight
    from the whole byte with two shifts and masks per value (no nibble extraction, no table):
    an fp16 with exponent field e in {0..3} and top mantissa bit m is exactly the E2M1 value
    times 2**-14, subnormal codes (0, 0.5) included. The 2**-14 is folded into the epilogue.
    """
    b = byte.to(tl.int16)
    lo = ((b << 12) & -32768) | ((b << 9) & 0x0E00)
    hi = ((b << 8) & -32768) | ((b << 5) & 0x0E00)
    return lo.to(tl.float16, bitcast=True), hi.to(tl.float16, bitcast=True)


@triton.jit
def decode_tile(packed, scale_code, ROWS: tl.constexpr, COLS: tl.constexpr):
    """packed uint8 [ROWS, COLS/2] + e4m3 scale bytes [ROWS, COLS/16] -> fp16 [ROWS, COLS]
    holding lut[q] * s * 2**-14 exactly (smallest product 2**-24 is fp16's smallest subnormal,
    largest 2688 * 2**-14; every product has at most 6 significant bits)."""
    lo, hi = e2m1_pair_fp16(packed)
    w = tl.reshape(tl.join(lo, hi), [ROWS, COLS // 16, 16])
    s = e4m3_to_fp16(scale_code)
    return tl.reshape(w * s[:, :, None], [ROWS, COLS])


@triton.jit
def swizzled_offset(r, c, padded_cols_div4):
    """Byte offset of scale (r, c) in the 128x4 swizzled layout (DESIGN §2)."""
    return (((r // 128) * padded_cols_div4 + c // 4) * 512 + (r % 32) * 16
            + ((r // 32) % 4) * 4 + c % 4)


@triton.jit
def cast_out(x, dtype: tl.constexpr, BF16_BY_BITS: tl.constexpr):
    """float32 -> dtype, round to nearest even.

    The interpreter's float32 -> bf16 cast rounds half up on the dropped bits (not RNE), and its
    float32 -> e4m3 cast neither rounds to nearest nor saturates, so under TRITON_INTERPRET the
    launchers set BF16_BY_BITS and the rounding is done on the bits here (e4m3: |x| <= 448);
    on a GPU the native conversion (cvt.rn) is used.
    """
    if BF16_BY_BITS and dtype == tl.bfloat16:
        b = x.to(tl.int32, bitcast=True)
        r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
        return r.to(tl.int16).to(tl.bfloat16, bitcast=True)
    elif BF16_BY_BITS and dtype == tl.float8e4nv:
        code, _ = e4m3_rne(x)
        return code.to(tl.uint8).to(tl.float8e4nv, bitcast=True)
    else:
        return x.to(dtype)


@triton.jit
def e2m1_word_pair_fp16(w, P: tl.constexpr):
    """int32 words of 8 packed nibbles -> nibbles (P, P+4) as fp16 values times 2**-14.

    The same shifts put nibble P in the low and nibble P+4 in the high 16 bits of one word
    (sign to bit 15/31, exponent/mantissa to bits 9..11/25..27, as e2m1_pair_fp16), so one
    shift-and-mask pair decodes two values; the halves are then read as fp16.
    """
    sign = (w << (12 - 4 * P)) & -2147450880  # 0x80008000
    if P == 3:
        em = (w >> 3) & 0x0E000E00  # arithmetic shift: the copied sign bits are masked away
    else:
        em = (w << (9 - 4 * P)) & 0x0E000E00
    pair = sign | em
    lo = pair.to(tl.int16).to(tl.float16, bitcast=True)
    hi = (pair >> 16).to(tl.int16).to(tl.float16, bitcast=True)
    return lo, hi


@triton.jit
def div_by_constant(p, d, r, INTERPRET: tl.constexpr):
    """RN(p / d) for float32 p = lut * s (times a power of two) and r = RN(1 / d).

    q0 = RN(p * r) is within about an ulp; the residual p - q0 * d is exact in one FMA and a
    second FMA adds residual * r. For p of at most 6 significant bits (every NVFP4 product)
    this equals IEEE division for all 2**23 significands of d (exhaustive check in
    tests/test_exact_division.py), provided every quantity is a normal float32.
    Signed zero: the residual is formed as q0*d - p and subtracted, so p = -0 gives -0.
    The interpreter's fma rounds twice (numpy), so there the two FMAs run in float64, which is
    exact for the residual and double-rounds the final sum only within 2**-53 of a float32 tie.
    """
    q0 = p * r
    if INTERPRET:
        e = (q0.to(tl.float64) * d.to(tl.float64) - p.to(tl.float64)).to(tl.float32)
        return (q0.to(tl.float64) - e.to(tl.float64) * r.to(tl.float64)).to(tl.float32)
    else:
        e = tl.fma(q0, d, -p)
        return tl.fma(e, -r, q0)
