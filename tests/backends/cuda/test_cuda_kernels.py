"""The cuda backend's kernels against the reference, bit for bit (skips without a GPU or without
the extension). Outputs are allocated over poisoned memory, so a byte the kernel forgot to write
(swizzle padding included) shows up as a mismatch."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import cuda
from tests.conftest import assert_same_codes
from tests.dequant_cases import GLOBAL_SCALES, every_code_and_scale, same_bits

_HERE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
_REASON = cuda.why_unavailable(_HERE)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]


def _poison_allocator(nbytes=64 << 20):
    """Fill memory the caching allocator will hand out next with 0xA5 bytes."""
    block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    block.fill_(0xA5)
    del block


def _bits(t):
    return t.view(torch.uint8) if t.element_size() == 1 else t.view(torch.int16 if t.element_size() == 2 else torch.int32)


def _inputs(rows, cols, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g) * torch.logspace(-3, 3, cols).repeat(rows, 1)
    x[0, :16] = 0.0  # an all-zero block: scale 0, inv 0
    if rows > 1:     # exact ties of the E2M1 grid after scaling by inv = 1
        x[1, :16] = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2) * \
            torch.tensor([1, -1] * 8)
    return x.to(dtype)


@pytest.mark.parametrize("rows,cols", [(1, 16), (3, 48), (130, 64), (257, 1040)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_quantize_bit_exact(rows, cols, dtype, layout):
    x = _inputs(rows, cols, dtype, rows * cols)
    for gs in (ref.global_scale(x), torch.tensor(1.0), torch.tensor(3.0e4)):
        _poison_allocator()
        data, scale = torch.ops.nvfp4.quantize(x.cuda(), gs.cuda(), layout, backend="cuda")
        want_data, want_scale, _ = ref.quantize(x, gs, layout)
        assert_same_codes(data, want_data)
        assert torch.equal(scale.cpu().view(torch.uint8), want_scale.view(torch.uint8))


def _check_computed_scale(x, layout, weight_alpha=None):
    """quantize_computed_scale on the GPU against reference.quantize(x) (its own global scale):
    codes, block scales and the global scale bit for bit; alpha = weight_alpha / gs as torch
    divides."""
    _poison_allocator()
    wa = None if weight_alpha is None else weight_alpha.cuda()
    data, scale, gs, alpha = torch.ops.nvfp4.quantize_computed_scale(x.cuda(), layout, wa,
                                                                     backend="cuda")
    want_data, want_scale, want_gs = ref.quantize(x, None, layout)
    assert gs.shape == () and gs.dtype == torch.float32
    assert torch.equal(_bits(gs.cpu()), _bits(want_gs)), (gs.item(), want_gs.item())
    assert_same_codes(data, want_data)
    assert torch.equal(scale.cpu().view(torch.uint8), want_scale.view(torch.uint8))
    if weight_alpha is None:
        assert alpha.shape == (0,)
    else:
        assert torch.equal(_bits(alpha.cpu()), _bits(weight_alpha / want_gs))


@pytest.mark.parametrize("rows,cols", [(1, 16), (3, 48), (130, 64), (257, 1040), (2048, 4096)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_quantize_computed_scale_bit_exact(rows, cols, dtype, layout):
    """The largest shape spreads the amax pass over many blocks (atomics from every SM)."""
    x = _inputs(rows, cols, dtype, rows + cols)
    _check_computed_scale(x, layout)
    _check_computed_scale(x, layout, torch.rand(1) + 0.5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_quantize_computed_scale_special_inputs(dtype):
    """All zero (gs 1), non-finite elements (ignored by the global scale; a NaN block gets the
    e4m3 NaN scale and zero codes, an infinite one scale 448), nothing finite (gs 1), a subnormal
    amax (2688/amax overflows: clamped to FLT_MAX), the amax in the last element."""
    base = torch.randn(5, 64).to(dtype)
    cases = [torch.zeros(5, 64, dtype=dtype)]
    x = base.clone()
    x[1, 3], x[2, 40], x[4, 63] = float("nan"), float("inf"), -float("inf")
    cases.append(x)
    cases.append(torch.full((2, 32), float("nan"), dtype=dtype))
    cases.append(torch.full((3, 16), 1e-38).to(dtype))
    x = base.clone()
    x[4, 63] = 1e4
    cases.append(x)
    for x in cases:
        for layout in ("swizzled", "linear"):
            _check_computed_scale(x, layout, torch.rand(48) + 0.5)
            # the same blocks with a given scale (the kernels share the per-block code)
            gs = torch.tensor(100.0)
            data, scale = torch.ops.nvfp4.quantize(x.cuda(), gs.cuda(), layout, backend="cuda")
            want_data, want_scale, _ = ref.quantize(x, gs, layout)
            assert_same_codes(data, want_data)
            assert torch.equal(scale.cpu().view(torch.uint8), want_scale.view(torch.uint8))


def test_quantize_computed_scale_unaligned_and_empty():
    """A view 2 bytes into its storage takes the scalar-load kernels; empty inputs still give
    gs = 1 and alpha."""
    buf = torch.randn(3 * 64 + 1).bfloat16()
    x = buf[1:].view(3, 64)
    gs_data = torch.ops.nvfp4.quantize_computed_scale(buf.cuda()[1:].view(3, 64), "linear",
                                                      backend="cuda")
    want = ref.quantize(x, None, "linear")
    assert_same_codes(gs_data[0], want[0])
    assert torch.equal(gs_data[2].cpu(), want[2])
    for shape in ((0, 32), (4, 0), (0, 0)):
        x = torch.zeros(shape, dtype=torch.bfloat16)
        wa = torch.tensor([0.25])
        for layout in ("swizzled", "linear"):
            _check_computed_scale(x, layout, wa)


def test_quantize_more_rows_than_one_grid_dimension():
    """The quantize kernels put row groups (16 rows each) on grid.y, capped at 65535, and loop
    over the rest: 65535 * 16 + 37 rows exercise the loop, in both kernels and both layouts, with
    signed zeros, ties and a partial column group (2 scale columns of 32; swizzled pads to 4)."""
    rows, cols = 65535 * 16 + 37, 32
    x = _inputs(rows, cols, torch.bfloat16, 11)
    x[2, :16] = -0.0
    gs = torch.tensor(3.0e2)
    for layout in ("swizzled", "linear"):
        _poison_allocator()
        data, scale = torch.ops.nvfp4.quantize(x.cuda(), gs.cuda(), layout, backend="cuda")
        want_data, want_scale, _ = ref.quantize(x, gs, layout)
        assert_same_codes(data, want_data)
        assert torch.equal(scale.cpu().view(torch.uint8), want_scale.view(torch.uint8))
        _check_computed_scale(x, layout)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_dequantize_bit_exact(dtype, layout):
    x = _inputs(130, 96, torch.float32, 7)
    data, scale, gs = ref.quantize(x, None, layout)
    _poison_allocator()
    got = torch.ops.nvfp4.dequantize(data.cuda(), scale.cuda(), gs.cuda(), layout, dtype,
                                     backend="cuda")
    want = ref.dequantize(data, scale, gs, layout, dtype)
    assert torch.equal(_bits(got.cpu()), _bits(want))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_dequantize_every_code_scale_and_global_scale(dtype, layout):
    """Every E2M1 code x every finite e4m3 byte, global scales inside and outside the kernel's
    fast-division range (tests/dequant_cases.py); odd shapes; a view off a 4-byte boundary."""
    gen = torch.Generator().manual_seed(11)
    for rows, cols in ((16, 256), (37, 48), (130, 272), (1, 16)):
        data, scale = every_code_and_scale(rows, cols, gen)
        scale = ref.swizzle_scales(scale) if layout == "swizzled" else scale
        for gs_value in GLOBAL_SCALES:
            gs = torch.tensor(gs_value, dtype=torch.float32)
            _poison_allocator()
            got = torch.ops.nvfp4.dequantize(data.cuda(), scale.cuda(), gs.cuda(), layout, dtype,
                                             backend="cuda")
            assert same_bits(got, ref.dequantize(data, scale, gs, layout, dtype)), \
                (rows, cols, gs_value)
    padded = torch.zeros(data.numel() + 1, dtype=torch.uint8, device="cuda")
    padded[1:] = data.reshape(-1).cuda()
    got = cuda.dequantize(padded[1:].view(data.shape), scale.cuda(), gs.cuda(), layout, dtype)
    assert same_bits(got, ref.dequantize(data, scale, gs, layout, dtype))


@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_dequantize_nan_scale_gives_nan_block(layout):
    """The e4m3 NaN scale (0x7F, 0xFF: a block quantized from a NaN) reads back as 16 NaNs."""
    data, scale = every_code_and_scale(4, 64, torch.Generator().manual_seed(5))
    raw = scale.view(torch.uint8).clone()
    raw[1, 2], raw[3, 0] = 0x7F, 0xFF
    scale = raw.view(torch.float8_e4m3fn)
    scale = ref.swizzle_scales(scale) if layout == "swizzled" else scale
    gs = torch.tensor(2688.0 / 5.0)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        got = cuda.dequantize(data.cuda(), scale.cuda(), gs.cuda(), layout, dtype).cpu()
        want = ref.dequantize(data, scale, gs, layout, dtype)
        nan = torch.isnan(want)
        assert nan.sum() == 32 and torch.equal(torch.isnan(got), nan)
        assert same_bits(got[~nan], want[~nan])


def _scaled_factors(rows, per_row, dtype, gen):
    """Factors for dequantize_scaled: across float32's range (products reach subnormals and
    overflow of bf16/fp16), or for e4m3 at most 1/8, as the FP8 prefill folds (|value| <= 336:
    no saturation, where torch's reference cast and the kernel's would differ)."""
    count = rows if per_row else 1
    if dtype == torch.float8_e4m3fn:
        return torch.exp2(-torch.rand(count, generator=gen) * 12 - 3)
    exps = torch.randint(-140, 20, (count,), generator=gen).float()
    signs = torch.where(torch.rand(count, generator=gen) < 0.3, -1.0, 1.0)
    return signs * (torch.rand(count, generator=gen) + 1) * torch.exp2(exps)


SCALED_DTYPES = [torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.float32]


@pytest.mark.parametrize("dtype", SCALED_DTYPES)
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
@pytest.mark.parametrize("per_row", [False, True])
def test_dequantize_scaled_bit_exact(dtype, layout, per_row):
    """The prefill route's variant: RN(lut * s * factor[row]) in float32, then the cast, for
    every E2M1 code x every finite e4m3 byte, into a poisoned `out`; odd shapes; a 128-row
    slice of swizzled scales (how the route passes a weight chunk)."""
    gen = torch.Generator().manual_seed(13)
    for rows, cols in ((16, 256), (150, 64), (1, 16), (37, 272)):
        data, scale = every_code_and_scale(rows, cols, gen)
        scale = ref.swizzle_scales(scale) if layout == "swizzled" else scale
        factor = _scaled_factors(rows, per_row, dtype, gen)
        out = torch.empty((rows, cols), dtype=dtype, device="cuda")
        out.view(torch.uint8).fill_(0xA5)  # poisoned: an unwritten element shows
        got = _c().dequantize_scaled(data.cuda(), scale.cuda(), factor.cuda(),
                                     layout == "swizzled", out)
        assert got.data_ptr() == out.data_ptr()
        unscaled = ref.dequantize_unscaled(data, scale, layout, torch.float32)
        want = (unscaled * factor.reshape(-1, 1)).to(dtype)
        assert same_bits(out, want), (rows, cols)
    rows, cols = 384, 80
    data, scale = every_code_and_scale(rows, cols, gen)
    sw = ref.swizzle_scales(scale)
    tile = sw.numel() // (sw.shape[0] // 128)
    factor = _scaled_factors(rows, per_row, dtype, gen)
    out = torch.empty(128, cols, dtype=dtype, device="cuda")
    _c().dequantize_scaled(data[128:256].cuda(), sw.reshape(-1)[tile:2 * tile].cuda(),
                           factor[128:256].cuda() if per_row else factor.cuda(), True, out)
    full = ref.dequantize_unscaled(data, sw, "swizzled", torch.float32) * factor.reshape(-1, 1)
    assert same_bits(out, full[128:256].to(dtype))


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1" or
                    importlib.util.find_spec("triton") is None,
                    reason="needs compiled Triton kernels")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_dequantize_scaled_matches_triton_bit_for_bit(dtype, layout):
    """The prefill route takes either kernel (extension when present, else Triton): both must
    write the same chunk, on a quantized random weight with per-row alpha and a NaN block."""
    from nvfp4_kernels.backends.triton import dequantize as triton_dequantize
    gen = torch.Generator().manual_seed(17)
    rows, cols = 1000, 1056
    w = torch.randn(rows, cols, generator=gen) * torch.logspace(-2, 2, cols)
    gs = ref.global_scale(w)
    data, scale, _ = ref.quantize(w, gs, layout)
    raw = scale.view(torch.uint8).clone().reshape(-1)
    raw[5] = 0x7F  # one NaN block
    scale = raw.view(torch.float8_e4m3fn).reshape(scale.shape)
    alpha = (torch.rand(rows, generator=gen) + 0.5) / gs
    if dtype == torch.float8_e4m3fn:
        alpha = torch.full((1,), 0.125)
    for factor in (alpha, alpha[:1].clone()):
        data_d, scale_d, factor_d = data.cuda(), scale.cuda(), factor.cuda()
        got = torch.empty(rows, cols, dtype=dtype, device="cuda")
        _c().dequantize_scaled(data_d, scale_d, factor_d, layout == "swizzled", got)
        want = triton_dequantize.dequantize_scaled(data_d, scale_d, factor_d, layout, dtype)
        got, want = got.cpu(), want.cpu()
        nan = torch.isnan(want.float())
        assert nan.sum() == 16 and torch.equal(torch.isnan(got.float()), nan)
        assert same_bits(got[~nan], want[~nan])


def test_dequantize_scaled_rejects_bad_arguments():
    data = torch.zeros(4, 16, dtype=torch.uint8, device="cuda")
    scale = torch.zeros(4, 2, dtype=torch.uint8, device="cuda").view(torch.float8_e4m3fn)
    one = torch.ones(1, device="cuda")
    out = torch.empty(4, 32, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(RuntimeError, match=r"out: expected shape \[4, 32\]"):
        _c().dequantize_scaled(data, scale, one, False, out[:, :16].contiguous())
    with pytest.raises(RuntimeError, match="out: dtype must be one of"):
        _c().dequantize_scaled(data, scale, one, False, out.to(torch.int32))
    with pytest.raises(RuntimeError, match="factor: expected 1 or 4"):
        _c().dequantize_scaled(data, scale, torch.ones(3, device="cuda"), False, out)
    with pytest.raises(RuntimeError, match="out: must start on a 16-byte boundary"):
        _c().dequantize_scaled(data[:2], scale[:2], one, False,
                               out.reshape(-1)[4:4 + 64].view(2, 32))
    empty = torch.empty(0, 32, dtype=torch.float16, device="cuda")
    assert _c().dequantize_scaled(data[:0], scale[:0], one, False, empty) is not None


def _c():
    from nvfp4_kernels import _extension
    return _extension.extension()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("slot_dtype", [torch.int32, torch.int64])
def test_kv_cache_write_and_gather_bit_exact(dtype, per_head, slot_dtype):
    g = torch.Generator().manual_seed(3)
    blocks, block_size, heads, dim, tokens = 6, 16, 4, 64, 37
    key = (torch.randn(tokens, heads, dim, generator=g) * 100).to(dtype)
    value = (torch.randn(tokens, heads, dim, generator=g) * 1000).to(dtype)  # saturates
    slots = torch.randperm(blocks * block_size, generator=g)[:tokens].to(slot_dtype)
    slots[5] = -1
    n_scale = heads if per_head else 1
    k_scale = torch.rand(n_scale, generator=g) + 0.5
    v_scale = torch.rand(n_scale, generator=g) + 0.5
    shape = (blocks, block_size, heads, dim)
    poison = torch.full(shape, 0xA5, dtype=torch.uint8)
    kc, vc = poison.clone().cuda().view(torch.float8_e4m3fn), poison.clone().cuda().view(torch.float8_e4m3fn)
    torch.ops.nvfp4.kv_cache_write(key.cuda(), value.cuda(), kc, vc, slots.cuda(),
                                   k_scale.cuda(), v_scale.cuda(), backend="cuda")
    rk, rv = poison.clone().view(torch.float8_e4m3fn), poison.clone().view(torch.float8_e4m3fn)
    ref.kv_cache_write(key, value, rk, rv, slots, k_scale, v_scale)
    assert torch.equal(kc.cpu().view(torch.uint8), rk.view(torch.uint8))
    assert torch.equal(vc.cpu().view(torch.uint8), rv.view(torch.uint8))

    block_table = torch.tensor([[0, 2, 4], [5, 1, 3]], dtype=slot_dtype)
    seq_lens = torch.tensor([40, 17], dtype=slot_dtype)
    _poison_allocator()
    got_k, got_v = torch.ops.nvfp4.kv_cache_gather(
        kc, vc, block_table.cuda(), seq_lens.cuda(), k_scale.cuda(), v_scale.cuda(), 57, dtype,
        backend="cuda")
    want_k, want_v = ref.kv_cache_gather(rk, rv, block_table, seq_lens, k_scale, v_scale, dtype)
    assert torch.equal(_bits(got_k.cpu()), _bits(want_k))
    assert torch.equal(_bits(got_v.cpu()), _bits(want_v))


def _misaligned(t):
    """The same values in a contiguous tensor whose data starts one element past an aligned
    address: forces the kernels' scalar (VEC = 1) path."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    out = buf[1:].view(t.shape)
    out.copy_(t)
    return out


@pytest.mark.parametrize("heads,dim", [(32, 256), (8, 20)])  # dim 20: no 8-wide vectors
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("aligned", [True, False])
def test_kv_cache_decode_shapes_and_out_of_range_indices(heads, dim, dtype, aligned):
    """Issue 10: a one-token decode write once read slot_mapping[1..] and key out of bounds (the
    launcher put tokens on grid.y, the kernels read them from blockIdx.x); a gather with more row
    chunks than tokens wrote past its output. Bit-exact against the reference backend, including
    slots and block ids outside the cache (skipped / zero-filled in-kernel)."""
    from nvfp4_kernels.backends import reference as ref_backend

    g = torch.Generator().manual_seed(heads * dim)
    blocks, block_size = 4, 16
    shape = (blocks, block_size, heads, dim)
    poison = torch.full(shape, 0xA5, dtype=torch.uint8)
    scale = torch.rand(heads, generator=g) + 0.5
    kc, vc = poison.clone().cuda(), poison.clone().cuda()
    rk, rv = poison.clone(), poison.clone()
    for slots in ([37], [blocks * block_size], [-3], [5, 10_000, -1, 63]):
        key = (torch.randn(len(slots), heads, dim, generator=g) * 50).to(dtype)
        value = (torch.randn(len(slots), heads, dim, generator=g) * 50).to(dtype)
        k_dev, v_dev = key.cuda(), value.cuda()
        if not aligned:
            k_dev, v_dev = _misaligned(k_dev), _misaligned(v_dev)
        slot_t = torch.tensor(slots, dtype=torch.int32)
        torch.ops.nvfp4.kv_cache_write(k_dev, v_dev, kc, vc, slot_t.cuda(), scale.cuda(),
                                       scale.cuda(), backend="cuda")
        ref_backend.kv_cache_write(key, value, rk, rv, slot_t, scale, scale)
        torch.cuda.synchronize()
        assert torch.equal(kc.cpu(), rk) and torch.equal(vc.cpu(), rv), slots

    table = torch.tensor([[1, 9], [3, 0], [-1, 2]], dtype=torch.int64)
    lens = torch.tensor([2, 20, 3], dtype=torch.int64)
    for total in (1, 3, 25, 40):  # few rows (fewer than the row chunks), all of them, more
        _poison_allocator()
        got_k, got_v = torch.ops.nvfp4.kv_cache_gather(
            kc, vc, table.cuda(), lens.cuda(), scale.cuda(), scale.cuda(), total, dtype,
            backend="cuda")
        want_k, want_v = ref_backend.kv_cache_gather(rk, rv, table, lens, scale, scale, total,
                                                     dtype)
        assert torch.equal(_bits(got_k.cpu()), _bits(want_k)), total
        assert torch.equal(_bits(got_v.cpu()), _bits(want_v)), total


def test_kv_cache_write_more_tokens_than_one_grid_dimension():
    """Tokens are strided over grid.x: more than 65535 tokens in one call work."""
    tokens, heads, dim = 70_000, 1, 16
    key = torch.randn(tokens, heads, dim, device="cuda", dtype=torch.bfloat16)
    kc = torch.zeros(tokens // 16 + 1, 16, heads, dim, dtype=torch.uint8, device="cuda")
    vc = kc.clone()
    slots = torch.arange(tokens, device="cuda")
    one = torch.ones(1, device="cuda")
    torch.ops.nvfp4.kv_cache_write(key, key, kc, vc, slots, one, one, backend="cuda")
    want = key.float().clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
    assert torch.equal(kc.reshape(-1, heads, dim)[:tokens], want)
