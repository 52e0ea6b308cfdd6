"""Small launch helpers shared by the Triton launchers (no GPU query at import).

``launch`` is how every Triton kernel of this backend is started. Triton's own
``kernel[grid](*args)`` re-derives the kernel's specialization from every argument on every call
(bind the signature, type and align each argument, build a cache-key string, look the compiled
kernel up, check the globals it read, build launch metadata for hooks): tens of microseconds of
host time per launch on the H100 host, more than the kernel itself at decode sizes. ``launch``
does that once per *specialization key* -- a tuple it builds from the arguments, at least as fine
as Triton's own (see ``_arg_key``) -- keeps the ``CompiledKernel`` Triton returned, and afterwards
calls its C launcher directly. The first call of each key, interpreter runs and runs with Triton
launch hooks installed (profilers) go through ``kernel[grid]`` unchanged.
"""

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


def dense(t: torch.Tensor) -> torch.Tensor:
    """t itself when contiguous (no dispatcher call), else a contiguous copy: for small vectors
    (scales, alphas) a kernel indexes with stride 1."""
    return t if t.is_contiguous() else t.contiguous()


@functools.cache
def sm_count(device_type: str, index: int | None) -> int:
    """Streaming multiprocessors of the device; a small stand-in off-GPU (interpreter)."""
    if device_type != "cuda":
        return 4
    return torch.cuda.get_device_properties(index).multi_processor_count


# ---------------------------------------------------------------------------------------------
# launch: Triton's launch with the per-call re-specialization done once per key
# ---------------------------------------------------------------------------------------------

_INT32 = range(-(1 << 31), 1 << 31)


def _arg_key(a):
    """What Triton specializes a kernel on, for one runtime (not constexpr) argument, or
    something finer.

    Tensors: dtype (the pointer type) and 16-byte alignment of the data pointer. Integers: == 1
    (Triton turns such an argument into a constant), divisibility by 16, and whether it fits in
    int32 (the argument's type). Anything else (floats, bools): the value itself. Constexpr
    parameters are keyed by value (see ``launch``)."""
    if isinstance(a, torch.Tensor):
        return a.dtype, a.data_ptr() % 16 == 0
    if type(a) is int:
        return int, a == 1, a % 16 == 0, a in _INT32
    return a


# id(kernel) -> (which parameters are constexpr, {key: (C launcher, function, packed metadata)})
_compiled: dict = {}
_runtime_knobs = None  # triton.knobs.runtime, imported on the first GPU launch


def _hooks_idle() -> bool:
    """True when no Triton launch hook is installed. Profilers (proton) add some; with one
    installed every launch takes Triton's own path so the hooks see it."""
    rt = _runtime_knobs
    enter, leave = rt.launch_enter_hook, rt.launch_exit_hook
    # A HookChain (Triton >= 3.5) is idle when its list is empty; older versions hold None.
    return not getattr(enter, "calls", enter) and not getattr(leave, "calls", leave)


def _raw_stream():
    try:
        return torch._C._cuda_getCurrentRawStream
    except AttributeError:  # pragma: no cover (CPU-only torch builds)
        return lambda index: torch.cuda.current_stream(index).cuda_stream


_stream = None


def launch(kernel, grid, args, *, num_warps: int, num_stages: int | None = None):
    """``kernel[grid](*args, num_warps=..., num_stages=...)``, with every kernel parameter
    (constexprs included) in ``args``, in the kernel's parameter order.

    Launches on the current device (wrap the call in ``grid_device``) and stream.
    """
    global _runtime_knobs, _stream
    options = (num_warps, num_stages)
    if not args[0].is_cuda:  # the interpreter (CPU tensors): Triton's path, nothing cached
        return _slow(kernel, grid, args, options)
    if _runtime_knobs is None:
        from triton import knobs
        _runtime_knobs, _stream = knobs.runtime, _raw_stream()
    # By id: a JITFunction's own __hash__ takes a lock and hashes its source key.
    entry = _compiled.get(id(kernel))
    if entry is None:
        entry = _compiled[id(kernel)] = (tuple(p.is_constexpr for p in kernel.params), {})
    constexpr, per_kernel = entry
    index = torch.cuda.current_device()
    key = (index, options, *[a if c else _arg_key(a) for a, c in zip(args, constexpr)])
    hit = per_kernel.get(key)
    if hit is None or not _hooks_idle():
        compiled = _slow(kernel, grid, args, options)
        if hasattr(compiled, "result"):  # asynchronous compile mode returns a future
            compiled = compiled.result()
        if compiled is not None:  # (None: the interpreter ran it)
            per_kernel[key] = (compiled.run, compiled.function, compiled.packed_metadata)
        return
    run, function, metadata = hit
    run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1,
        _stream(index), function, metadata, None, None, None, *args)


def _slow(kernel, grid, args, options):
    interpreting()  # CPU tensors: the interpreter, made able to loop over runtime bounds first
    num_warps, num_stages = options
    if num_stages is None:
        return kernel[grid](*args, num_warps=num_warps)
    return kernel[grid](*args, num_warps=num_warps, num_stages=num_stages)


def forget_compiled() -> None:
    """Drop the cached launch handles (tests)."""
    _compiled.clear()
