"""The quantize kernel's E2M1 encode (csrc/include/nvfp4/e2m1_encode.h) on the CPU, no GPU.

The header is plain C++ shared by the CUDA kernel and the host compiler. e2m1_encode_check.cpp
compares it with the reference's rounding rule for every float32 of magnitude in [1/8, 8) (every
rounding boundary and the saturation), a stride through all other floats and two million packed
words; here its codes are also compared with ``reference.e2m1_rne`` itself on the floats around
every boundary. Skips only when no host C++ compiler is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nvfp4_kernels import reference as ref

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("e2m1_encode_check.cpp")
_CXX = (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
        or shutil.which("clang++"))
pytestmark = pytest.mark.skipif(_CXX is None, reason="no host C++ compiler (c++, g++, clang++)")


@pytest.fixture(scope="module")
def checker(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("e2m1") / "e2m1_encode_check"
    # -ffp-contract=off: no fused multiply-adds beyond the header's explicit one.
    subprocess.run([_CXX, "-std=c++17", "-O2", "-ffp-contract=off",
                    f"-I{ROOT / 'csrc' / 'include'}", str(SOURCE), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def test_every_float_near_the_e2m1_grid_and_packed_words(checker):
    out = subprocess.run([str(checker), "exhaustive"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("OK"), out.stdout + out.stderr


def _around(values, ulps):
    """Every float32 within `ulps` steps of each value (both signs)."""
    bits = np.array(values, dtype=np.float32).view(np.int32)
    near = (bits[:, None] + np.arange(-ulps, ulps + 1, dtype=np.int32)[None, :]).ravel()
    x = near.view(np.float32)
    x = x[np.isfinite(x)]
    return np.concatenate([x, -x])


def test_codes_equal_reference_e2m1_rne(checker):
    """The C++ codes against reference.py's own function (clamp, then e2m1_rne), so the rule
    written out in the checker cannot drift from the specification."""
    boundaries = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0,
                  8.0, 1e-38, 3e38]
    rng = np.random.default_rng(0)
    q = np.concatenate([_around(boundaries, 2048), rng.uniform(-8, 8, 100_000).astype(np.float32),
                        np.array([np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)])
    got = subprocess.run([str(checker), "codes"], input=q.astype(np.float32).tobytes(),
                         capture_output=True, check=True).stdout
    got = np.frombuffer(got, dtype=np.uint8)
    v = torch.from_numpy(q)
    want = ref.e2m1_rne(torch.clamp(v, -ref.E2M1_MAX, ref.E2M1_MAX)).numpy()
    assert got.shape == want.shape
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{bad.size} codes differ, first q={q[bad[0]]!r}: {got[bad[0]]} vs " \
                          f"{want[bad[0]]}"
