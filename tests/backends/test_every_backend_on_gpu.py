"""Every op on every backend that implements it, forced per call on CUDA tensors, against the
reference on the CPU: quantize/dequantize/KV cache bit for bit, the GEMMs within DESIGN's bar
of float64. A backend that cannot run on this GPU (cutlass on SM90, no extension) skips with its
reason; without a GPU the whole file skips. Outputs land in memory poisoned beforehand.

Forcing is strict: a forced backend that cannot take a call raises instead of handing it on, so
a passing case ran that backend. The cuda GEMMs hand shapes their decode kernel does not take to
the next backend by design, so their shapes are checked to be ones it takes.
"""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from nvfp4_kernels.backends import registry
from tests.conftest import assert_same_bits, assert_same_codes, rel_error
from tests.test_gemm import BAR, float64_reference

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CASES = [(op, name) for op in registry.OP_NAMES for name in registry.BACKEND_NAMES
         if op in registry.backend_module(name).OPS]


def _run_on(name, op):
    """Skip unless backend `name` can run `op` on this GPU."""
    reason = registry.why_not(name, op, torch.device("cuda"))
    if reason is not None:
        pytest.skip(reason)


def _poison_allocator(nbytes=16 << 20):
    """The caching allocator hands this NaN-filled memory to the next outputs."""
    block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    block.fill_(0xFF)
    del block


def _activations(rows, cols, seed, dtype=torch.bfloat16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * torch.logspace(-2, 2, cols)
    x[0, :16] = 0  # an all-zero block
    return x.to(dtype)


def _quantize(name):
    x = _activations(37, 96, 1)  # rows not a multiple of 128: swizzle padding
    gs = ref.global_scale(x)
    for layout in ("swizzled", "linear"):
        _poison_allocator()
        data, scale = torch.ops.nvfp4.quantize(x.cuda(), gs.cuda(), layout, backend=name)
        want_data, want_scale, _ = ref.quantize(x, gs, layout)
        assert_same_codes(data, want_data)
        assert_same_bits(scale, want_scale)


def _quantize_computed_scale(name):
    x = _activations(37, 96, 3)
    x[5, 9] = float("inf")  # ignored by the global scale; its block gets scale 448
    x[7, 20] = float("nan")  # ignored too; its block gets the e4m3 NaN scale and zero codes
    weight_alpha = torch.rand(40) + 0.5
    for layout in ("swizzled", "linear"):
        _poison_allocator()
        data, scale, gs, alpha = torch.ops.nvfp4.quantize_computed_scale(
            x.cuda(), layout, weight_alpha.cuda(), backend=name)
        want_data, want_scale, want_gs = ref.quantize(x, None, layout)
        assert_same_codes(data, want_data)
        assert_same_bits(scale, want_scale)
        assert_same_bits(gs.reshape(1), want_gs.reshape(1))
        assert_same_bits(alpha, weight_alpha / want_gs)


def _dequantize(name):
    for layout in ("swizzled", "linear"):
        data, scale, gs = ref.quantize(_activations(37, 96, 2, torch.float32), None, layout)
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            _poison_allocator()
            got = torch.ops.nvfp4.dequantize(data.cuda(), scale.cuda(), gs.cuda(), layout, dtype,
                                             backend=name)
            assert_same_bits(got, ref.dequantize(data, scale, gs, layout, dtype))


# Shapes every GEMM backend takes: M within the cuda decode kernel's range, N and K multiples of
# 32 for cutlass, K not a multiple of the Triton tiles.
GEMM_SHAPES = [(1, 96, 160), (13, 64, 224)]


def _gemm(name, w4a16):
    from nvfp4_kernels.backends import cuda

    for m, n, k in GEMM_SHAPES:
        gen = torch.Generator().manual_seed(m * n + k)
        a = (torch.randn(m, k, generator=gen) * 2).bfloat16()
        w = nk.quantize(torch.randn(n, k, generator=gen))
        bias = torch.randn(n, generator=gen)
        for out_dtype in (torch.bfloat16, torch.float16):
            _poison_allocator()
            if w4a16:
                a_dev = a.cuda() if out_dtype == torch.bfloat16 else a.half().cuda()
                if name == "cuda":
                    assert cuda._decode_gemm_takes(a_dev, w.data.cuda())
                alpha = (1 / w.global_scale).reshape(1).cuda()
                got = torch.ops.nvfp4.gemm_w4a16(a_dev, w.data.cuda(), w.scale.cuda(), alpha,
                                                 "swizzled", out_dtype, bias.cuda(), backend=name)
                want = float64_reference(a_dev.cpu(), w, bias)
            else:
                qa = nk.quantize(a)
                if name == "cuda":
                    assert cuda._decode_gemm_takes(qa.data.cuda(), w.data.cuda())
                alpha = (1 / (qa.global_scale * w.global_scale)).reshape(1).cuda()
                got = torch.ops.nvfp4.gemm(qa.data.cuda(), w.data.cuda(), qa.scale.cuda(),
                                           w.scale.cuda(), alpha, out_dtype, bias.cuda(),
                                           backend=name)
                want = float64_reference(qa, w, bias)
            assert got.is_cuda and got.dtype == out_dtype and got.shape == (m, n)
            assert rel_error(got, want) < BAR, (m, n, k, out_dtype)


def _kv_cache(name, op):
    gen = torch.Generator().manual_seed(5)
    blocks, block_size, heads, dim, tokens = 6, 16, 4, 64, 37
    key = torch.randn(tokens, heads, dim, generator=gen).bfloat16() * 100
    value = torch.randn(tokens, heads, dim, generator=gen).bfloat16() * 1000  # saturates
    slots = torch.randperm(blocks * block_size, generator=gen)[:tokens]
    slots[5] = -1
    k_scale, v_scale = torch.rand(heads, generator=gen) + 0.5, torch.tensor([0.75])
    poison = torch.full((blocks, block_size, heads, dim), 0xA5, dtype=torch.uint8)
    kc, vc = (poison.clone().cuda().view(torch.float8_e4m3fn) for _ in range(2))
    rk, rv = (poison.clone().view(torch.float8_e4m3fn) for _ in range(2))
    ref.kv_cache_write(key, value, rk, rv, slots, k_scale, v_scale)
    write_name = name if op == "kv_cache_write" else "reference"
    torch.ops.nvfp4.kv_cache_write(key.cuda(), value.cuda(), kc, vc, slots.cuda(), k_scale.cuda(),
                                   v_scale.cuda(), backend=write_name)
    assert_same_bits(kc, rk)
    assert_same_bits(vc, rv)
    if op == "kv_cache_gather":
        table = torch.tensor([[0, 2, 4], [5, 1, 3]], dtype=torch.int32)
        lens = torch.tensor([40, 17], dtype=torch.int32)  # 57 rows in all
        for dtype in (torch.bfloat16, torch.float32):
            _poison_allocator()
            got_k, got_v = torch.ops.nvfp4.kv_cache_gather(
                kc, vc, table.cuda(), lens.cuda(), k_scale.cuda(), v_scale.cuda(), 57, dtype,
                backend=name)
            want_k, want_v = ref.kv_cache_gather(rk, rv, table, lens, k_scale, v_scale, dtype)
            assert_same_bits(got_k, want_k)
            assert_same_bits(got_v, want_v)


@pytest.mark.parametrize("op,name", CASES, ids=[f"{op}-{name}" for op, name in CASES])
def test_op_on_backend_matches_the_reference(op, name):
    _run_on(name, op)
    if op == "quantize":
        _quantize(name)
    elif op == "quantize_computed_scale":
        _quantize_computed_scale(name)
    elif op == "dequantize":
        _dequantize(name)
    elif op in ("gemm", "gemm_w4a16"):
        _gemm(name, w4a16=op == "gemm_w4a16")
    else:
        _kv_cache(name, op)


def test_automatic_choice_is_a_kernel_backend_and_info_reports_it():
    """On a GPU with the kernel backends present, no op falls to the reference, and
    ``nk.info()`` names the backend that the calls use."""
    device = torch.device("cuda", torch.cuda.current_device())
    choice = nk.info(device)["choice"]
    for op in registry.OP_NAMES:
        name, _ = registry.choose(op, device)
        assert choice[op]["chosen"] == name, op
        kernels = [n for n in registry.order(op, registry.capability(device))
                   if n != "reference" and registry.why_not(n, op, device) is None]
        if kernels:
            assert name == kernels[0], (op, name, kernels)
