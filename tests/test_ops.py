"""torch.library contract of every nvfp4 op: opcheck, fake kernels, torch.compile(fullgraph)."""

from __future__ import annotations

import pytest
import torch
from torch.library import opcheck

import nvfp4_kernels as nk

ALL_TESTS = ("test_schema", "test_autograd_registration", "test_faketensor",
             "test_aot_dispatch_dynamic")
# SchemaCheckMode compares inputs before/after with allclose, which torch has no CPU kernel for
# on float8; with e4m3 inputs we run the other checks, and test_schema on uint8 views of them.
NO_SCHEMA = ALL_TESTS[1:]


def u8(t):
    return t.view(torch.uint8)


def sample_args(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(33, 64, generator=gen).bfloat16().to(device)
    qa = nk.quantize(x)
    w = nk.quantize(torch.randn(48, 64, generator=gen).to(device))
    wl = nk.quantize(torch.randn(48, 64, generator=gen).to(device), scale_layout="linear")
    alpha = (1 / (qa.global_scale * w.global_scale)).reshape(1)
    kc = torch.zeros(4, 16, 2, 64, dtype=torch.float8_e4m3fn, device=device)
    key = torch.randn(5, 2, 64, generator=gen).to(device)
    slots = torch.tensor([0, 3, -1, 40, 63], device=device)
    scale = torch.tensor([0.5], device=device)
    table = torch.tensor([[1, 2], [0, 3]], dtype=torch.int32, device=device)
    lens = torch.tensor([20, 7], dtype=torch.int32, device=device)
    return {
        "quantize": [((x, qa.global_scale, "swizzled"), ALL_TESTS),
                     ((x, qa.global_scale, "linear"), ALL_TESTS)],
        "quantize_computed_scale": [((x, "swizzled"), ALL_TESTS),
                                    ((x, "linear", alpha), ALL_TESTS)],
        "dequantize": [((qa.data, u8(qa.scale), qa.global_scale, "swizzled", torch.float16),
                        ALL_TESTS),
                       ((wl.data, wl.scale, wl.global_scale, "linear", torch.float32), NO_SCHEMA)],
        "gemm": [((qa.data, w.data, u8(qa.scale), u8(w.scale), alpha, torch.bfloat16), ALL_TESTS),
                 ((qa.data, w.data, qa.scale, w.scale, alpha, torch.float16,
                   torch.randn(48, device=device)), NO_SCHEMA)],
        "gemm_w4a16": [((x, w.data, u8(w.scale), alpha, "swizzled", None), ALL_TESTS),
                       ((x.half(), wl.data, wl.scale, alpha, "linear", torch.bfloat16),
                        NO_SCHEMA)],
        "kv_cache_write": [((key, key, u8(kc.clone()), u8(kc.clone()), slots, scale, scale),
                            ALL_TESTS),
                           ((key, key, kc.clone(), kc.clone(), slots, scale, scale), NO_SCHEMA)],
        "kv_cache_gather": [((u8(kc), u8(kc), table, lens, scale, scale, 27, torch.bfloat16),
                             ALL_TESTS)],
    }


@pytest.mark.parametrize("op", ["quantize", "quantize_computed_scale", "dequantize", "gemm",
                                "gemm_w4a16",
                                "kv_cache_write", "kv_cache_gather"])
def test_opcheck(op, device):
    for args, tests in sample_args(device)[op]:
        result = opcheck(getattr(torch.ops.nvfp4, op).default, args, test_utils=tests)
        assert all(v == "SUCCESS" for v in result.values()), result


def test_fake_kernels_give_shapes_without_running():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(150, 96, dtype=torch.float16)
        data, scale = torch.ops.nvfp4.quantize(x, torch.empty(()), "swizzled")
        assert data.shape == (150, 48) and scale.shape == (256, 8)
        assert scale.dtype == torch.float8_e4m3fn
        outs = torch.ops.nvfp4.quantize_computed_scale(x, "linear", torch.empty(40))
        assert [tuple(t.shape) for t in outs] == [(150, 48), (150, 6), (), (40,)]
        out = torch.ops.nvfp4.gemm(data, data[:40], scale, torch.empty(128, 8, dtype=scale.dtype),
                                   torch.empty(1), torch.float16)
        assert out.shape == (150, 40) and out.dtype == torch.float16
        with pytest.raises(ValueError, match="b_scale"):
            torch.ops.nvfp4.gemm(data, data[:40], scale, scale[:5], torch.empty(1), torch.float16)


def test_compile_fullgraph_quantize_then_gemm_matches_eager(device):
    """Inductor around the custom ops: on a GPU the kernel backends run inside the graph."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 64, generator=gen).bfloat16().to(device)
    w = nk.quantize(torch.randn(32, 64, generator=gen).to(device))
    bias = torch.randn(32, generator=gen).to(device)

    def forward(x, w, bias):
        y = nk.gemm(nk.quantize(x), w, bias=bias)
        return y + nk.gemm(x, w)

    compiled = torch.compile(forward, fullgraph=True)  # default backend: inductor
    got = compiled(x, w, bias)
    assert got.device == x.device
    assert torch.equal(got, forward(x, w, bias))


def test_compile_fullgraph_kv_cache_round_trip(device):
    def step(key, kc, vc, slots, table, lens):
        one = torch.ones(1, device=key.device)
        nk.kv_cache.write(key, key, kc, vc, slots, one, one)
        return nk.kv_cache.gather(kc, vc, table, lens, one, one, total_tokens=3)

    key = torch.randn(3, 1, 64, device=device)
    args = (torch.tensor([0, 1, 2], device=device),
            torch.tensor([[0]], dtype=torch.int32, device=device),
            torch.tensor([3], dtype=torch.int32, device=device))
    kc1, vc1 = (torch.zeros(1, 16, 1, 64, dtype=torch.float8_e4m3fn, device=device)
                for _ in range(2))
    kc2, vc2 = kc1.clone(), vc1.clone()
    eager = step(key, kc1, vc1, *args)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(key, kc2, vc2, *args)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(kc1.view(torch.uint8),
                                                              kc2.view(torch.uint8))


def test_eager_entry_points_bypass_the_dispatcher_only_in_plain_eager_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nvfp4_kernels import _dispatch, ops

    assert _dispatch.eager()
    x = torch.randn(5, 32)
    gs = nk.global_scale(x)
    direct = ops.quantize(x, gs, "linear")
    via_op = torch.ops.nvfp4.quantize(x, gs, "linear")
    assert all(torch.equal(a.view(torch.uint8), b.view(torch.uint8))
               for a, b in zip(direct, via_op))
    with FakeTensorMode() as mode:
        assert not _dispatch.eager()
        data, scale = ops.quantize(mode.from_tensor(x), mode.from_tensor(gs), "linear")
        assert data.shape == (5, 16) and scale.shape == (5, 2)
    seen = []

    def f(x, gs):
        seen.append(_dispatch.eager())
        return ops.quantize(x, gs, "linear")[0]
    torch.compile(f, fullgraph=True, backend="eager")(x, gs)
    assert seen and not any(seen)
