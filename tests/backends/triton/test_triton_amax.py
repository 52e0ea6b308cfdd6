"""Triton amax / global scale (backends/triton/amax.py): equal to nvfp4_kernels.reference."""

from __future__ import annotations

import pytest
import torch

from nvfp4_kernels import reference as ref

triton_amax = pytest.importorskip("nvfp4_kernels.backends.triton.amax")


def test_global_scale_matches_reference(device, gen):
    x = (torch.randn(19, 32, generator=gen) * 7).to(torch.bfloat16).to(device)
    assert torch.equal(triton_amax.global_scale(x).cpu(), ref.global_scale(x.cpu()))
    zeros = torch.zeros(4, 16, device=device)
    assert triton_amax.global_scale(zeros).item() == 1.0


def test_amax_ignores_non_finite_elements(device):
    x = torch.tensor([[1.0, -7.5, float("inf"), float("nan")] * 4], device=device)
    assert triton_amax.amax(x).item() == 7.5


def test_empty_input(device):
    empty = torch.zeros(0, 16, device=device)
    assert triton_amax.amax(empty).item() == 0.0
    assert triton_amax.global_scale(empty).item() == 1.0


def test_grid_stride_loop_and_last_program(device):
    """More blocks than programs (each program loops), a ragged last block, non-finite values
    and the maximum in the last block: the last program to finish must see every maximum."""
    programs = triton_amax._PROGRAMS_PER_SM * triton_amax.sm_count(device.type, device.index)
    numel = triton_amax._BLOCK * programs * 2 + 77
    big = torch.randn(numel) * 5
    big[123], big[7] = float("inf"), float("nan")
    big[-3] = -50.0  # in the ragged tail: the largest finite magnitude
    big = big.to(device)
    finite = torch.where(torch.isfinite(big), big, 0.0)
    assert triton_amax.amax(big).item() == 50.0
    assert torch.equal(triton_amax.global_scale(big).cpu(), ref.global_scale(finite.cpu()))


def test_tiny_amax_clamps_to_flt_max(device):
    tiny = torch.full((1, 16), 1e-40, device=device)
    assert triton_amax.global_scale(tiny).item() == torch.finfo(torch.float32).max


@pytest.mark.parametrize("config", triton_amax.CANDIDATES)
def test_every_launch_candidate_matches_reference(config, device, gen):
    """The sweep in benchmarks/bench_quantize.py may make any candidate the default."""
    block, per_sm = config
    x = (torch.randn(3, 9000, generator=gen) * 3).to(torch.bfloat16).to(device)
    got = triton_amax.global_scale(x, block=block, programs_per_sm=per_sm)
    assert torch.equal(got.cpu(), ref.global_scale(x.cpu()))
