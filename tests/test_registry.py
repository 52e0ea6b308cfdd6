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
        "cuda": ({"quantize"}, None),
        "triton": ({"quantize", "gemm"}, None),
        "reference": ({"quantize", "gemm", "dequantize"}, None),
    })
    meta = torch.device("meta")  # any non-CPU device type exercises the full search
    assert registry.choose("quantize", meta)[0] == "cuda"
    assert registry.choose("gemm", meta)[0] == "triton"
    assert registry.choose("dequantize", meta)[0] == "reference"


def test_environment_forcing_falls_back_for_ops_the_backend_lacks(monkeypatch):
    fake_backends(monkeypatch, {
        "cutlass": ({"gemm"}, None), "cuda": (set(), None), "triton": ({"quantize"}, None),
        "reference": ({"quantize", "gemm"}, None)})
    monkeypatch.setenv("NVFP4_BACKEND", "triton")
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
