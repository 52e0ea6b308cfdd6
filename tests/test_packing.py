"""Nibble packing is bit-identical to compressed-tensors' pack/unpack (what checkpoints hold)."""

from __future__ import annotations

import importlib

import pytest
import torch

from nvfp4_kernels import layout
from nvfp4_kernels import reference as ref

# An optional dependency on the GPU machine: skip with the reason rather than fail.
pytest.importorskip("compressed_tensors", reason="compressed-tensors is not installed")


def _compressed_tensors_helpers():
    for path in ("compressed_tensors.compressors.nvfp4.helpers",
                 "compressed_tensors.compressors.quantized_compressors.nvfp4_quantized",
                 "compressed_tensors.compressors.quantized_compressors.fp4_quantized"):
        try:
            module = importlib.import_module(path)
        except ImportError:
            continue
        if hasattr(module, "pack_fp4_to_uint8"):
            return module
    pytest.fail("compressed-tensors (a test dependency) has no pack_fp4_to_uint8 we can find")


@pytest.mark.parametrize("shape", [(1, 16), (7, 32), (33, 96)])
def test_pack_matches_compressed_tensors(shape):
    ct = _compressed_tensors_helpers()
    gen = torch.Generator().manual_seed(shape[0])
    codes = torch.randint(0, 16, shape, generator=gen, dtype=torch.uint8)
    values = ref.e2m1_lut()[codes.long()]
    assert torch.equal(ct.pack_fp4_to_uint8(values), layout.pack_e2m1(codes))


@pytest.mark.parametrize("shape", [(1, 16), (5, 64)])
def test_unpack_matches_compressed_tensors(shape):
    ct = _compressed_tensors_helpers()
    gen = torch.Generator().manual_seed(100 + shape[0])
    packed = torch.randint(0, 256, (shape[0], shape[1] // 2), generator=gen, dtype=torch.uint8)
    theirs = ct.unpack_fp4_from_uint8(packed, shape[0], shape[1], dtype=torch.float32)
    ours = ref.e2m1_lut()[layout.unpack_e2m1(packed).long()]
    assert torch.equal(theirs, ours)


def test_low_nibble_is_the_even_element():
    codes = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    assert layout.pack_e2m1(codes).tolist() == [[0x21, 0x0F]]
    assert layout.unpack_e2m1(layout.pack_e2m1(codes)).tolist() == codes.tolist()
