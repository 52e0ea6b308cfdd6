"""NVFP4Linear: numerics against the reference, shapes, fused shards, state_dict and .to()."""

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from nvfp4_kernels.nn import NVFP4Linear


def _linear(k=64, n=48, bias=True, dtype=torch.bfloat16, seed=0):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    torch.nn.init.normal_(lin.weight, std=0.05)
    return lin.to(dtype)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_w4a16_matches_dequantized_weight():
    lin = _linear()
    m = NVFP4Linear.from_linear(lin, activations="bf16")
    x = torch.randn(2, 3, 64, dtype=torch.bfloat16)
    q = nk.quantize(lin.weight.detach(), scale_layout="linear")
    w_hat = ref.dequantize(q.data, q.scale, q.global_scale, "linear", torch.float64)
    want = x.double() @ w_hat.T + lin.bias.double()
    y = m(x)
    assert y.shape == (2, 3, 48) and y.dtype == torch.bfloat16
    assert _rel(y, want) <= 5e-3
    # codes and scales are kept bit for bit; x*(1/gs) vs x/gs differ by at most one float32 ulp
    assert torch.equal(m.weight, q.data)
    assert torch.equal(ref.unswizzle_scales(m.weight_scale, 48, 4).view(torch.uint8),
                       q.scale.view(torch.uint8))
    torch.testing.assert_close(m.dequantize_weight(torch.float64), w_hat, rtol=2.4e-7, atol=0)


@pytest.mark.parametrize("static", [False, True])
def test_w4a4_matches_quantized_operands(static):
    lin = _linear()
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    in_gs = nk.global_scale(x) * 0.5 if static else None  # static: a deliberately wider range
    m = NVFP4Linear.from_linear(lin, "nvfp4", in_gs)
    qa = nk.quantize(x, in_gs, scale_layout="linear")
    a_hat = ref.dequantize(qa.data, qa.scale, qa.global_scale, "linear", torch.float64)
    want = a_hat @ m.dequantize_weight(torch.float64).T + lin.bias.double()
    assert _rel(m(x), want) <= 5e-3
    assert ("static" in repr(m)) == static


def test_float32_input_and_no_bias():
    lin = _linear(bias=False, dtype=torch.float32)
    m = NVFP4Linear.from_linear(lin, "bf16")
    x = torch.randn(4, 64)
    y = m(x)
    assert y.dtype == torch.float32 and m.bias is None
    assert _rel(y, x.double() @ m.dequantize_weight(torch.float64).T) <= 5e-3


def test_fused_shards_with_different_global_scales_stay_exact():
    shards = []
    for i, (n, std) in enumerate([(32, 0.01), (16, 0.2), (16, 1.0)]):
        lin = torch.nn.Linear(64, n, bias=True)
        torch.nn.init.normal_(lin.weight, std=std)
        shards.append(NVFP4Linear.from_linear(lin.bfloat16(), "bf16"))
    fused = NVFP4Linear.cat(shards)
    assert fused.weight_alpha.numel() == 64  # per-column alpha
    want = torch.cat([s.dequantize_weight() for s in shards])
    assert torch.equal(fused.dequantize_weight(), want)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert _rel(fused(x), torch.cat([s(x) for s in shards], dim=-1)) <= 5e-3
    assert "per-column" in repr(fused)


def test_fused_shards_w4a4_keep_smallest_input_scale():
    shards = [NVFP4Linear.from_linear(_linear(seed=s), "nvfp4", g) for s, g in [(0, 4.0), (1, 2.0)]]
    fused = NVFP4Linear.cat(shards)
    assert float(fused.input_global_scale) == 2.0


def test_state_dict_round_trip_and_to_dtype():
    shards = [NVFP4Linear.from_linear(_linear(seed=s, n=32), "nvfp4", 3.0) for s in range(2)]
    fused = NVFP4Linear.cat(shards)
    sd = fused.state_dict()
    assert set(sd) == {"weight", "weight_scale", "weight_alpha", "input_global_scale", "bias"}
    fresh = NVFP4Linear(64, 64, activations="nvfp4")
    fresh.load_state_dict(sd)
    for k, v in sd.items():
        assert torch.equal(fresh.state_dict()[k].view(torch.uint8) if v.dtype.itemsize == 1
                           else fresh.state_dict()[k], v.view(torch.uint8)
                           if v.dtype.itemsize == 1 else v)
    half = fresh.to(torch.float16)
    assert half.weight_scale.dtype == torch.float8_e4m3fn
    assert half.weight_alpha.dtype == torch.float32 and half.bias.dtype == torch.float16


def test_errors_are_clear():
    with pytest.raises(ValueError, match="multiple of 16"):
        NVFP4Linear.from_linear(torch.nn.Linear(40, 8))
    with pytest.raises(ValueError, match="weight-only"):
        NVFP4Linear.from_linear(_linear(), "bf16", input_global_scale=1.0)
    with pytest.raises(ValueError, match="activations"):
        NVFP4Linear.from_linear(_linear(), "fp8")
    m = NVFP4Linear.from_linear(_linear(), "bf16")
    with pytest.raises(ValueError, match="last dim 64"):
        m(torch.randn(2, 32, dtype=torch.bfloat16))


def test_quantize_model_replaces_selected_linears():
    model = torch.nn.Sequential()
    model.add_module("embed", torch.nn.Linear(16, 16))
    model.add_module("up_proj", torch.nn.Linear(16, 32))
    model.add_module("odd", torch.nn.Linear(24, 16))   # K not a multiple of 16: left dense
    model.add_module("lm_head", torch.nn.Linear(16, 8))
    names = nk.quantize_model(model, activations="bf16")
    assert names == ["up_proj"]
    assert isinstance(model.up_proj, NVFP4Linear) and type(model.odd) is torch.nn.Linear
    assert nk.quantize_model(model, exclude="up") == []


def test_static_w4a4_alpha_follows_reloaded_scales():
    """The cached weight_alpha / input_global_scale is recomputed when either buffer changes
    (in place or by load_state_dict), so the output always uses the live scales."""
    lin = _linear()
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    m = NVFP4Linear.from_linear(lin, activations="nvfp4", input_global_scale=nk.global_scale(x))
    first = m(x)
    assert torch.equal(m(x), first)  # cached alpha: same result
    other = NVFP4Linear.from_linear(lin, activations="nvfp4",
                                    input_global_scale=nk.global_scale(x) * 0.5)
    want = other(x)
    m.input_global_scale.copy_(other.input_global_scale)  # in place, as weight reloaders do
    assert torch.equal(m(x), want)
    m.load_state_dict(NVFP4Linear.from_linear(lin, activations="nvfp4",
                                              input_global_scale=nk.global_scale(x)).state_dict())
    assert torch.equal(m(x), first)
    m.weight_alpha.mul_(2.0)
    assert torch.equal(m(x), NVFP4Linear.from_quantized(
        m.weight, m.weight_scale, weight_alpha=m.weight_alpha.clone(), bias=m.bias,
        input_global_scale=m.input_global_scale, scale_layout="swizzled")(x))


@pytest.mark.parametrize("activations,static", [("bf16", False), ("nvfp4", True),
                                                ("nvfp4", False)])
def test_forward_compiles_fullgraph(activations, static):
    lin = _linear()
    x = torch.randn(2, 3, 64, dtype=torch.bfloat16)
    in_gs = nk.global_scale(x) if static else None
    m = NVFP4Linear.from_linear(lin, activations=activations, input_global_scale=in_gs)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), m(x))
