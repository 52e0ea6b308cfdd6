"""Opt-in per-call validation that needs the data itself (and so a device-to-host sync).

The hot path checks only shapes, dtypes and devices, which costs no synchronisation and keeps every
op CUDA-graph capturable. Checks that must read tensor *values* (slot ids in range, block ids in
range, scales finite and positive) run only when debug checks are on:

    NVFP4_DEBUG_CHECKS=1 python serve.py        # whole process
    nk.debug.set_checks(True)                   # from code (returns the previous setting)

Kernels never rely on these checks for memory safety: out-of-range indices are skipped or
zero-filled in the kernels themselves. The debug checks exist to turn such silent skips into an
error that names the argument while a serving stack is being brought up.
"""

from __future__ import annotations

import os

ENV_VAR = "NVFP4_DEBUG_CHECKS"
_enabled = os.environ.get(ENV_VAR, "") not in ("", "0", "false", "False")


def checks_enabled() -> bool:
    """True when value checks (which sync with the device) should run on every call."""
    return _enabled


def set_checks(enabled: bool) -> bool:
    """Turn per-call value checks on or off; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous
