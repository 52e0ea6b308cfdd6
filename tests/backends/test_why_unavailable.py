"""Why the cuda/cutlass backends refuse a GPU (backends/cuda.py, backends/cutlass.py
``why_unavailable``), checked without one: the capability query and the
extension's contents are stubbed, so these run in CI whether or not the extension is built."""

from __future__ import annotations

import types

import pytest
import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.backends import cuda, cutlass

GPU = torch.device("cuda", 0)  # constructing a device queries nothing


def _fake_build(monkeypatch, archs, sm120=False, sm100=False):
    ext = types.SimpleNamespace(COMPILED_ARCHS=archs, HAS_GEMM_SM120=sm120, HAS_GEMM_SM100=sm100)
    monkeypatch.setattr(_extension, "_load", lambda: (ext, None))


def _fake_gpu(monkeypatch, module, capability):
    # Every backend asks the registry for the capability; stub it there.
    monkeypatch.setattr(module.registry, "capability", lambda device: capability)


def test_cutlass_names_the_missing_arch(monkeypatch):
    _fake_build(monkeypatch, ["sm_90a"])
    _fake_gpu(monkeypatch, cutlass, (12, 0))
    assert cutlass.why_unavailable(GPU) == ("cutlass backend needs SM100/SM120 and an extension "
                                            "built with sm_120a; this build has: sm_90a")


def test_cutlass_on_hopper(monkeypatch):
    _fake_build(monkeypatch, ["sm_90a", "sm_100a", "sm_120a"], True, True)
    _fake_gpu(monkeypatch, cutlass, (9, 0))
    assert cutlass.why_unavailable(GPU) == "cutlass backend needs SM100/SM120, this GPU is SM90"


@pytest.mark.parametrize("capability", [(10, 0), (12, 0)])
def test_cutlass_available_with_its_arch(monkeypatch, capability):
    _fake_build(monkeypatch, ["sm_90a", "sm_100a", "sm_120a"], True, True)
    _fake_gpu(monkeypatch, cutlass, capability)
    assert cutlass.why_unavailable(GPU) is None


@pytest.mark.parametrize("archs,capability,ok", [
    (["sm_90a"], (9, 0), True),
    (["sm_90a"], (8, 0), False),       # no PTX: an sm_90a build has nothing for an A100
    (["sm_80"], (8, 6), True),         # plain targets run on newer minors of the same major
    (["sm_120a"], (12, 1), False),     # "a" targets run on exactly their arch
    (["sm_90a", "sm_100a", "sm_120a"], (12, 0), True),
])
def test_cuda_needs_code_for_the_gpu(monkeypatch, archs, capability, ok):
    _fake_build(monkeypatch, archs)
    _fake_gpu(monkeypatch, cuda, capability)
    reason = cuda.why_unavailable(GPU)
    assert (reason is None) == ok
    if not ok:
        assert "rebuild with NVFP4_CUDA_ARCHS=" in reason and ", ".join(archs) in reason


def test_missing_extension_warns_once(monkeypatch):
    monkeypatch.setattr(_extension, "_load", lambda: (None, "the extension is not built (test)"))
    _extension._warn_once.cache_clear()
    _fake_gpu(monkeypatch, cuda, (9, 0))
    with pytest.warns(RuntimeWarning, match="not built"):
        assert cuda.why_unavailable(GPU) == "the extension is not built (test)"
    with _no_warning():
        cuda.why_unavailable(GPU)
    _extension._warn_once.cache_clear()


class _no_warning:
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not self._log, [str(w.message) for w in self._log]
