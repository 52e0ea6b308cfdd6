"""Device-only global scales (nvfp4_kernels._global_scale): DESIGN §2 values, no host tensors."""

from __future__ import annotations

import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _global_scale as _scales
from nvfp4_kernels import reference as ref


def test_global_scale_matches_the_reference_bit_for_bit(device):
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        for mag in (1e-3, 1.0, 1e4):  # finite in fp16 (where the reference agrees)
            x = (torch.randn(7, 48, generator=gen) * mag).to(dtype).to(device)
            got = nk.global_scale(x)
            assert got.shape == () and got.dtype == torch.float32 and got.device == x.device
            assert torch.equal(got.cpu(), ref.global_scale(x.cpu()))


def test_global_scale_edge_cases(device):
    zeros = torch.zeros(3, 16, device=device)
    assert nk.global_scale(zeros).item() == 1.0
    assert nk.global_scale(torch.zeros(0, 16, device=device)).item() == 1.0
    tiny = torch.full((1, 16), 1e-40, device=device)  # 2688 / 1e-40 overflows float32
    assert nk.global_scale(tiny).item() == torch.finfo(torch.float32).max
    x = torch.randn(2, 16, device=device)
    poisoned = x.clone()
    poisoned[0, 3], poisoned[1, 5] = float("inf"), float("nan")
    finite = x.clone()
    finite[0, 3] = finite[1, 5] = 0.0
    assert torch.equal(nk.global_scale(poisoned), nk.global_scale(finite))  # non-finite ignored


def test_division_is_ieee_not_reciprocal_times_constant():
    # 2688 / t in PyTorch is reciprocal(t) * 2688, which differs in the last bit for some t.
    amax = torch.tensor([3.0, 7.0, 0.1, 1e-3, 123.456])
    want = torch.full_like(amax, 2688.0) / amax
    got = torch.stack([nk.global_scale(torch.full((1, 16), float(a))) for a in amax])
    assert torch.equal(got, want)


def test_python_float_scales_are_filled_on_the_device(device):
    gs = _scales.as_global_scale(123.5, device)
    assert gs.shape == () and gs.dtype == torch.float32 and gs.item() == 123.5
    x = torch.randn(4, 32, device=device)
    assert torch.equal(nk.quantize(x, 123.5).data, nk.quantize(x, torch.tensor(123.5,
                                                                  device=device)).data)


def test_gemm_weight_alpha_matches_the_computed_one():
    gen = torch.Generator().manual_seed(2)
    w = nk.quantize(torch.randn(32, 64, generator=gen))
    x = torch.randn(3, 64, generator=gen).bfloat16()
    alpha = torch.ones(1) / w.global_scale.reshape(1)
    assert torch.equal(nk.gemm(x, w, weight_alpha=alpha), nk.gemm(x, w))
    qx = nk.quantize(x)
    assert torch.equal(nk.gemm(qx, w, weight_alpha=alpha), nk.gemm(qx, w))


def test_python_number_scales_reuse_one_filled_tensor_until_written(device):
    a = _scales.constant(0.75, device, (1,))
    assert a.shape == (1,) and a.dtype == torch.float32 and a.item() == 0.75
    assert _scales.constant(0.75, device, (1,)) is a  # eager: filled once per value
    assert _scales.constant(0.75, device).shape == ()  # the shape is part of the key
    a.mul_(2)  # written in place (e.g. through a returned NVFP4.global_scale): not reused
    b = _scales.constant(0.75, device, (1,))
    assert b is not a and b.item() == 0.75


def test_quantize_with_a_number_returns_the_same_values_as_with_a_tensor(device):
    x = torch.randn(3, 32, device=device)
    q1, q2 = nk.quantize(x, 2.5), nk.quantize(x, 2.5)
    assert q1.global_scale.item() == q2.global_scale.item() == 2.5
    q1.global_scale.fill_(7.0)  # the caller owns what it got back; later calls are unaffected
    assert nk.quantize(x, 2.5).global_scale.item() == 2.5


def test_decode_scale_is_kept_and_follows_in_place_changes(device):
    w = nk.quantize(torch.randn(32, 64, device=device))
    inv = w.decode_scale()
    assert inv.shape == (1,) and torch.equal(inv, torch.ones(1, device=device) /
                                             w.global_scale.reshape(1))
    assert w.decode_scale() is inv  # eager: computed once per weight
    w.global_scale.mul_(2.0)
    again = w.decode_scale()
    assert again is not inv and torch.equal(again, torch.ones(1, device=device) /
                                            w.global_scale.reshape(1))


def test_decode_scale_inside_torch_compile_reads_the_live_global_scale():
    w = nk.quantize(torch.randn(16, 32))

    def f(gs_factor):
        return nk.NVFP4(w.data, w.scale, w.global_scale * gs_factor, w.scale_layout,
                        w.shape).decode_scale()
    compiled = torch.compile(f, fullgraph=True, backend="eager")
    for factor in (1.0, 4.0):
        t = torch.tensor(factor)
        assert torch.equal(compiled(t), torch.ones(1) / (w.global_scale * t).reshape(1))


def test_number_scales_are_cached_under_inference_mode_too(device):
    with torch.inference_mode():
        a = _scales.constant(0.125, device, (1,))
        assert _scales.constant(0.125, device, (1,)) is a
        x = torch.randn(2, 32, device=device)
        assert nk.quantize(x, 0.125).global_scale.item() == 0.125
