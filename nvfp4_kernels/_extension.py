"""Loading the compiled extension ``nvfp4_kernels._C`` (backends ``cuda`` and ``cutlass``).

Loaded on first use, never at import: importing it initialises nothing on the GPU, but a broken
build (an ABI mismatch with the installed torch, say) must not make ``import nvfp4_kernels`` fail.
When a CUDA device asks for a native backend and the extension is missing or cannot load, one
warning says why (once per process); ``nk.info()`` reports the same reason. CPU use stays silent:
a pure-Python install is a supported configuration there.
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
                      "(pure-Python install; build it with NVFP4_BUILD_EXT=1, see docs/building.md)")
    except (ImportError, OSError) as exc:
        return None, f"the C++/CUDA extension nvfp4_kernels._C failed to load: {exc}"


@functools.cache
def _warn_once(reason: str) -> None:
    warnings.warn(reason + "; the cuda/cutlass backends are unavailable, falling back to the "
                  "triton/reference backends", RuntimeWarning, stacklevel=4)


def extension():
    """The loaded extension module, or None."""
    return _load()[0]


def why_missing(warn: bool = False) -> str | None:
    """None if the extension loaded, else why not (warning once when `warn`)."""
    reason = _load()[1]
    if reason is not None and warn:
        _warn_once(reason)
    return reason


def compiled_archs() -> list[str]:
    """Targets the extension was compiled for, e.g. ["sm_90a", "sm_100a", "sm_120a"]."""
    ext = extension()
    return list(getattr(ext, "COMPILED_ARCHS", [])) if ext is not None else []


def _parse(arch: str) -> tuple[int, int, str]:
    digits = arch.removeprefix("sm_")
    suffix = digits[-1] if digits[-1] in "af" else ""
    digits = digits.rstrip("af")
    return int(digits[:-1]), int(digits[-1]), suffix


def has_code_for(major: int, minor: int) -> bool:
    """Whether some compiled target runs on an SM{major}{minor} GPU (no PTX is embedded, so
    a cubin must match: "a" targets exactly, "f" targets within the family, plain ones on the
    same major with an equal or newer minor)."""
    for arch in compiled_archs():
        a_major, a_minor, suffix = _parse(arch)
        if a_major != major:
            continue
        if (suffix == "a" and a_minor == minor) or (suffix != "a" and a_minor <= minor):
            return True
    return False


def arch_mismatch(backend: str, major: int, minor: int) -> str | None:
    """None if the extension has code for this GPU, else a sentence saying what to rebuild."""
    if has_code_for(major, minor):
        return None
    built = ", ".join(compiled_archs()) or "no CUDA archs"
    return (f"{backend} backend: the extension was built for {built}, not for this SM{major}{minor}"
            f" GPU; rebuild with NVFP4_CUDA_ARCHS=sm_{major}{minor}{'a' if major >= 9 else ''}"
            " (docs/building.md)")
