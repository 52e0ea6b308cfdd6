"""The one validation of scales (global scales, ``weight_alpha``, KV ``k_scale``/``v_scale``,
``input_amax``), shared by every place that takes them.

A scale must be finite and > 0: zero gives NaN on decode (0 * inf), a negative one flips signs
and writes negative e4m3 block scales, NaN/inf poison every element they touch. Each message names
the argument (or checkpoint tensor) and the offending value.

Where the checks run (docs/api.md, "Scale validation"):

- Python numbers (``nk.quantize(x, 2.0)``, ``kv_cache.write(..., k_scale=0.5, ...)``): always,
  with :func:`check_scale_value`; it costs nothing and never touches a device.
- Tensors that *enter* the library once -- ``NVFP4Linear`` construction and ``load_state_dict``,
  the checkpoint loaders, the checkpoint writer -- always, with :func:`check_scale_tensor` (one
  reduction; this is load time, not the hot path).
- Tensors on CPU given to ``NVFP4(...)``: always (reading a CPU value is not a device sync).
- Device tensors passed to the ops on every call: only with the opt-in debug switch
  (``NVFP4_DEBUG_CHECKS=1`` or ``nk.debug.set_checks(True)``), via :func:`debug_check_scale`;
  otherwise an op never reads a device value, so it never syncs and stays CUDA-graph capturable.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from nvfp4_kernels import _global_scale, debug


class ScaleError(ValueError):
    """A scale is zero, negative, NaN, inf, or has the wrong shape; the message names it."""


def _fmt(values) -> str:
    vals = list(values)
    shown = ", ".join(repr(v) for v in vals[:8])
    return f"[{shown}{', ...' if len(vals) > 8 else ''}]" if len(vals) != 1 else shown


def check_scale_value(name: str, value) -> float:
    """A Python number used as a scale: returns it as a float, or raises ScaleError naming it.

    ``bool`` is refused (``True`` is almost always a mistake for a scale).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a positive finite number or a float32 tensor, got "
                        f"{type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ScaleError(f"{name}: must be finite and > 0, got {v!r}")
    return v


def bad_scale_values(t: torch.Tensor) -> list[float]:
    """The entries of `t` that are not finite and > 0 (reads the values: syncs on a GPU)."""
    f = t.detach().float().reshape(-1)
    bad = ~(torch.isfinite(f) & (f > 0))
    return f[bad].cpu().tolist() if bool(bad.any()) else []


def check_scale_tensor(name: str, t, *, numel=None, dtype=torch.float32) -> torch.Tensor:
    """Validate a scale tensor where it enters the library (load time). Returns `t`.

    numel: allowed element counts (e.g. ``(1,)`` or ``(1, n)``); None allows any non-empty size.
    dtype: required dtype, or None to accept any floating dtype.
    Reads the values, so on a GPU this synchronises: never call it per op call (use
    :func:`debug_check_scale` there).
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a float32 tensor, got {type(t).__name__}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got shape {tuple(t.shape)}, dtype "
                        f"{t.dtype}")
    if dtype is None and not t.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point tensor, got shape {tuple(t.shape)}, "
                        f"dtype {t.dtype}")
    allowed = numel if numel is not None else None
    if t.numel() == 0 or (allowed is not None and t.numel() not in allowed):
        want = " or ".join(str(n) for n in allowed) if allowed else "at least 1"
        raise ScaleError(f"{name}: expected {want} element(s), got shape {tuple(t.shape)}, "
                         f"dtype {t.dtype}")
    if t.device.type == "meta":
        return t  # no values to read (shape-only tracing)
    bad = bad_scale_values(t)
    if bad:
        raise ScaleError(f"{name}: must be finite and > 0, got {_fmt(bad)}"
                         + (f" among its {t.numel()} values" if t.numel() > 1 else ""))
    return t


def as_scale_tensor(name: str, value, device=None, *, numel=None) -> torch.Tensor:
    """A Python number or tensor -> validated float32 vector on `device` (load-time helper)."""
    if isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point:
            raise TypeError(f"{name}: expected a floating-point tensor, got shape "
                            f"{tuple(value.shape)}, dtype {value.dtype}")
        t = value.detach().to(device=device if device is not None else value.device,
                              dtype=torch.float32).reshape(-1)
    else:
        t = torch.tensor([check_scale_value(name, value)], dtype=torch.float32, device=device)
    return check_scale_tensor(name, t, numel=numel)


def per_call_scale(name: str, value, device, shape=(1,)) -> torch.Tensor:
    """A scale given to an op on the hot path (KV cache, attention): a tensor passes through (its
    value checked only with debug checks on); a Python number is checked for free and becomes a
    device fill (of `shape`), not a host-to-device copy, so the call stays capturable in a CUDA
    graph."""
    if type(value) is float and 0.0 < value < math.inf:
        # The serving case of a number: the same float on every call. This comparison is the
        # whole check for a plain float (check_scale_value's generic one costs more than the
        # cached fill it guards); anything else takes the checked path below.
        return _global_scale.constant(value, device, shape)
    if isinstance(value, torch.Tensor):
        debug_check_scale(name, value)  # opt-in: reads the value (a sync)
        return value
    return _global_scale.constant(check_scale_value(name, value), device, shape)


def _tracing() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except AttributeError:  # pragma: no cover (older torch)
        return False


def debug_check_scale(name: str, t) -> None:
    """Per-call value check for the ops: runs only when ``nvfp4_kernels.debug.checks_enabled()``
    and never while torch.compile traces (a value read would break the graph). Syncs when on."""
    if not debug.checks_enabled() or _tracing() or not isinstance(t, torch.Tensor):
        return
    if t.device.type == "meta" or _is_fake(t):
        return
    check_scale_tensor(name, t, dtype=None)


def check_entering_scale(name: str, t: torch.Tensor) -> None:
    """Value check for a scale tensor that enters a container (``NVFP4(...)``): always for CPU
    tensors (no device sync), for device tensors only with debug checks on; never while tracing."""
    if not (t.is_cpu or debug.checks_enabled()):  # the usual GPU case: nothing to do
        return
    if _tracing() or t.device.type == "meta" or _is_fake(t):
        return
    check_scale_tensor(name, t, dtype=None)


def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor
    return isinstance(t, FakeTensor)


__all__ = ["ScaleError", "as_scale_tensor", "bad_scale_values", "check_entering_scale",
           "check_scale_tensor", "check_scale_value", "debug_check_scale", "per_call_scale"]
