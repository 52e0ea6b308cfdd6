"""Backend choice: automatic order, forcing per call and by NVFP4_BACKEND, errors, caching, info."""

from __future__ import annotations

import types

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels.backends import registry


def test_cpu_tensors_use_the_reference():
    name, _ = registry.choose("quantize", torch.device("cpu"), (torch.bfloat16,))
    assert name == "reference"


@pytest.mark.parametrize("forced", ["cutlass", "cuda"])
def test_forcing_a_backend_that_cannot_run_names_what_is_missing(forced):
    x = torch.randn(4, 32)
    with pytest.raises(nk.BackendUnavailableError, match=f"backend='{forced}' cannot run on cpu"):
        nk.quantize(x, backend=forced)


def test_forcing_by_environment(monkeypatch):
    monkeypatch.setenv("NVFP4_BACKEND", "reference")
    registry.clear_cache()
    assert registry.choose("gemm", torch.device("cpu"))[0] == "reference"
    monkeypatch.setenv("NVFP4_BACKEND", "triton")  # no TRITON_INTERPRET: cannot run on the CPU
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    registry.clear_cache()
    if "quantize" in registry.backend_module("triton").OPS:
        with pytest.raises(nk.BackendUnavailableError, match="NVFP4_BACKEND=triton"):
            nk.quantize(torch.randn(2, 16))


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        nk.quantize(torch.randn(2, 16), backend="tpu")


def fake_backends(monkeypatch, spec):
    """spec: name -> (ops, reason or None). Replaces the backend modules for one test."""
    modules = {name: types.SimpleNamespace(
        OPS=frozenset(ops), why_unavailable=lambda device, r=reason: r,
        get=lambda op, n=name: (n, op)) for name, (ops, reason) in spec.items()}
    monkeypatch.setattr(registry, "backend_module", lambda name: modules[name])
    registry.clear_cache()


def test_automatic_choice_follows_priority_and_skips_what_cannot_run(monkeypatch):
    fake_backends(monkeypatch, {
        "cutlass": ({"gemm"}, "needs SM100/SM120"),
        "cuda": ({"quantize", "gemm_w4a16"}, None),
        "triton": ({"quantize", "gemm", "gemm_w4a16"}, None),
        "reference": ({"quantize", "gemm", "dequantize"}, None),
    })
    meta = torch.device("meta")  # any non-CPU device type exercises the full search
    assert registry.choose("gemm_w4a16", meta)[0] == "cuda"  # default order: cuda before triton
    assert registry.choose("gemm", meta)[0] == "triton"      # cutlass cannot run
    assert registry.choose("dequantize", meta)[0] == "reference"


def test_order_is_per_op(monkeypatch):
    """The KV cache prefers triton over cuda; quantize and dequantize cuda over triton (measured
    on the H100, docs/backends.md), quantize cutlass (hardware E2M1) before both."""
    fake_backends(monkeypatch, {name: (set(registry.OP_NAMES), None)
                                for name in registry.BACKEND_NAMES})
    meta = torch.device("meta")
    for op in ("kv_cache_write", "kv_cache_gather"):
        assert registry.choose(op, meta)[0] == "triton", op
        assert registry.order(op).index("triton") < registry.order(op).index("cuda")
    for op in ("quantize", "dequantize", "quantize_computed_scale"):
        assert registry.order(op).index("cuda") < registry.order(op).index("triton"), op
    assert registry.choose("quantize", meta)[0] == "cutlass"
    assert registry.choose("dequantize", meta)[0] == "cuda"
    assert registry.choose("gemm", meta)[0] == "cutlass"
    monkeypatch.setitem(registry.ORDER, ("gemm", 9), ("triton", "reference"))
    assert registry.order("gemm", (9, 0)) == ("triton", "reference")
    assert registry.order("gemm", (12, 0)) == registry.BACKEND_NAMES


def test_a_shape_the_backend_cannot_take_goes_to_the_next_one(monkeypatch):
    calls = []

    def impl(name):
        return lambda *args: calls.append(name) or name

    modules = {name: types.SimpleNamespace(OPS=frozenset({"gemm"}),
                                           why_unavailable=lambda device: None,
                                           get=lambda op, n=name: impl(n))
               for name in registry.BACKEND_NAMES}
    monkeypatch.setattr(registry, "backend_module", lambda name: modules[name])
    registry.clear_cache()
    meta = torch.device("meta")
    name, gemm = registry.choose("gemm", meta)
    assert name == "cutlass"
    a = torch.empty(4, 32, dtype=torch.uint8)   # K = 64
    ok_b = torch.empty(64, 32, dtype=torch.uint8)
    odd_b = torch.empty(40, 32, dtype=torch.uint8)  # N = 40: not a multiple of 32
    assert gemm(a, ok_b, None, None, None, None, None) == "cutlass"
    assert gemm(a, odd_b, None, None, None, None, None) == "cuda"
    reason, used = registry.fallbacks()[("gemm", "cutlass")]
    assert "multiples of 32" in reason and "N=40" in reason and used == "cuda"
    assert registry.report(meta)["gemm"]["fallbacks"]["cutlass"]["used"] == "cuda"
    # Forced per call, the shape limit is an error that says why.
    _, forced = registry.choose("gemm", meta, backend="cutlass")
    with pytest.raises(nk.BackendUnavailableError, match="N=40"):
        forced(a, odd_b, None, None, None, None, None)
    assert calls == ["cutlass", "cuda"]


def test_environment_is_read_once_per_clear(monkeypatch):
    fake_backends(monkeypatch, {name: ({"gemm"}, None) for name in registry.BACKEND_NAMES})
    meta = torch.device("meta")
    assert registry.choose("gemm", meta)[0] == "cutlass"
    monkeypatch.setenv("NVFP4_BACKEND", "triton")
    assert registry.choose("gemm", meta)[0] == "cutlass"  # cached: no environment read per call
    registry.clear_cache()
    assert registry.choose("gemm", meta)[0] == "triton"


def test_environment_forcing_falls_back_for_ops_the_backend_lacks(monkeypatch):
    fake_backends(monkeypatch, {
        "cutlass": ({"gemm"}, None), "cuda": (set(), None), "triton": ({"quantize"}, None),
        "reference": ({"quantize", "gemm"}, None)})
    monkeypatch.setenv("NVFP4_BACKEND", "triton")
    registry.clear_cache()
    meta = torch.device("meta")
    assert registry.choose("quantize", meta)[0] == "triton"
    assert registry.choose("gemm", meta)[0] == "cutlass"  # triton lacks gemm: automatic choice
    with pytest.raises(nk.BackendUnavailableError, match="does not implement gemm"):
        registry.choose("gemm", meta, backend="triton")  # per call, forcing is strict


def test_choice_is_cached_until_cleared(monkeypatch):
    calls = []
    fake_backends(monkeypatch, {name: ({"gemm"}, None) for name in registry.BACKEND_NAMES})
    original = registry.why_not
    monkeypatch.setattr(registry, "why_not", lambda *a: calls.append(a) or original(*a))
    meta = torch.device("meta")
    for _ in range(5):
        registry.choose("gemm", meta, (torch.float16,))
    assert len(calls) == 1
    registry.choose("gemm", meta, (torch.bfloat16,))  # new dtypes: a new choice
    assert len(calls) == 2


def test_info_reports_every_backend_with_a_reason():
    report = nk.info()
    assert set(report["backends"]) == set(registry.BACKEND_NAMES)
    ref = report["backends"]["reference"]
    assert ref["available"] and "gemm" in ref["ops"]
    for name, entry in report["backends"].items():
        assert entry["available"] or entry["reason"], name
    assert report["versions"]["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert report["gpu"] is None


def test_next_backend_skips_the_given_one_in_the_automatic_order():
    name, impl = registry.next_backend("gemm_w4a16", torch.device("cpu"), "cuda")
    assert name == "reference" and callable(impl)
