"""Bad input gets a clear error naming the argument, its shape and dtype; nothing is written."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk


@pytest.fixture
def w():
    return nk.quantize(torch.randn(32, 64))


def test_quantize_wrong_dtype():
    with pytest.raises(TypeError, match=r"x: dtype must be one of .*torch.int32"):
        nk.quantize(torch.ones(4, 32, dtype=torch.int32))


def test_quantize_last_dim_not_multiple_of_16():
    with pytest.raises(ValueError, match=r"x: the last dim \(shape \(4, 40\)\) must be a "
                                         r"multiple of 16, got 40"):
        nk.quantize(torch.randn(4, 40))


def test_quantize_non_contiguous():
    with pytest.raises(ValueError, match=r"x: must be contiguous.*shape \(64, 32\)"):
        nk.quantize(torch.randn(32, 64).t())


def test_quantize_bad_layout_and_scale():
    with pytest.raises(ValueError, match="scale_layout"):
        nk.quantize(torch.randn(4, 32), scale_layout="blocked")
    with pytest.raises(TypeError, match="global_scale: dtype"):
        nk.quantize(torch.randn(4, 32), torch.tensor(2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="global_scale: expected 1 element"):
        nk.quantize(torch.randn(4, 32), torch.ones(3))


def test_mismatched_devices_are_named():
    # A meta tensor stands in for a second device on a machine without a GPU.
    x = torch.randn(4, 32)
    with pytest.raises(ValueError, match="global_scale is on meta but x is on cpu"):
        torch.ops.nvfp4.quantize(x, torch.ones((), device="meta"), "linear")


def test_gemm_k_mismatch(w):
    with pytest.raises(ValueError, match=r"a and b disagree on K.*K=48.*K=64"):
        nk.gemm(torch.randn(3, 48).bfloat16(), w)
    with pytest.raises(ValueError, match="a and b disagree on K"):
        nk.gemm(nk.quantize(torch.randn(3, 32)), w)


def test_gemm_bad_operands(w):
    with pytest.raises(TypeError, match="b: expected an nvfp4_kernels.NVFP4"):
        nk.gemm(torch.randn(3, 64).bfloat16(), torch.randn(32, 64))
    with pytest.raises(TypeError, match=r"a: dtype must be one of.*torch.float32"):
        nk.gemm(torch.randn(3, 64), w)  # W4A16 takes bf16/fp16 activations
    with pytest.raises(TypeError, match="out_dtype"):
        nk.gemm(torch.randn(3, 64).bfloat16(), w, out_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"bias: expected shape \(32,\)"):
        nk.gemm(torch.randn(3, 64).bfloat16(), w, bias=torch.zeros(31))
    with pytest.raises(ValueError, match="b: expected a 2-D weight"):
        nk.gemm(torch.randn(3, 64).bfloat16(), nk.quantize(torch.randn(2, 32, 64)))


def test_raw_gemm_checks_scale_shapes_and_alpha(w):
    qa = nk.quantize(torch.randn(5, 64))
    alpha = torch.ones(1)
    with pytest.raises(ValueError, match=r"a_scale: swizzled scales for a 5x64 matrix need "
                                         r"128x4 = 512 elements"):
        torch.ops.nvfp4.gemm(qa.data, w.data, qa.scale[:64], w.scale, alpha, torch.bfloat16)
    with pytest.raises(TypeError, match="a_scale: dtype"):
        torch.ops.nvfp4.gemm(qa.data, w.data, qa.scale.float(), w.scale, alpha, torch.bfloat16)
    with pytest.raises(ValueError, match="alpha: expected 1 or 32 element"):
        torch.ops.nvfp4.gemm(qa.data, w.data, qa.scale, w.scale, torch.ones(5), torch.bfloat16)
    with pytest.raises(TypeError, match=r"a: dtype must be one of \(torch.uint8\)"):
        torch.ops.nvfp4.gemm(qa.data.int(), w.data, qa.scale, w.scale, alpha, torch.bfloat16)


def test_dequantize_checks():
    q = nk.quantize(torch.randn(4, 32), scale_layout="linear")
    with pytest.raises(TypeError, match="q: expected nvfp4_kernels.NVFP4"):
        nk.dequantize(torch.zeros(4, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="dtype"):
        nk.dequantize(q, torch.int8)
    with pytest.raises(ValueError, match=r"scale: linear scales for a 4x32 matrix must have "
                                         r"shape \(4, 2\)"):
        torch.ops.nvfp4.dequantize(q.data, q.scale[:3], q.global_scale, "linear", torch.float32)


def test_kv_cache_checks():
    kc = torch.zeros(2, 16, 2, 64, dtype=torch.float8_e4m3fn)
    vc = kc.clone()
    key = torch.randn(3, 2, 64)
    slots = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"key: expected \[tokens, 2, 64\]"):
        nk.kv_cache.write(torch.randn(3, 4, 64), key, kc, vc, slots, 1.0, 1.0)
    with pytest.raises(TypeError, match="slot_mapping: dtype"):
        nk.kv_cache.write(key, key, kc, vc, slots.float(), 1.0, 1.0)
    with pytest.raises(ValueError, match="slot_mapping: expected one slot per token"):
        nk.kv_cache.write(key, key, kc, vc, slots[:2], 1.0, 1.0)
    with pytest.raises(ValueError, match="k_scale: expected 1 or 2 element"):
        nk.kv_cache.write(key, key, kc, vc, slots, torch.ones(3), 1.0)
    with pytest.raises(TypeError, match="key_cache: dtype"):
        nk.kv_cache.write(key, key, kc.float(), vc, slots, 1.0, 1.0)
    with pytest.raises(ValueError, match="key_cache and value_cache differ"):
        nk.kv_cache.write(key, key, kc, vc[:1], slots, 1.0, 1.0)
    assert torch.all(kc.float() == 0)  # nothing was written by any failed call
