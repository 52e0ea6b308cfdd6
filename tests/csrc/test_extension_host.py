"""Host side of the C++ extension, no GPU needed: build metadata, the GEMM launchers' argument
checks, and CUTLASS's scale-factor layout against the swizzled layout of DESIGN §2."""

from __future__ import annotations

import ctypes
import os

import pytest
import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.reference import swizzle_scales

C = _extension.extension()
pytestmark = pytest.mark.skipif(C is None, reason=f"extension not built: {_extension.why_missing()}")

E4M3 = torch.float8_e4m3fn


def _operands(m=1, n=64, k=64, sf_k=None):
    sf_cols = -(-(k // 16) // 4) * 4 if sf_k is None else sf_k
    a = torch.zeros(m, k // 2, dtype=torch.uint8)
    b = torch.zeros(n, k // 2, dtype=torch.uint8)
    a_s = torch.zeros(-(-m // 128) * 128, sf_cols).to(E4M3)
    b_s = torch.zeros(-(-n // 128) * 128, sf_cols).to(E4M3)
    return a, b, a_s, b_s, torch.ones(())


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _defining_file(handle: ctypes.CDLL, symbol: str) -> str:
    """The file whose definition of `symbol` a lookup from `handle` binds to (dlsym searches the
    module first, then its dependencies)."""
    address = ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value
    libc = ctypes.CDLL(None)
    info = _DlInfo()
    assert libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)), symbol
    return os.path.realpath(info.dli_fname.decode())


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's dynamic loader")
def test_extension_carries_no_cxx_runtime_of_its_own():
    """A libstdc++ linked statically into the module is a second C++ runtime beside torch's: on
    the GPU machine (its g++ had no usable libstdc++.so) every error message crashed the process
    (issue 10). The runtime's own functions must come from the shared library torch loaded."""
    handle = ctypes.CDLL(C.__file__)  # already loaded: the same handle
    module = os.path.realpath(C.__file__)
    for symbol in ("_ZNSt6locale7classicEv", "__cxa_throw", "_ZNSo9_M_insertIlEERSoT_"):
        where = _defining_file(handle, symbol)
        assert where != module, f"{symbol} is defined inside the extension (static libstdc++)"
        assert "libstdc++" in os.path.basename(where), (symbol, where)


def test_compiled_archs_listed():
    archs = list(C.COMPILED_ARCHS)
    assert archs and all(a.startswith("sm_") for a in archs)
    assert C.HAS_GEMM_SM120 == ("sm_120a" in archs or "sm_121a" in archs)
    assert C.HAS_GEMM_SM100 == ("sm_100a" in archs)


@pytest.mark.parametrize("rows,k", [(1, 32), (127, 64), (130, 96), (256, 512), (300, 160)])
@pytest.mark.parametrize("operand_b", [False, True])
def test_cutlass_scale_layout_is_the_swizzled_layout(rows, k, operand_b):
    """offsets[r, j] = where CUTLASS reads scale (r, j); swizzle_scales must put it there."""
    offsets = C.gemm_scale_offsets(rows, k, operand_b)
    ids = torch.arange(rows * (k // 16), dtype=torch.float64).reshape(rows, k // 16)
    flat = swizzle_scales(ids).reshape(-1)  # value at each memory offset = linear id
    assert torch.equal(flat[offsets.reshape(-1)], ids.reshape(-1))


def test_gemm_checks_accept_valid_shapes_then_require_cuda():
    args = _operands(m=1, n=64, k=64)
    with pytest.raises(RuntimeError, match="a: must be a CUDA tensor"):
        C.gemm_check_args(*args, torch.bfloat16)


@pytest.mark.parametrize("m,n,k,match", [
    (1, 64, 48, "K must be a multiple of 32, got K=48"),
    (1, 48, 64, "N must be a multiple of 32, got N=48"),
])
def test_gemm_checks_alignment(m, n, k, match):
    with pytest.raises(RuntimeError, match=match):
        C.gemm_check_args(*_operands(m, n, k), torch.bfloat16)


def test_gemm_checks_k_disagreement_and_scales():
    a, b, a_s, b_s, alpha = _operands(m=3, n=64, k=64)
    with pytest.raises(RuntimeError, match="a and b disagree on K"):
        C.gemm_check_args(a, b[:, :16].contiguous(), a_s, b_s, alpha, torch.bfloat16)
    with pytest.raises(RuntimeError, match=r"a_scale: swizzled scales for a 3x64 operand need "
                                           r"128x4 = 512 elements"):
        C.gemm_check_args(a, b, a_s[:64].contiguous(), b_s, alpha, torch.bfloat16)
    with pytest.raises(RuntimeError, match="out_dtype must be bfloat16 or float16"):
        C.gemm_check_args(a, b, a_s, b_s, alpha, torch.float32)
    with pytest.raises(RuntimeError, match="alpha must be one float32 value"):
        C.gemm_check_args(a, b, a_s, b_s, torch.ones(64), torch.bfloat16)
    with pytest.raises(RuntimeError, match="dtype must be one of"):
        C.gemm_check_args(a.to(torch.int8), b, a_s, b_s, alpha, torch.bfloat16)


@pytest.mark.parametrize("arch,flag", [("sm_120a", "HAS_GEMM_SM120"), ("sm_100a", "HAS_GEMM_SM100")])
def test_gemm_entry_points(arch, flag):
    name = "gemm_sm120" if arch == "sm_120a" else "gemm_sm100"
    if getattr(C, flag):
        small = getattr(C, f"{name}_config")(1, 4096, 4096, torch.bfloat16)
        large = getattr(C, f"{name}_config")(4096, 4096, 4096, torch.bfloat16)
        assert small != large and "bf16" in small and "bf16" in large
        assert "fp16" in getattr(C, f"{name}_config")(1, 4096, 4096, torch.float16)
        with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
            getattr(C, name)(*_operands(), torch.bfloat16)
    else:
        with pytest.raises(RuntimeError, match=f"extension built with {arch}; this build has"):
            getattr(C, name)(*_operands(), torch.bfloat16)


def test_quantize_checks_before_device():
    with pytest.raises(RuntimeError, match="multiple of 16"):
        C.quantize(torch.zeros(2, 24), torch.ones(()), True)
    # The message is built in the extension's ostringstream: where the GPU machine crashed while
    # the module carried its own libstdc++ (issue 10).
    with pytest.raises(RuntimeError, match=r"x: must be a CUDA tensor, got shape \[2, 32\], "
                                           r"dtype Float, device cpu"):
        C.quantize(torch.zeros(2, 32), torch.ones(()), True)


def test_decode_gemm_entry_point():
    """Built (SM80-SM90 target): its host checks run before any device work; left out of the
    build: a stub that says which target is missing. Either way an error, never a crash."""
    a = torch.zeros(1, 64, dtype=torch.bfloat16)
    b = torch.zeros(64, 32, dtype=torch.uint8)
    b_scale = torch.zeros(128, 4).to(E4M3)  # swizzled: 64 rows padded to 128, 4 scale columns
    args = (a, None, b, b_scale, True, torch.ones(1), None, torch.bfloat16)
    if C.HAS_DECODE_GEMM:
        with pytest.raises(RuntimeError, match="decode GEMM: K must be a positive multiple of 32"):
            C.gemm_decode(a[:, :48].contiguous(), None, b[:, :24].contiguous(),
                          b_scale[:, :3].contiguous(), False, torch.ones(1), None,
                          torch.bfloat16)
        with pytest.raises(RuntimeError, match="a: must be a CUDA tensor"):
            C.gemm_decode(*args)
    else:
        with pytest.raises(RuntimeError, match="needs an extension built with an SM80-SM90 "
                                               "target"):
            C.gemm_decode(*args)


def test_quantize_computed_scale_checks_arguments_then_requires_cuda():
    """Shape and dtype errors name the argument before the CUDA requirement is checked."""
    x = torch.zeros(2, 16)
    cases = [((torch.zeros(2, 24), True), "x: the last dim must be a multiple of 16"),
             ((torch.zeros(2, 16, dtype=torch.int32), True), "x: dtype must be one of"),
             ((torch.zeros(16), True), "x: expected a 2-D tensor"),
             ((x, True, torch.ones(1, dtype=torch.float64)), "weight_alpha: must be float32"),
             ((x, True, torch.ones(0)), "weight_alpha: expected at least 1 element"),
             ((x, False, torch.ones(4, 2).t()), "weight_alpha: must be contiguous"),
             ((x, True, torch.ones(1)), "x: must be a CUDA tensor"),
             ((x, True), "x: must be a CUDA tensor")]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            C.quantize_computed_scale(*args)


def test_mid_gemm_entry_point():
    """As test_decode_gemm_entry_point, for the mid-size GEMM (same build group, same checks)."""
    a = torch.zeros(40, 64, dtype=torch.bfloat16)
    b = torch.zeros(64, 32, dtype=torch.uint8)
    b_scale = torch.zeros(128, 4).to(E4M3)
    args = (a, None, b, b_scale, True, torch.ones(1), None, torch.bfloat16)
    if C.HAS_MID_GEMM:
        with pytest.raises(RuntimeError, match="mid GEMM: K must be a positive multiple of 32"):
            C.gemm_mid(a[:, :48].contiguous(), None, b[:, :24].contiguous(),
                       b_scale[:, :3].contiguous(), False, torch.ones(1), None, torch.bfloat16)
        with pytest.raises(RuntimeError, match=r"mid GEMM: M must be in \[1, 64\], got 65"):
            C.gemm_mid(torch.zeros(65, 64, dtype=torch.bfloat16), *args[1:])
        with pytest.raises(RuntimeError, match="a: must be a CUDA tensor"):
            C.gemm_mid(*args)
    else:
        with pytest.raises(RuntimeError, match="needs an extension built with an SM80-SM90 "
                                               "target"):
            C.gemm_mid(*args)


def test_wgmma_gemm_entry_point():
    """The Hopper wgmma GEMM (csrc/gemm_wgmma.cu, sm_90a builds only): gemm_mid's checks with
    M up to 256, packed activations only on the pre-permuting launch shapes (8-10); a build
    without sm_90a has a stub that says so."""
    a = torch.zeros(40, 64, dtype=torch.bfloat16)
    b = torch.zeros(64, 32, dtype=torch.uint8)
    b_scale = torch.zeros(128, 4).to(E4M3)
    args = (a, None, b, b_scale, True, torch.ones(1), None, torch.bfloat16)
    if C.HAS_WGMMA_GEMM:
        with pytest.raises(RuntimeError, match=r"wgmma GEMM: M must be in \[1, 256\], got 257"):
            C.gemm_wgmma(torch.zeros(257, 64, dtype=torch.bfloat16), *args[1:])
        with pytest.raises(RuntimeError, match="need a pre-permuting launch shape"):
            C.gemm_wgmma(torch.zeros(40, 32, dtype=torch.uint8), b_scale, *args[2:])
        with pytest.raises(RuntimeError, match="a_scale is for packed activations"):
            C.gemm_wgmma(a, b_scale, *args[2:], 10)
        with pytest.raises(RuntimeError, match="a: must be a CUDA tensor"):
            C.gemm_wgmma(*args)
        assert C.gemm_wgmma_splits(128, 5376, 21504, 132) > 1
        assert C.gemm_wgmma_splits(128, 5376, 21504, 132, 1) == 1  # variant 1: no split-K
    else:
        with pytest.raises(RuntimeError, match="needs an extension built with sm_90a"):
            C.gemm_wgmma(*args)


@pytest.mark.skipif(C is None or not C.HAS_MID_GEMM, reason="no mid-size GEMM in this build")
def test_mid_gemm_split_k_policy():
    """csrc/include/nvfp4/mid_gemm.cuh choose_splits on the H100's 132 SMs (one 256-row CTA per
    SM at M = 64): N = 5376 layers (21 row tiles) split K to fill the SMs, a long K more than a
    short one; gate_up's 168 tiles split to soften its 1.27 waves; never more than 8, never
    below 4 chunks of 128 per split, never for variant 1."""
    sms = 132
    down = C.gemm_mid_splits(64, 5376, 21504, sms)
    o = C.gemm_mid_splits(64, 5376, 8192, sms)
    assert 4 <= o <= down <= 8
    assert 1 < C.gemm_mid_splits(64, 43008, 5376, sms) <= 4
    assert C.gemm_mid_splits(64, 5376, 21504, sms, 1) == 1  # variant 1: no split-K
    assert C.gemm_mid_splits(64, 300, 1024, sms) == 2  # 8 chunks: at most 2 splits of 4
    assert C.gemm_mid_splits(64, 300, 384, sms) == 1  # 3 chunks: too short to split
    # Enough tiles for whole waves: no split.
    assert C.gemm_mid_splits(64, 256 * 264, 5376, sms) == 1
