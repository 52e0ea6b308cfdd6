"""Small launch helpers shared by the Triton launchers (no GPU query at import)."""

from __future__ import annotations

import contextlib
import functools
import os

import torch


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1 (CPU tensors, numpy semantics); the interpreter is then
    made able to run loops with a runtime trip count (see `_interpreter_scalar_index`)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return False
    _interpreter_scalar_index()
    return True


@functools.cache
def _interpreter_scalar_index() -> None:
    """Triton 3.6's interpreter holds a scalar as a numpy array of shape (1,) and converts it for
    ``range()`` with ``int(array)``, which numpy 2.5 refuses ("only 0-dimensional arrays can be
    converted"): every loop over a runtime bound (the GEMM's K loop) fails there. Triton 3.7+
    squeezes the array first; this gives older interpreters the same conversion. Compiled
    kernels are not affected."""
    import numpy as np
    import triton
    from triton.runtime import interpreter

    version = tuple(int(part) for part in triton.__version__.split(".")[:2])
    try:
        int(np.zeros(1, dtype=np.int32))
        return  # this numpy still converts size-1 arrays
    except TypeError:
        pass
    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    if version >= (3, 7) or patch_tensor is None:
        return

    def patch_lang_tensor(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(())))

    interpreter._patch_lang_tensor = patch_lang_tensor


_NO_SWITCH = contextlib.nullcontext()


def grid_device(t: torch.Tensor):
    """Launch on t's GPU (Triton launches on the current device, not the tensor's).

    Entering ``torch.cuda.device`` costs a few microseconds per launch even when it changes
    nothing; on the usual single-GPU decode path the tensor is already on the current device,
    so that case returns a shared no-op context instead."""
    if not t.is_cuda:
        return _NO_SWITCH
    index = t.get_device()
    if index == torch.cuda.current_device():
        return _NO_SWITCH
    return torch.cuda.device(index)


@functools.cache
def sm_count(device_type: str, index: int | None) -> int:
    """Streaming multiprocessors of the device; a small stand-in off-GPU (interpreter)."""
    if device_type != "cuda":
        return 4
    return torch.cuda.get_device_properties(index).multi_processor_count
