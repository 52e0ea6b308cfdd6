"""``nk.info()``: what this install can run here, and why the rest cannot."""

from __future__ import annotations

import platform

import torch

from nvfp4_kernels import _extension
from nvfp4_kernels.backends import registry


def _version(module_name: str) -> str | None:
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def info(device=None) -> dict:
    """Backends, GPU, compiled archs and versions, as a dict (the CLI prints it).

    ``backends[name]`` is ``{"available": bool, "reason": str | None, "ops": [...]}`` for
    ``device`` (default: the current CUDA device if there is one, else the CPU).
    """
    from nvfp4_kernels import __version__

    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        major, minor = registry.capability(device)
        gpu = {"name": torch.cuda.get_device_name(device), "capability": f"sm_{major}{minor}"}
    backends = {}
    for name in registry.BACKEND_NAMES:
        module = registry.backend_module(name)
        reason = module.why_unavailable(device)
        if reason is None and not module.OPS:
            reason = f"{name} backend implements no ops yet"
        backends[name] = {"available": reason is None, "reason": reason,
                          "ops": sorted(module.OPS)}
    ext = _extension.extension()
    return {
        "version": __version__,
        "device": str(device),
        "gpu": gpu,
        "backends": backends,
        "choice": registry.report(device),
        "extension": {"loaded": ext is not None, "reason": _extension.why_missing(),
                      "archs": list(getattr(ext, "COMPILED_ARCHS", [])) if ext else []},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "triton": _version("triton")},
    }
