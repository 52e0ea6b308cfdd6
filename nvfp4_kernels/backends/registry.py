"""Which backend runs an op: declared capabilities, automatic choice, forcing, and the reasons.

Each backend is a module (``nvfp4_kernels.backends.<name>``) that exposes:

``OPS``                      frozenset of op names it implements (see ``OP_NAMES``)
``why_unavailable(device)``  None if it can run on that ``torch.device``, else a sentence saying
                             what is missing (no GPU query happens before this is called)
``why_unsupported(op, dtypes)``  optional; None or why these input dtypes are not handled
``get(op)``                  the implementation (imports kernel modules lazily)

The choice is made once per (op, device type, compute capability, dtypes, forced name) and cached:
on decode a custom-op call costs a few microseconds, and re-running the checks every call would
double that.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

# Priority order for the automatic choice. The reference runs everywhere and comes last, so on a
# GPU it is chosen only when no kernel backend implements the op.
BACKEND_NAMES = ("cutlass", "cuda", "triton", "reference")
OP_NAMES = ("quantize", "dequantize", "gemm", "gemm_w4a16", "kv_cache_write", "kv_cache_gather")
ENV_VAR = "NVFP4_BACKEND"


class BackendUnavailableError(RuntimeError):
    """A backend was asked for (per call or by NVFP4_BACKEND) but cannot run this op here."""


def backend_module(name: str):
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {BACKEND_NAMES}")
    return importlib.import_module(f"nvfp4_kernels.backends.{name}")


@functools.cache
def _capability(device_type: str, index: int | None):
    if device_type != "cuda":
        return None
    return torch.cuda.get_device_capability(index)


def capability(device: torch.device):
    """(major, minor) of a CUDA device, queried once per device; None for other device types.

    Every backend asks through here, so one query per device serves the whole process.
    """
    index = device.index
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    return _capability(device.type, index)


def why_not(name: str, op: str, device: torch.device, dtypes: tuple = ()) -> str | None:
    """None if backend `name` can run `op` on `device` for inputs of `dtypes`, else why not."""
    module = backend_module(name)
    if op not in module.OPS:
        return f"{name} backend does not implement {op}"
    reason = module.why_unavailable(device)
    if reason is None and hasattr(module, "why_unsupported"):
        reason = module.why_unsupported(op, dtypes)
    return reason


@functools.cache
def _choose(op: str, device_type: str, capability, dtypes: tuple, forced: str | None,
            from_env: bool, device_index):
    device = torch.device(device_type, device_index) if device_index is not None else \
        torch.device(device_type)
    if forced is not None:
        module = backend_module(forced)
        if not (from_env and op not in module.OPS):
            reason = why_not(forced, op, device, dtypes)
            if reason is not None:
                source = f"{ENV_VAR}={forced}" if from_env else f"backend={forced!r}"
                raise BackendUnavailableError(f"{op}: {source} cannot run on {device}: {reason}")
            return forced, module.get(op)
    reasons = []
    for name in BACKEND_NAMES:
        # The Triton backend runs on CPU tensors only under TRITON_INTERPRET=1, for tests; it is
        # never the automatic choice there.
        if device_type == "cpu" and name != "reference":
            continue
        reason = why_not(name, op, device, dtypes)
        if reason is None:
            return name, backend_module(name).get(op)
        reasons.append(reason)
    raise BackendUnavailableError(f"{op}: no backend can run on {device}: " + "; ".join(reasons))


def choose(op: str, device: torch.device, dtypes: tuple = (), backend: str | None = None):
    """(backend name, implementation) for this call; `backend` forces one."""
    from_env = False
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        from_env = backend is not None
    index = device.index if device.type == "cuda" else None
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    return _choose(op, device.type, capability(device), dtypes, backend, from_env, index)


def clear_cache() -> None:
    """Forget cached choices (tests that change the environment call this)."""
    _choose.cache_clear()
