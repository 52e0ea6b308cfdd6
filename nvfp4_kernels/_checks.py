"""Argument checks shared by the custom ops and the public API.

Every message names the argument, what was expected and what was given (shape, dtype, device), so
a serving engineer can fix the call without reading the kernel. Kernels rely on these checks:
they assume contiguous tensors of the checked shapes and never bounds-check again.
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
OUT_DTYPES = (torch.bfloat16, torch.float16)
DEQUANT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SCALE_LAYOUTS = ("swizzled", "linear")
# e4m3 data may arrive as raw bytes (uint8 views), as vLLM stores some caches and scales.
FP8_STORAGE = (torch.float8_e4m3fn, torch.uint8)


def describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def tensor(name: str, t, *, dtypes=None, ndim=None, contiguous=True) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name}: dtype must be one of ({allowed}), got {describe(t)}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor, got {describe(t)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (call .contiguous()), got strides "
                         f"{t.stride()} for {describe(t)}")


def scalar_f32(name: str, t, *, numel=(1,)) -> None:
    """A float32 tensor holding one value (or one per column where numel allows it)."""
    tensor(name, t, dtypes=(torch.float32,), contiguous=False)
    if t.numel() not in numel:
        want = " or ".join(str(n) for n in numel)
        raise ValueError(f"{name}: expected {want} element(s), got {describe(t)}")


def multiple_of(name: str, value: int, m: int, what: str) -> None:
    if value % m:
        raise ValueError(f"{name}: {what} must be a multiple of {m}, got {value}")


def same_device(**tensors) -> None:
    named = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; "
                             "all arguments must be on one device")


def choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name}: must be one of {options}, got {value!r}")


def out_dtype(name: str, dtype, options=OUT_DTYPES) -> None:
    if dtype not in options:
        raise TypeError(f"{name}: must be one of {options}, got {dtype}")


def scale_shape(name: str, scale: torch.Tensor, rows: int, cols: int, layout: str) -> None:
    """Block scales for a [rows, cols] matrix (cols = K, logical) in `layout`."""
    from nvfp4_kernels.reference import BLOCK, swizzled_shape
    tensor(name, scale, dtypes=FP8_STORAGE)
    if layout == "swizzled":
        rp, cp = swizzled_shape(rows, cols // BLOCK)
        if scale.numel() != rp * cp:
            raise ValueError(f"{name}: swizzled scales for a {rows}x{cols} matrix need "
                             f"{rp}x{cp} = {rp * cp} elements, got {describe(scale)}")
    elif tuple(scale.shape) != (rows, cols // BLOCK):
        raise ValueError(f"{name}: linear scales for a {rows}x{cols} matrix must have shape "
                         f"({rows}, {cols // BLOCK}), got {describe(scale)}")
