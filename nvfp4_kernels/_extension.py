"""Loading the compiled extension ``nvfp4_kernels._C`` (backends ``cuda`` and ``cutlass``).

Loaded on first use, never at import: importing it initialises nothing on the GPU, but a broken
build (an ABI mismatch with the installed torch, say) must not make ``import nvfp4_kernels`` fail.
A build that exists but cannot load warns once; a pure-Python install (no extension) is silent and
``nk.info()`` says why the native backends are missing.
"""

from __future__ import annotations

import functools
import importlib
import warnings


@functools.cache
def _load():
    try:
        return importlib.import_module("nvfp4_kernels._C"), None
    except ModuleNotFoundError as exc:
        if exc.name != "nvfp4_kernels._C":
            raise
        return None, ("the C++/CUDA extension nvfp4_kernels._C is not built "
                      "(pure-Python install; see docs/building.md)")
    except (ImportError, OSError) as exc:
        reason = f"the C++/CUDA extension nvfp4_kernels._C failed to load: {exc}"
        warnings.warn(reason + "; falling back to the triton/reference backends", RuntimeWarning,
                      stacklevel=3)
        return None, reason


def extension():
    """The loaded extension module, or None."""
    return _load()[0]


def why_missing() -> str | None:
    """None if the extension loaded, else why not."""
    return _load()[1]
