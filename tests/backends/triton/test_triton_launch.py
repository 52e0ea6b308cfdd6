"""backends/triton/_launch.launch: Triton's launch once per specialization key, then the cached
compiled kernel's C launcher with the same arguments.

No GPU is needed: the kernel, its compiled form and the device queries are stand-ins, so what is
tested is the caching logic itself (which calls take which path, with which arguments). The GPU
tests of every kernel (tests/backends/triton, test_cuda_graph.py) run the real thing.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from nvfp4_kernels.backends.triton import _launch  # noqa: E402


class _OnGpu:
    """Stands in for the first kernel argument, a CUDA tensor."""
    is_cuda = True


class _Compiled:
    function, packed_metadata = "function-handle", "packed-metadata"

    def __init__(self, calls):
        self.calls = calls

    def run(self, *args):
        self.calls.append(("fast", args))


class _Param:
    def __init__(self, is_constexpr):
        self.is_constexpr = is_constexpr


class _Kernel:
    """Parameters: (gpu tensor, tensor, int, CONSTEXPR, CONSTEXPR), as in Triton's
    JITFunction.params (the last two are constexprs)."""
    params = [_Param(False), _Param(False), _Param(False), _Param(True), _Param(True)]

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        def slow(*args, **options):
            self.calls.append(("triton", grid, args, options))
            return _Compiled(self.calls)
        return slow


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(_launch, "_raw_stream", lambda: (lambda index: 1234 + index))
    monkeypatch.setattr(_launch, "_stream", None)
    monkeypatch.setattr(_launch, "_runtime_knobs", None)
    _launch.forget_compiled()
    yield _Kernel()
    _launch.forget_compiled()


def test_first_call_through_triton_then_the_c_launcher(kernel):
    gpu, buf = _OnGpu(), torch.zeros(8)
    _launch.launch(kernel, (3, 2), (gpu, buf, 32, 4, True), num_warps=4, num_stages=2)
    assert kernel.calls == [("triton", (3, 2), (gpu, buf, 32, 4, True),
                             {"num_warps": 4, "num_stages": 2})]
    _launch.launch(kernel, (5,), (gpu, buf, 48, 4, True), num_warps=4, num_stages=2)
    # Same key (48 is also a multiple of 16): grid padded to 3-D, the current stream, no launch
    # metadata or hooks, then every kernel parameter (constexprs too) in order.
    assert kernel.calls[1] == ("fast", (5, 1, 1, 1234, "function-handle", "packed-metadata",
                                        None, None, None, gpu, buf, 48, 4, True))


@pytest.mark.parametrize("change", ["int_not_16", "int_one", "int64", "constexpr", "dtype",
                                    "misaligned", "num_warps"])
def test_any_specialization_change_goes_through_triton_again(kernel, change):
    gpu, buf = _OnGpu(), torch.zeros(64)
    base = [gpu, buf, 32, 4, True]
    _launch.launch(kernel, (1,), tuple(base), num_warps=4)
    args, warps = list(base), 4
    if change == "int_not_16":
        args[2] = 33
    elif change == "int_one":
        args[2] = 1  # Triton makes an argument equal to 1 a compile-time constant
    elif change == "int64":
        args[2] = 1 << 32
    elif change == "constexpr":
        args[3] = 8  # a constexpr int differs by value, not by Triton's runtime-int rules
    elif change == "dtype":
        args[1] = torch.zeros(64, dtype=torch.float16)
    elif change == "misaligned":
        args[1] = buf[1:]  # 4 bytes past a 16-byte boundary
    else:
        warps = 8
    _launch.launch(kernel, (1,), tuple(args), num_warps=warps)
    assert [c[0] for c in kernel.calls] == ["triton", "triton"]
    _launch.launch(kernel, (1,), tuple(args), num_warps=warps)
    assert [c[0] for c in kernel.calls] == ["triton", "triton", "fast"]


def test_launch_hooks_see_every_launch(kernel):
    """With a Triton launch hook installed (profilers), launches keep Triton's own path."""
    from triton import knobs
    gpu = _OnGpu()
    _launch.launch(kernel, (1,), (gpu, 16, 2, 3, 4), num_warps=4)
    hook = knobs.runtime.launch_enter_hook
    seen = []

    def record(metadata):
        seen.append(metadata)
    if hasattr(hook, "add"):
        hook.add(record)
        try:
            _launch.launch(kernel, (1,), (gpu, 16, 2, 3, 4), num_warps=4)
        finally:
            hook.remove(record)
    else:  # Triton without HookChain: the hook is an attribute
        knobs.runtime.launch_enter_hook = record
        try:
            _launch.launch(kernel, (1,), (gpu, 16, 2, 3, 4), num_warps=4)
        finally:
            knobs.runtime.launch_enter_hook = hook
    assert [c[0] for c in kernel.calls] == ["triton", "triton"]
    _launch.launch(kernel, (1,), (gpu, 16, 2, 3, 4), num_warps=4)
    assert [c[0] for c in kernel.calls] == ["triton", "triton", "fast"]


def test_cpu_tensors_always_take_the_interpreter_path(kernel):
    x = torch.zeros(4)
    for _ in range(2):
        _launch.launch(kernel, (1,), (x, 16, 2, 3, 4), num_warps=4)
    assert [c[0] for c in kernel.calls] == ["triton", "triton"]


def test_arg_key_matches_triton_specialization_inputs():
    buf = torch.zeros(64)
    assert _launch._arg_key(buf) == (torch.float32, True)
    assert _launch._arg_key(buf[1:]) == (torch.float32, False)
    assert _launch._arg_key(1) != _launch._arg_key(17)  # == 1 is special; 17 % 16 == 1 too
    assert _launch._arg_key(16) == _launch._arg_key(4096)
    assert _launch._arg_key(16) != _launch._arg_key(1 << 35)  # int32 vs int64 argument
    assert _launch._arg_key(True) is True  # constexprs and flags: by value
