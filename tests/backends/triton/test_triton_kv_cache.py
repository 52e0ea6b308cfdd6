"""Triton FP8 KV cache write/gather: bit-exact with nvfp4_kernels.reference."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref

from triton_testlib import poisoned

triton_kv = pytest.importorskip("nvfp4_kernels.backends.triton.kv_cache")


def _same(actual, expected):
    """Bit-exact, NaN where the reference has NaN (never-written slots hold random bytes)."""
    torch.testing.assert_close(actual.cpu(), expected, rtol=0, atol=0, equal_nan=True)


def _case(gen, device, heads, dim, block_size, per_head, cache_dtype, dtype):
    num_blocks, tokens = 5, 23
    key = (torch.randn(tokens, heads, dim, generator=gen) * 300).to(dtype).to(device)
    value = (torch.randn(tokens, heads, dim, generator=gen) * 0.01).to(dtype).to(device)
    n = heads if per_head else 1
    k_scale = (torch.rand(n, generator=gen) + 0.1).to(device)
    v_scale = (torch.rand(n, generator=gen) * 1e-3 + 1e-5).to(device)  # subnormal e4m3 too
    slots = torch.randperm(num_blocks * block_size, generator=gen)[:tokens]
    slots[::4] = -1
    slots = slots.to(torch.int32 if per_head else torch.int64).to(device)
    shape = (num_blocks, block_size, heads, dim)
    kc = torch.randint(0, 255, shape, dtype=torch.uint8, generator=gen).to(device)
    vc = torch.randint(0, 255, shape, dtype=torch.uint8, generator=gen).to(device)
    return key, value, kc.view(cache_dtype), vc.view(cache_dtype), slots, k_scale, v_scale


@pytest.mark.parametrize("heads,dim,block_size,per_head,cache_dtype,dtype", [
    (2, 64, 16, False, torch.float8_e4m3fn, torch.bfloat16),
    (3, 80, 32, True, torch.uint8, torch.float16),
    (1, 512, 128, True, torch.float8_e4m3fn, torch.float32),
])
def test_write_then_gather(heads, dim, block_size, per_head, cache_dtype, dtype, device, gen):
    key, value, kc, vc, slots, ks, vs = _case(gen, device, heads, dim, block_size, per_head,
                                              cache_dtype, dtype)
    kc_ref, vc_ref = kc.cpu().clone(), vc.cpu().clone()
    triton_kv.kv_cache_write(key, value, kc, vc, slots, ks, vs)
    ref.kv_cache_write(key.cpu(), value.cpu(), kc_ref, vc_ref, slots.cpu(), ks.cpu(), vs.cpu())
    assert torch.equal(kc.view(torch.uint8).cpu(), kc_ref.view(torch.uint8))  # -1 rows untouched
    assert torch.equal(vc.view(torch.uint8).cpu(), vc_ref.view(torch.uint8))

    num_blocks = kc.shape[0]
    table = torch.stack([torch.randperm(num_blocks, generator=gen)[:3] for _ in range(4)])
    lens = torch.tensor([block_size + 1, 0, 3, 2 * block_size], dtype=torch.int32)
    total = int(lens.sum())
    for out_dtype in (torch.bfloat16, torch.float32):
        out = (poisoned((total, heads, dim), out_dtype, device),
               poisoned((total, heads, dim), out_dtype, device))
        k, v = triton_kv.kv_cache_gather(kc, vc, table.to(device), lens.to(device), ks, vs,
                                         total, out_dtype, out=out)
        k_ref, v_ref = ref.kv_cache_gather(kc.cpu(), vc.cpu(), table, lens, ks.cpu(), vs.cpu(),
                                           out_dtype)
        _same(k, k_ref)
        _same(v, v_ref)


def test_public_path(device, gen):
    key, value, kc, vc, slots, ks, vs = _case(gen, device, 2, 64, 16, False,
                                              torch.float8_e4m3fn, torch.bfloat16)
    nk.kv_cache.write(key, value, kc, vc, slots, ks, vs, backend="triton")
    table = torch.tensor([[0, 1], [4, 2]], dtype=torch.int32, device=device)
    lens = torch.tensor([17, 5], dtype=torch.int32, device=device)
    k, v = nk.kv_cache.gather(kc, vc, table, lens, ks, vs, backend="triton", total_tokens=22)
    k_ref, v_ref = ref.kv_cache_gather(kc.cpu(), vc.cpu(), table.cpu(), lens.cpu(), ks.cpu(),
                                       vs.cpu())
    _same(k, k_ref)
    _same(v, v_ref)


def test_decode_write_and_out_of_range_indices_match_the_reference_backend(device, gen):
    """One decode token over many heads, slots and block ids outside the cache: skipped or
    zero-filled in-kernel, exactly as the reference backend does."""
    from nvfp4_kernels.backends import reference as ref_backend

    heads, dim, block_size, num_blocks = 32, 256, 16, 3
    shape = (num_blocks, block_size, heads, dim)
    kc = torch.randint(0, 255, shape, dtype=torch.uint8, generator=gen)
    vc = torch.randint(0, 255, shape, dtype=torch.uint8, generator=gen)
    scale = torch.tensor([0.5])
    for slots in ([17], [num_blocks * block_size], [-5], [3, 999, -1, 47]):
        tokens = len(slots)
        key = torch.randn(tokens, heads, dim, generator=gen).half()
        value = torch.randn(tokens, heads, dim, generator=gen).half()
        slot_t = torch.tensor(slots)
        got_k, got_v = kc.clone().to(device), vc.clone().to(device)
        triton_kv.kv_cache_write(key.to(device), value.to(device), got_k, got_v,
                                 slot_t.to(device), scale.to(device), scale.to(device))
        want_k, want_v = kc.clone(), vc.clone()
        ref_backend.kv_cache_write(key, value, want_k, want_v, slot_t, scale, scale)
        assert torch.equal(got_k.cpu(), want_k) and torch.equal(got_v.cpu(), want_v), slots

    table = torch.tensor([[0, 1], [2, 9], [-1, 0]], dtype=torch.int32)
    lens = torch.tensor([40, 20, 5], dtype=torch.int32)
    for total in (1, 65, 80):  # fewer rows than sum(seq_lens), exactly it, and more
        out = (poisoned((total, heads, dim), torch.float32, device),
               poisoned((total, heads, dim), torch.float32, device))
        k, v = triton_kv.kv_cache_gather(kc.to(device), vc.to(device), table.to(device),
                                         lens.to(device), scale.to(device), scale.to(device),
                                         total, torch.float32, out=out)
        want_k, want_v = ref_backend.kv_cache_gather(kc, vc, table, lens, scale, scale, total,
                                                     torch.float32)
        _same(k, want_k)
        _same(v, want_v)


@pytest.mark.parametrize("config", triton_kv.CANDIDATES)
def test_every_tile_candidate_is_bit_exact(config, device, gen):
    key, value, kc, vc, slots, ks, vs = _case(gen, device, 3, 80, 16, True, torch.uint8,
                                              torch.float16)
    want_k, want_v = kc.cpu().clone(), vc.cpu().clone()
    triton_kv.kv_cache_write(key, value, kc, vc, slots, ks, vs, config=config)
    ref.kv_cache_write(key.cpu(), value.cpu(), want_k, want_v, slots.cpu(), ks.cpu(), vs.cpu())
    assert torch.equal(kc.cpu(), want_k) and torch.equal(vc.cpu(), want_v)
    table = torch.tensor([[0, 1], [4, 2]], dtype=torch.int32)
    lens = torch.tensor([17, 5], dtype=torch.int32)
    k, v = triton_kv.kv_cache_gather(kc, vc, table.to(device), lens.to(device), ks, vs, 22,
                                     torch.float32, config=config)
    k_ref, v_ref = ref.kv_cache_gather(kc.cpu(), vc.cpu(), table, lens, ks.cpu(), vs.cpu(),
                                       torch.float32)
    _same(k, k_ref)
    _same(v, v_ref)
