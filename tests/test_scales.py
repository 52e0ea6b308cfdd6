"""Scale validation (nvfp4_kernels._scales) at every place a scale enters, and NVFP4's own checks.

Scales must be finite and > 0; a bad one is refused with a message naming the argument or tensor
and its value. Values of device tensors are read only where they enter (construction, loading)
or with the opt-in debug switch, never per op call.
"""

from __future__ import annotations

import math

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import _scales, debug
from nvfp4_kernels.reference import swizzled_shape

BAD = [0.0, -1.0, -1e6, math.nan, math.inf, -math.inf]


@pytest.fixture
def debug_checks():
    previous = debug.set_checks(True)
    yield
    debug.set_checks(previous)


# ---------------------------------------------------------------------------------------------
# The shared functions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", BAD)
def test_python_number_scales_are_refused_with_their_name_and_value(value):
    with pytest.raises(_scales.ScaleError, match=rf"k_scale: must be finite and > 0, got "
                                                 rf"{repr(float(value)).replace('(', '')}"):
        _scales.check_scale_value("k_scale", value)


def test_python_number_scales_accept_positive_and_refuse_non_numbers():
    assert _scales.check_scale_value("global_scale", 3) == 3.0
    assert _scales.check_scale_value("global_scale", 1e-30) == 1e-30
    with pytest.raises(TypeError, match="global_scale: expected a positive finite number"):
        _scales.check_scale_value("global_scale", "2.0")
    with pytest.raises(TypeError, match="global_scale"):
        _scales.check_scale_value("global_scale", True)


def test_tensor_scales_name_the_bad_values_and_shape():
    good = torch.tensor([1.0, 2.0, 0.5])
    assert _scales.check_scale_tensor("weight_alpha", good, numel=(1, 3)) is good
    with pytest.raises(_scales.ScaleError, match=r"weight_alpha: must be finite and > 0, got "
                                                 r"\[0\.0, nan\] among its 4 values"):
        _scales.check_scale_tensor("weight_alpha", torch.tensor([1.0, 0.0, math.nan, 2.0]))
    with pytest.raises(_scales.ScaleError, match=r"weight_alpha: expected 1 or 8 element\(s\), "
                                                 r"got shape \(3,\)"):
        _scales.check_scale_tensor("weight_alpha", good, numel=(1, 8))
    with pytest.raises(TypeError, match=r"input_scale: expected dtype torch.float32, got shape "
                                        r"\(\), dtype torch.float64"):
        _scales.check_scale_tensor("input_scale", torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(_scales.ScaleError, match="expected at least 1 element"):
        _scales.check_scale_tensor("s", torch.ones(0))
    # meta tensors carry no values: shape/dtype checks only
    _scales.check_scale_tensor("s", torch.empty(1, device="meta"))


def test_debug_check_runs_only_when_switched_on(debug_checks):
    bad = torch.tensor([-1.0])
    with pytest.raises(_scales.ScaleError, match=r"k_scale: must be finite and > 0, got -1\.0"):
        _scales.debug_check_scale("k_scale", bad)
    debug.set_checks(False)
    _scales.debug_check_scale("k_scale", bad)  # off: no value read, no error


# ---------------------------------------------------------------------------------------------
# Where scales enter
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, -1.0, -1e6, math.nan, math.inf])
def test_quantize_refuses_bad_python_global_scale(value):
    with pytest.raises(ValueError, match="global_scale: must be finite and > 0"):
        nk.quantize(torch.randn(4, 32), value)


def test_quantize_refuses_bad_cpu_tensor_global_scale():
    with pytest.raises(ValueError, match=r"global_scale: must be finite and > 0, got -1\.0"):
        nk.quantize(torch.randn(4, 32), torch.tensor(-1.0))


@pytest.mark.parametrize("value", [0.0, -2.0, math.nan, math.inf])
def test_linear_construction_refuses_bad_scales(value):
    q = nk.quantize(torch.randn(32, 64))
    with pytest.raises(ValueError, match="weight_alpha: must be finite and > 0"):
        nk.NVFP4Linear.from_quantized(q.data, q.scale, weight_alpha=value,
                                      scale_layout="swizzled")
    with pytest.raises(ValueError, match="input_global_scale: must be finite and > 0"):
        nk.NVFP4Linear.from_quantized(q.data, q.scale, weight_alpha=1.0, scale_layout="swizzled",
                                      input_global_scale=value)


def _linear():
    torch.manual_seed(0)
    return nk.NVFP4Linear.from_linear(torch.nn.Linear(64, 32), activations="nvfp4",
                                      input_global_scale=100.0)


@pytest.mark.parametrize("key, value, match", [
    ("weight_alpha", torch.tensor([-1.0]), r"weight_alpha: must be finite and > 0, got -1\.0"),
    ("weight_alpha", torch.tensor([math.nan]), r"weight_alpha: must be finite and > 0, got nan"),
    ("weight_alpha", torch.ones(5), r"weight_alpha: expected 1 or 32 element"),
    ("input_global_scale", torch.tensor([0.0]), r"input_global_scale: must be finite and > 0"),
    ("input_global_scale", torch.tensor([math.inf]), r"input_global_scale: must be finite"),
    ("input_global_scale", torch.ones(2), r"input_global_scale: expected 1 element"),
])
def test_load_state_dict_validates_scales_and_changes_nothing(key, value, match):
    lin = _linear()
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    sd = dict(before)
    sd[key] = value
    target = _linear()
    with pytest.raises(ValueError, match=match):
        target.load_state_dict(sd)
    for k, v in target.state_dict().items():
        assert torch.equal(v.view(torch.uint8) if v.dtype == torch.float8_e4m3fn else v,
                           before[k].view(torch.uint8) if v.dtype == torch.float8_e4m3fn
                           else before[k]), k


def test_load_state_dict_round_trip_still_works():
    lin = _linear()
    other = nk.NVFP4Linear(64, 32, activations="nvfp4", bias_dtype=torch.float32)
    other.load_state_dict(lin.state_dict())
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert torch.equal(other(x), lin(x))


def test_in_features_zero_works_as_documented():
    for act in ("nvfp4", "bf16"):
        lin = nk.NVFP4Linear(0, 8, activations=act)
        torch.nn.init.normal_(lin.bias)
        y = lin(torch.randn(3, 0, dtype=torch.bfloat16))
        assert y.shape == (3, 8) and torch.equal(y, lin.bias.expand(3, 8).to(y.dtype))
    with pytest.raises(ValueError, match="out_features: expected a non-negative int"):
        nk.NVFP4Linear(16, -1)


# ---------------------------------------------------------------------------------------------
# NVFP4 construction
# ---------------------------------------------------------------------------------------------

def _parts(rows=4, cols=32, layout="linear"):
    q = nk.quantize(torch.randn(rows, cols), scale_layout=layout)
    return q.data, q.scale, q.global_scale


def test_nvfp4_accepts_consistent_fields_and_tuples_for_shape():
    data, scale, gs = _parts()
    q = nk.NVFP4(data, scale, gs, "linear", (4, 32))
    assert q.shape == torch.Size((4, 32)) and isinstance(q.shape, torch.Size)
    assert torch.equal(nk.dequantize(q), nk.dequantize(nk.quantize(
        nk.dequantize(q, torch.float32), gs, scale_layout="linear")))


@pytest.mark.parametrize("build, exc, match", [
    (lambda d, s, g: nk.NVFP4(d, s, g, "linear", (4, 16)), ValueError,
     r"NVFP4.data: a tensor of logical shape \(4, 16\) needs data of shape \(4, 8\), got "
     r"shape \(4, 16\)"),
    (lambda d, s, g: nk.NVFP4(d.reshape(8, 8), s, g, "linear", (8, 16)), ValueError,
     r"NVFP4.scale: linear scales for logical shape \(8, 16\) must have shape \(8, 1\)"),
    (lambda d, s, g: nk.NVFP4(d.long() + 300, s, g, "linear", (4, 32)), TypeError,
     r"NVFP4.data: expected uint8 .* dtype torch.int64"),
    (lambda d, s, g: nk.NVFP4(d, s.float(), g, "linear", (4, 32)), TypeError,
     r"NVFP4.scale: expected float8_e4m3fn"),
    (lambda d, s, g: nk.NVFP4(d, s, g, "swizzled", (4, 32)), ValueError,
     r"NVFP4.scale: swizzled scales for 4 rows x 2 scale columns need 128x4 = 512 elements"),
    (lambda d, s, g: nk.NVFP4(d, s, g, "blocked", (4, 32)), ValueError, "NVFP4.scale_layout"),
    (lambda d, s, g: nk.NVFP4(d, s, g, "linear", (4, 30)), ValueError,
     r"NVFP4.shape: the last dim K must be a multiple of 16"),
    (lambda d, s, g: nk.NVFP4(d, s, g, "linear", ()), ValueError, r"NVFP4.shape"),
    (lambda d, s, g: nk.NVFP4(d, s, g.double(), "linear", (4, 32)), TypeError,
     r"NVFP4.global_scale: expected one float32 value"),
    (lambda d, s, g: nk.NVFP4(d, s, torch.ones(2), "linear", (4, 32)), TypeError,
     r"NVFP4.global_scale: expected one float32 value"),
    (lambda d, s, g: nk.NVFP4(d, s, -g, "linear", (4, 32)), ValueError,
     r"NVFP4.global_scale: must be finite and > 0"),
    (lambda d, s, g: nk.NVFP4(d.numpy(), s, g, "linear", (4, 32)), TypeError,
     r"NVFP4.data: expected a torch.Tensor"),
    (lambda d, s, g: nk.NVFP4(d, s, g.to("meta"), "linear", (4, 32)), ValueError,
     r"must be on one device"),
    (lambda d, s, g: nk.NVFP4(d, s, g, "linear", (4, 32))._replace(shape=(8, 16)), ValueError,
     r"NVFP4.data"),
])
def test_nvfp4_construction_names_the_disagreeing_field(build, exc, match):
    data, scale, gs = _parts()
    with pytest.raises(exc, match=match):
        build(data, scale, gs)


def test_nvfp4_keeps_its_helpers():
    q = nk.quantize(torch.randn(2, 3, 32), scale_layout="linear")
    flat = q.as_2d()
    assert flat.shape == (6, 32) and flat.scale.shape == (6, 2)
    sw = q.with_scale_layout("swizzled")
    assert sw.scale.shape == swizzled_shape(6, 2) and sw.shape == q.shape
    assert sw.with_scale_layout("linear").scale.shape == (2, 3, 2)
    assert q.to("cpu").nbytes() == q.nbytes() == 6 * 16 + 6 * 2 + 4
    assert q._replace(global_scale=q.global_scale * 2).global_scale == q.global_scale * 2
    assert isinstance(q, tuple) and q._fields == ("data", "scale", "global_scale",
                                                  "scale_layout", "shape")


def test_nvfp4_repr_is_short():
    q = nk.quantize(torch.ones(4, 16) * 3.0)
    text = repr(q)
    assert text == ("NVFP4(shape=(4, 16), scale_layout='swizzled', device=cpu, "
                    "global_scale=896)")
    big = nk.quantize(torch.randn(64, 1024))
    assert len(repr(big).splitlines()) == 1 and len(repr(big)) < 120


def test_nvfp4_device_scale_value_is_checked_only_with_debug_checks(debug_checks):
    # A meta tensor stands in for a device tensor (no value): never read, never an error.
    data = torch.empty(4, 16, dtype=torch.uint8, device="meta")
    scale = torch.empty(4, 2, dtype=torch.float8_e4m3fn, device="meta")
    nk.NVFP4(data, scale, torch.empty((), device="meta"), "linear", (4, 32))
