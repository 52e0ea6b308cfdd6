"""Which backend runs an op: declared capabilities, automatic choice, forcing, and the reasons.

Each backend is a module (``nvfp4_kernels.backends.<name>``) that exposes:

``OPS``                      frozenset of op names it implements (see ``OP_NAMES``)
``why_unavailable(device)``  None if it can run on that ``torch.device``, else a sentence saying
                             what is missing (no GPU query happens before this is called)
``why_unsupported(op, dtypes)``  optional; None or why these input dtypes are not handled
``why_unsupported_shape(op, *args)``  optional; None or why this call's shapes are not handled
                             (called with the op's backend arguments on every call: keep it to
                             integer arithmetic on shapes). ``SHAPE_RULES`` below can declare the
                             same for a backend module from here.
``get(op)``                  the implementation (imports kernel modules lazily)

The automatic order is per op (``ORDER``): the first backend that implements the op and can run
on the device with these dtypes wins. The choice is made once per (op, device, dtypes, forced
name) and cached in a dict: on decode a call costs a few microseconds and re-running the checks
every call would double that. A backend with a shape rule is wrapped so that a call it cannot
take goes to the next backend in the order (chosen on first need, then cached too); the reason
is kept in ``fallbacks()`` and reported by ``report()``.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

# Every backend, in the default priority order (ops without an ``ORDER`` entry use it). The
# reference runs everywhere and comes last, so on a GPU it is chosen only when no kernel backend
# implements the op.
BACKEND_NAMES = ("cutlass", "cuda", "triton", "reference")
OP_NAMES = ("quantize", "quantize_computed_scale", "dequantize", "gemm", "gemm_w4a16",
            "kv_cache_write", "kv_cache_gather", "attention_decode")
ENV_VAR = "NVFP4_BACKEND"

# Automatic order per op, and optionally per (op, GPU major version): (op, major) entries win
# over op entries, which win over BACKEND_NAMES. Measured reasons, H100 (SM90), CUDA-graph timing
# against copy bandwidth (docs/performance.md, docs/backends.md):
#   quantize (given scale): Triton 73-74 %, CUDA 72-80 % (2026-11-27, earlier session); in a
#     later run Triton 60-63 %, CUDA 68-70 % (both layouts): CUDA first where it is built, and
#     it is one C++ call instead of a Triton launch from Python. cutlass's quantize is the same
#     CUDA kernel with the hardware E2M1 conversion (SM100/SM120 only, unmeasured), first there.
#   dequantize (issue 9 kernels, 2026-11-27): CUDA 95-96 % on gate_up and down weights, both
#     layouts, bf16 and fp16; Triton 77-84 % (Triton 3.6): CUDA first where it is built.
#   KV cache (8192 tokens x 16 heads x 256, earlier session of 2026-11-27): write Triton 97 %,
#     CUDA 90 %; gather Triton 92 %, CUDA 87 %: Triton first.
# GEMM orders are the defaults (cutlass first where it can run); extend this table per arch.
ORDER = {
    "quantize": ("cutlass", "cuda", "triton", "reference"),
    # quantize_computed_scale: the amax pass and the quantize are two launches from one C++ call
    #   in the cuda backend; the triton one is a fill, two Triton launches and a division from
    #   Python. cuda first: per call 19.8-19.9 us for nk.quantize(x) on the H100, and 41-42 %
    #   of copy bandwidth against Triton's 37 % ([8192, 5376] bf16; docs/performance.md).
    "quantize_computed_scale": ("cuda", "triton", "reference"),
    "dequantize": ("cuda", "triton", "reference"),
    "kv_cache_write": ("triton", "cuda", "reference"),
    "kv_cache_gather": ("triton", "cuda", "reference"),
    # Only Triton has a kernel; the reference (float64, materialises the cache) is the fallback.
    "attention_decode": ("triton", "reference"),
}


def _cutlass_gemm_shape(a, b, a_scale, b_scale, alpha, out_dtype, bias):
    """N and K multiples of 32 (TMA 16-byte row alignment of A, B and D)."""
    k, n = a.shape[1] * 2, b.shape[0]
    if k % 32 or n % 32:
        return (f"cutlass gemm needs N and K multiples of 32 (TMA 16-byte row alignment), got "
                f"N={n}, K={k}")
    return None


# (backend, op) -> why_unsupported_shape(*backend args); for backends whose module has no hook.
SHAPE_RULES = {
    ("cutlass", "gemm"): _cutlass_gemm_shape,
}


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


def order(op: str, capability=None) -> tuple:
    """The automatic priority order of backends for `op` on a device of `capability`."""
    if capability is not None and (op, capability[0]) in ORDER:
        return ORDER[(op, capability[0])]
    return ORDER.get(op, BACKEND_NAMES)


def why_not(name: str, op: str, device: torch.device, dtypes: tuple = ()) -> str | None:
    """None if backend `name` can run `op` on `device` for inputs of `dtypes`, else why not."""
    module = backend_module(name)
    if op not in module.OPS:
        return f"{name} backend does not implement {op}"
    reason = module.why_unavailable(device)
    if reason is None and hasattr(module, "why_unsupported"):
        reason = module.why_unsupported(op, dtypes)
    return reason


def shape_rule(name: str, op: str):
    """The per-call shape check of backend `name` for `op`, or None if it takes every shape."""
    rule = SHAPE_RULES.get((name, op))
    if rule is None:
        hook = getattr(backend_module(name), "why_unsupported_shape", None)
        if hook is not None:
            rule = functools.partial(hook, op)
    return rule


_fallbacks: dict = {}  # (op, backend) -> (reason, backend used instead), the latest of each


def fallbacks() -> dict:
    """{(op, backend): (why it could not take a call's shape, the backend that ran instead)}."""
    return dict(_fallbacks)


def _guarded(op, name, impl, rule, fallback):
    """impl, except that calls `rule` refuses go to fallback() (the next backend)."""
    def run(*args):
        reason = rule(*args)
        if reason is None:
            return impl(*args)
        other_name, other = fallback(reason)
        _fallbacks[(op, name)] = (reason, other_name)
        return other(*args)
    run.backend = name
    return run


def _device(device_type, index):
    return torch.device(device_type, index) if index is not None else torch.device(device_type)


def _search(op, device_type, cap, dtypes, index, after=None):
    """First backend of the automatic order (after `after`, if given) that can run op here."""
    device = _device(device_type, index)
    names = order(op, cap)
    if after is not None:
        names = names[names.index(after) + 1:] if after in names else \
            tuple(n for n in names if n != after)
    reasons = []
    for name in names:
        # The Triton backend runs on CPU tensors only under TRITON_INTERPRET=1, for tests; it is
        # never the automatic choice there.
        if device_type == "cpu" and name != "reference":
            continue
        reason = why_not(name, op, device, dtypes)
        if reason is None:
            return name, _with_rule(op, name, device_type, cap, dtypes, index, strict=None)
        reasons.append(reason)
    raise BackendUnavailableError(f"{op}: no backend can run on {device}: " + "; ".join(reasons))


def next_backend(op: str, device: torch.device, after: str, dtypes: tuple = ()):
    """(name, implementation) of the first backend after `after` in op's automatic order that
    can run here: where a backend hands over the calls its kernels do not take (not cached)."""
    index = device.index if device.type == "cuda" else None
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    return _search(op, device.type, capability(device), dtypes, index, after=after)


def _with_rule(op, name, device_type, cap, dtypes, index, strict):
    impl = backend_module(name).get(op)
    rule = shape_rule(name, op)
    if rule is None:
        return impl

    @functools.cache
    def next_backend():
        return _search(op, device_type, cap, dtypes, index, after=name)

    def fallback(reason):
        if strict is not None:
            raise BackendUnavailableError(f"{op}: {strict} cannot take this call: {reason}")
        return next_backend()
    return _guarded(op, name, impl, rule, fallback)


def _choose(op, device_type, cap, dtypes, forced, from_env, index):
    device = _device(device_type, index)
    if forced is not None:
        module = backend_module(forced)
        if not (from_env and op not in module.OPS):
            reason = why_not(forced, op, device, dtypes)
            source = f"{ENV_VAR}={forced}" if from_env else f"backend={forced!r}"
            if reason is not None:
                raise BackendUnavailableError(f"{op}: {source} cannot run on {device}: {reason}")
            # Per call, forcing is strict (a shape the backend cannot take is an error); from the
            # environment, such a call takes the automatic choice instead.
            return forced, _with_rule(op, forced, device_type, cap, dtypes, index,
                                      strict=None if from_env else source)
    return _search(op, device_type, cap, dtypes, index)


_cache: dict = {}
_env = [False, None]  # [read yet, NVFP4_BACKEND value]


def _env_backend():
    if not _env[0]:
        _env[1] = os.environ.get(ENV_VAR) or None
        _env[0] = True
    return _env[1]


def choose(op: str, device: torch.device, dtypes: tuple = (), backend: str | None = None):
    """(backend name, implementation) for this call; `backend` forces one.

    NVFP4_BACKEND is read on the first call and again after ``clear_cache()``.
    """
    key = (op, device, dtypes, backend)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    from_env = False
    if backend is None:
        backend = _env_backend()
        from_env = backend is not None
    index = device.index if device.type == "cuda" else None
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    result = _choose(op, device.type, capability(device), dtypes, backend, from_env, index)
    if device.type != "cuda" or device.index is not None:  # "cuda" alone follows current_device
        _cache[key] = result
    return result


def report(device: torch.device) -> dict:
    """Per op: the automatic order here, the backend chosen (or why none), shape rules, and the
    shape fallbacks seen so far in this process. For ``nk.info()`` and docs."""
    device = torch.device(device)
    cap = capability(device) if device.type == "cuda" else None
    out = {}
    for op in OP_NAMES:
        try:
            chosen = choose(op, device)[0]
        except BackendUnavailableError as exc:
            chosen = f"none: {exc}"
        out[op] = {
            "order": list(order(op, cap)),
            "chosen": chosen,
            "shape_rules": {name: rule.__doc__ or getattr(rule, "__name__", "rule")
                            for name in order(op, cap)
                            if (rule := SHAPE_RULES.get((name, op))) is not None},
            "fallbacks": {name: {"reason": r, "used": used}
                          for (o, name), (r, used) in _fallbacks.items() if o == op},
        }
    return out


def clear_cache() -> None:
    """Forget cached choices and re-read NVFP4_BACKEND (tests that change it call this)."""
    _cache.clear()
    _fallbacks.clear()
    _env[0] = False
