"""Every public op captures in a CUDA graph and replays to what eager gives (issue 11, item 1).

Each case builds static inputs, captures the call once, refills the inputs with new values,
replays, and compares bit for bit with an eager call on the same new values. The eager call also
runs under ``torch.cuda.set_sync_debug_mode("error")``: a device-to-host sync on the hot path
fails the test even where capture would not notice it. GPU only (skips cleanly without one).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels.benchmarking import capture

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

K, N, M = 256, 128, 4


@contextlib.contextmanager
def no_sync():
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def flat(out):
    if isinstance(out, nk.NVFP4):
        return [out.data, out.scale, out.global_scale]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat(o)]
    return [out]


def assert_same(a, b):
    for x, y in zip(flat(a), flat(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        xb = x.view(torch.uint8) if x.element_size() == 1 else x
        yb = y.view(torch.uint8) if y.element_size() == 1 else y
        assert torch.equal(xb, yb)


def check_replay(fn, static, refill):
    """Capture fn() over `static` tensors, refill them, replay; compare with eager fn()."""
    graph, captured = capture(fn)
    refill(static)
    graph.replay()
    torch.cuda.synchronize()
    got = [t.clone() for t in flat(captured)]
    with no_sync():
        want = fn()
    torch.cuda.synchronize()
    assert_same(got, flat(want))


def _randn(*shape, dtype=torch.bfloat16, scale=1.0):
    return (torch.randn(*shape, device="cuda") * scale).to(dtype)


def _refill_randn(static):
    for t in static:
        if t.is_floating_point():
            t.copy_(torch.randn_like(t.float()) * 3)


@pytest.mark.parametrize("scale_kind", ["computed", "tensor", "float"])
@pytest.mark.parametrize("layout", ["swizzled", "linear"])
def test_quantize(scale_kind, layout):
    x = _randn(M, K)
    gs = {"computed": None, "tensor": nk.global_scale(x), "float": 100.0}[scale_kind]
    check_replay(lambda: nk.quantize(x, gs, scale_layout=layout), [x], _refill_randn)


def test_dequantize():
    q = nk.quantize(_randn(M, K))
    data = q.data

    def refill(static):
        static[0].copy_(torch.randint(0, 256, static[0].shape, device="cuda", dtype=torch.uint8))
    check_replay(lambda: nk.dequantize(q), [data], refill)


@pytest.mark.parametrize("kind", ["w4a16", "w4a4"])
def test_gemm(kind):
    w = nk.quantize(_randn(N, K))
    x = _randn(M, K)
    if kind == "w4a16":
        check_replay(lambda: nk.gemm(x, w), [x], _refill_randn)
    else:
        check_replay(lambda: nk.gemm(nk.quantize(x), w), [x], _refill_randn)


@pytest.mark.parametrize("kind", ["w4a16", "w4a4"])
def test_gemm_prefill_route(kind):
    """Prefill sizes on SM80-SM90 take backends/triton/prefill.py (dequantize in chunks, then
    cuBLAS, buffers from the caching allocator); a small workspace forces several chunks."""
    from nvfp4_kernels.backends.triton import prefill
    n, k, m = 640, 256, 300
    w = nk.quantize(_randn(n, k))
    x = _randn(m, k)
    alpha = (1.0 / w.global_scale).reshape(1)
    if kind == "w4a16":
        check_replay(lambda: prefill.gemm_w4a16(x, w.data, w.scale, alpha, "swizzled",
                                                torch.bfloat16, None, workspace=256 * k * 2),
                     [x], _refill_randn)
    else:
        def run():
            q = nk.quantize(x)
            return prefill.gemm(q.data, w.data, q.scale, w.scale, alpha / q.global_scale,
                                torch.bfloat16, None, workspace=256 * k * 2)
        check_replay(run, [x], _refill_randn)
    check_replay(lambda: nk.gemm(x, w), [x], _refill_randn)  # the automatic choice at M = 300


def test_gemm_with_stored_weight_alpha():
    w = nk.quantize(_randn(N, K))
    alpha = torch.ones(1, device="cuda") / w.global_scale.reshape(1)
    x = _randn(M, K)
    check_replay(lambda: nk.gemm(x, w, weight_alpha=alpha), [x], _refill_randn)


def _kv_case(tokens=3, heads=4, dim=64, blocks=4, block_size=16):
    key, value = _randn(tokens, heads, dim, scale=30), _randn(tokens, heads, dim, scale=30)
    kc = torch.zeros(blocks, block_size, heads, dim, dtype=torch.float8_e4m3fn, device="cuda")
    return key, value, kc, kc.clone()


def test_kv_cache_write():
    key, value, kc, vc = _kv_case()
    slots = torch.tensor([3, 70, 17], device="cuda")  # 70 is outside the cache: skipped
    k_scale = torch.tensor([0.5], device="cuda")

    def write():
        nk.kv_cache.write(key, value, kc, vc, slots, k_scale, 2.0)
        return kc, vc
    graph, _ = capture(write)
    key.copy_(torch.randn_like(key.float()) * 30)
    slots.copy_(torch.tensor([9, 40, -1], device="cuda"))
    kc.zero_(), vc.zero_()
    graph.replay()
    torch.cuda.synchronize()
    got = (kc.clone(), vc.clone())
    kc.zero_(), vc.zero_()
    with no_sync():
        write()
    torch.cuda.synchronize()
    assert_same(got, (kc, vc))
    assert kc.view(torch.uint8).reshape(-1, *kc.shape[2:])[9].any()


def test_kv_cache_gather():
    key, value, kc, vc = _kv_case(tokens=64)
    nk.kv_cache.write(key, value, kc, vc, torch.arange(64, device="cuda"), 1.0, 1.0)
    table = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32, device="cuda")
    lens = torch.tensor([20, 9], dtype=torch.int32, device="cuda")

    def refill(static):
        static[0].copy_(torch.tensor([[3, 2], [1, 0]], dtype=torch.int32, device="cuda"))
        static[1].copy_(torch.tensor([25, 4], dtype=torch.int32, device="cuda"))
    check_replay(lambda: nk.kv_cache.gather(kc, vc, table, lens, 0.5, 0.25, total_tokens=29),
                 [table, lens], refill)


@pytest.mark.parametrize("splits", [None, 1])
def test_attention_decode(splits):
    """Lengths and block ids change between capture and replay; the split count is fixed by
    max_seq_len (a Python int), so the captured launch is still right."""
    kc = (torch.randn(8, 16, 2, 64, device="cuda") * 2).to(torch.float8_e4m3fn)
    vc = (torch.randn(8, 16, 2, 64, device="cuda") * 2).to(torch.float8_e4m3fn)
    q = _randn(2, 8, 64)
    table = torch.tensor([[0, 1, 2], [3, 4, -1]], dtype=torch.int32, device="cuda")
    lens = torch.tensor([40, 20], dtype=torch.int32, device="cuda")

    def refill(static):
        static[0].copy_(torch.tensor([[5, 6, 7], [2, 1, 0]], dtype=torch.int32, device="cuda"))
        static[1].copy_(torch.tensor([3, 48], dtype=torch.int32, device="cuda"))
        static[2].copy_(torch.randn_like(static[2].float()))
    check_replay(lambda: nk.attention.decode(q, kc, vc, table, lens, 0.5, 0.25, window=30,
                                             max_seq_len=48, num_splits=splits),
                 [table, lens, q], refill)


@pytest.mark.parametrize("mode", ["w4a16", "w4a4_static", "w4a4_dynamic"])
def test_nvfp4_linear(mode):
    linear = torch.nn.Linear(K, N, bias=True, device="cuda", dtype=torch.bfloat16)
    x = _randn(M, K)
    if mode == "w4a16":
        layer = nk.NVFP4Linear.from_linear(linear, activations="bf16")
    else:
        in_gs = nk.global_scale(x) if mode == "w4a4_static" else None
        layer = nk.NVFP4Linear.from_linear(linear, activations="nvfp4", input_global_scale=in_gs)
    with torch.no_grad():
        check_replay(lambda: layer(x), [x], _refill_randn)
