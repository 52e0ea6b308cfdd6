"""The backend's Triton kernels compile ahead of time for sm_90 (H100), checked without a GPU.

sm90_compile_check.py compiles each kernel the launchers use (GEMM decode / prefill / W4A4,
the decode GEMV, split-K reduce, quantize, dequantize, global scale, KV write and gather, decode
attention and its combine) with triton.compile for
GPUTarget("cuda", 90, 32), in a subprocess without TRITON_INTERPRET (this directory's conftest
sets it in-process when there is no GPU, and Triton fixes interpret-or-compile per process).
The assertions are on the generated PTX and on the SASS disassembled from the cubin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
GEMMS = ("gemm_w4a16_decode", "gemm_w4a16_prefill", "gemm_w4a4_prefill_noswap")
GEMVS = ("gemv_w4a16_m1", "gemv_w4a16_m4", "gemv_w4a4_m1")
ATTENTION = ("attention_decode_d256", "attention_decode_d512")
KERNELS = GEMMS + GEMVS + ("split_k_reduce", "quantize", "dequantize", "dequantize_scaled",
                           "dequantize_index64", "global_scale", "kv_cache_write",
                           "kv_cache_gather", "attention_combine") + ATTENTION


@pytest.fixture(scope="module")
def result():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(HERE / "sm90_compile_check.py")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output (rc {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
    res = json.loads(lines[-1])
    assert "kernels" in res, res.get("error", res)
    return res


def test_every_kernel_compiles_for_sm90(result):
    assert set(result["kernels"]) == set(KERNELS)
    for name, k in result["kernels"].items():
        assert k["ok"], f"{name} failed to compile for sm_90:\n{k.get('error')}"
        assert k["arch"] == 90, name
        assert "ptx" in k["asm_keys"] and "cubin" in k["asm_keys"], name
    assert result["ok"]


def test_gemm_configs_are_the_launchers(result):
    dec = result["kernels"]["gemm_w4a16_decode"]["config"]
    assert dec["block_m"] <= 16 and dec["swap_ab"] and dec["split_k"] > 1
    pre = result["kernels"]["gemm_w4a16_prefill"]["config"]
    assert pre["block_m"] >= 128 and pre["split_k"] == 1


def test_prefill_gemms_use_wgmma(result):
    for name in ("gemm_w4a16_prefill", "gemm_w4a4_prefill_noswap"):
        k = result["kernels"][name]
        assert k["wgmma"] > 0, f"{name}: no wgmma.mma_async in the PTX"
        assert k["sass_hgmma"] > 0, f"{name}: no HGMMA in the SASS"


def test_decode_gemm_uses_tensor_cores(result):
    k = result["kernels"]["gemm_w4a16_decode"]
    assert k["wgmma"] + k["mma_sync"] > 0, "decode GEMM: no tensor-core MMA in the PTX"
    assert k["sass_hgmma"] + k["sass_hmma"] > 0, "decode GEMM: no HGMMA/HMMA in the SASS"


def test_gemv_configs_are_the_launchers(result):
    k = result["kernels"]
    assert k["gemv_w4a16_m1"]["config"]["block_m"] == 1
    assert k["gemv_w4a16_m4"]["config"]["block_m"] == 4


def test_gemv_is_fma_with_16_byte_loads(result):
    """The GEMV multiplies on the FMA units (no tensor cores), reads the packed weights with
    16-byte loads and the dense activations with 16-byte read-only loads (the inline PTX)."""
    for name in GEMVS:
        k = result["kernels"][name]
        assert k["wgmma"] + k["mma_sync"] == 0 and k["sass_hgmma"] + k["sass_hmma"] == 0, name
        assert k["sass_ffma"] > 0, f"{name}: no FFMA in the SASS"
        assert k["sass_ldg128"] > 0, f"{name}: no 16-byte weight loads (LDG.E.128)"
    for name in ("gemv_w4a16_m1", "gemv_w4a16_m4"):
        assert result["kernels"][name]["sass_ldg128_const"] > 0, (
            f"{name}: activations not read with 16-byte read-only loads")


def test_gemv_m1_registers(result):
    """At M = 1 the GEMV's latency hiding comes from resident warps: at most 128 registers per
    thread keeps 4 programs of 128 threads on an SM (91 when this test was written)."""
    for name in ("gemv_w4a16_m1", "gemv_w4a4_m1"):
        regs = result["kernels"][name]["registers"]
        assert regs is not None, f"{name}: register count unreadable"
        assert regs <= 128, f"{name}: {regs} registers per thread"


def _check_ieee(k, name):
    assert k["div_rn"] > 0, f"{name}: no div.rn.f32 in the PTX"
    assert k["div_approx"] == 0 and k["div_full"] == 0, f"{name}: approximate division"


def test_quantize_divides_ieee(result):
    _check_ieee(result["kernels"]["quantize"], "quantize")


def test_dequantize_global_scale_and_kv_write_divide_ieee(result):
    _check_ieee(result["kernels"]["dequantize"], "dequantize")
    _check_ieee(result["kernels"]["global_scale"], "global_scale")
    _check_ieee(result["kernels"]["kv_cache_write"], "kv_cache_write")


def test_dequantize_stays_in_registers(result):
    """One word per thread per tile: decode, interleave and the 16-byte store need no shuffle
    through shared memory (see backends/triton/dequantize.py). Triton 3.6 (the H100 machine's)
    still stages the interleave through 2 KB of shared memory; there the kernel measured 78-84 %
    of copy bandwidth (docs/performance.md), so only newer Triton is held to this."""
    version = tuple(int(p) for p in triton.__version__.split(".")[:2])
    for name in ("dequantize", "dequantize_scaled", "dequantize_index64"):
        k = result["kernels"][name]
        if version >= (3, 7):
            assert k["shared"] == 0 and k["sass_shared"] == 0, f"{name}: shared memory in use"
    # The fast path divides without div.rn per value: the kernel's only full divisions are the
    # reciprocal of gs and the out-of-range fallback (one FCHK each per value of the fallback).
    assert result["kernels"]["dequantize"]["sass_fchk"] <= 9


def test_no_flush_to_zero(result):
    """Only the softmax exponentials may flush: a weight 2**-126 below the row's largest (1)
    changes no output bit, and Triton's exp2 is ex2.approx.ftz."""
    for name, k in result["kernels"].items():
        allowed = k["ftz_ex2"] if name.startswith("attention_") else 0
        assert k["ftz"] == allowed, f"{name}: .ftz instructions in the PTX (subnormals flushed)"


def test_attention_reads_the_cache_with_16_byte_loads(result):
    for name in ATTENTION:
        k = result["kernels"][name]
        assert k["sass_ld_128"] > 0, f"{name}: no 16-byte global loads in the SASS"
        assert k["sass_ldg_u8"] == 0, f"{name}: byte-wide global loads of the cache"
        # Word loads: the tile reaches the MMA operand layout as fp16 (ldmatrix), not as codes
        # read back from shared memory a byte per instruction. (The head_dim 512 default keeps
        # byte loads: faster there on the H100, see attention.config_for.)
        if k["config"]["words"]:
            assert k["sass_lds_u8"] == 0, f"{name}: LDS.U8 in the SASS"
        assert k["mma_sync"] + k["wgmma"] > 0, f"{name}: no tensor-core MMA"


def test_no_local_memory(result):
    """No LDL/STL in the SASS: no register spills (nor any stack frame) in any kernel."""
    for name, k in result["kernels"].items():
        assert k["local_ld"] is not None, f"{name}: no SASS (cuobjdump unavailable?)"
        assert k["local_ld"] == 0 and k["local_st"] == 0, (
            f"{name}: {k['local_ld']} LDL / {k['local_st']} STL in the SASS (spills)")
