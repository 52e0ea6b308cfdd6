"""FP8 paged KV cache: write by slot mapping, gather by block table, per-tensor and per-head scales.

Every test runs on the CPU (reference backend) and, with a GPU, on CUDA tensors through the
automatic backend choice there."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from tests.conftest import assert_same_bits

E4M3 = torch.float8_e4m3fn


def make_cache(num_blocks, block_size, heads, dim, dtype=E4M3, device="cpu"):
    # Poison: 0x7f is e4m3 NaN, so any slot a write should not touch stays recognisable.
    return torch.full((num_blocks, block_size, heads, dim), 0x7F, dtype=torch.uint8,
                      device=device).view(dtype)


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("cache_dtype", [E4M3, torch.uint8])
def test_write_stores_satfinite_e4m3_at_slots(per_head, cache_dtype, device):
    gen = torch.Generator().manual_seed(1)
    tokens, heads, dim, block_size = 9, 4, 64, 16
    key = torch.randn(tokens, heads, dim, generator=gen).bfloat16() * 300
    value = torch.randn(tokens, heads, dim, generator=gen).bfloat16()
    k_scale = torch.rand(heads if per_head else 1, generator=gen) + 0.1
    v_scale = torch.tensor([0.01])
    kc, vc = (make_cache(4, block_size, heads, dim, cache_dtype, device) for _ in range(2))
    slots = torch.tensor([5, 17, -1, 63, 0, 40, -1, 33, 2])
    nk.kv_cache.write(key.to(device), value.to(device), kc, vc, slots.to(device),
                      k_scale.to(device), v_scale.to(device))
    flat_k = kc.cpu().view(E4M3).reshape(-1, heads, dim)
    flat_v = vc.cpu().view(E4M3).reshape(-1, heads, dim)
    ks = k_scale.reshape(-1, 1)
    for t, slot in enumerate(slots.tolist()):
        if slot < 0:
            continue
        want_k = torch.clamp(key[t].float() / ks, -448, 448).to(E4M3)
        want_v = torch.clamp(value[t].float() / 0.01, -448, 448).to(E4M3)
        assert_same_bits(flat_k[slot], want_k)
        assert_same_bits(flat_v[slot], want_v)
    untouched = torch.ones(flat_k.shape[0], dtype=torch.bool)
    untouched[slots[slots >= 0]] = False
    assert torch.all(flat_k[untouched].view(torch.uint8) == 0x7F)  # -1 skipped, nothing else hit
    assert torch.isfinite(flat_k[~untouched].float()).all()  # satfinite: never inf/NaN


@pytest.mark.parametrize("head_dim,block_size", [(64, 16), (256, 32), (512, 128)])
def test_gather_after_write_round_trips(head_dim, block_size, device):
    gen = torch.Generator().manual_seed(head_dim + block_size)
    heads, seq_lens = 2, torch.tensor([3, block_size + 5, 0, 1])
    blocks_per_seq = 2
    num_blocks = 16
    perm = torch.randperm(num_blocks, generator=gen)[:4 * blocks_per_seq]
    block_table = perm.reshape(4, blocks_per_seq).int()
    kc, vc = (make_cache(num_blocks, block_size, heads, head_dim, device=device) for _ in range(2))
    k_scale, v_scale = torch.tensor([0.5]), torch.tensor([0.25, 2.0])
    dev_k_scale, dev_v_scale = k_scale.to(device), v_scale.to(device)
    keys, values = [], []
    for i, n in enumerate(seq_lens.tolist()):
        k = torch.randn(n, heads, head_dim, generator=gen)
        v = torch.randn(n, heads, head_dim, generator=gen)
        pos = torch.arange(n)
        slots = block_table[i, pos // block_size].long() * block_size + pos % block_size
        nk.kv_cache.write(k.to(device), v.to(device), kc, vc, slots.to(device), dev_k_scale,
                          dev_v_scale)
        keys.append(k)
        values.append(v)
    dev_table, dev_lens = block_table.to(device), seq_lens.to(device)
    k_out, v_out = nk.kv_cache.gather(kc, vc, dev_table, dev_lens, dev_k_scale, dev_v_scale,
                                      dtype=torch.float32)
    assert k_out.device == kc.device
    total = int(seq_lens.sum())
    assert k_out.shape == (total, heads, head_dim) and v_out.dtype == torch.float32
    k_all, v_all = torch.cat(keys), torch.cat(values)
    want_k = torch.clamp(k_all / 0.5, -448, 448).to(E4M3).float() * 0.5
    vs = v_scale.reshape(-1, 1)
    want_v = torch.clamp(v_all / vs, -448, 448).to(E4M3).float() * vs
    assert_same_bits(k_out, want_k)
    assert_same_bits(v_out, want_v)
    k_bf16, _ = nk.kv_cache.gather(kc, vc, dev_table, dev_lens, dev_k_scale, dev_v_scale,
                                   total_tokens=total)
    assert_same_bits(k_bf16, want_k.bfloat16())


def test_empty_write_and_gather(device):
    kc, vc = make_cache(2, 16, 1, 64, device=device), make_cache(2, 16, 1, 64, device=device)
    empty = torch.zeros(0, 1, 64, device=device)
    nk.kv_cache.write(empty, empty, kc, vc, torch.zeros(0, dtype=torch.long, device=device),
                      1.0, 1.0)
    assert torch.all(kc.view(torch.uint8) == 0x7F)
    k, v = nk.kv_cache.gather(kc, vc, torch.zeros(0, 1, dtype=torch.int32, device=device),
                              torch.zeros(0, dtype=torch.int32, device=device), 1.0, 1.0)
    assert k.shape == (0, 1, 64) and v.shape == (0, 1, 64) and k.device == kc.device


def test_out_of_range_slots_are_skipped_without_debug_checks(device):
    """No host check on the hot path: slots outside the cache are skipped like -1, in-kernel."""
    kc, vc = make_cache(2, 16, 1, 64).to(device), make_cache(2, 16, 1, 64).to(device)
    x = torch.randn(4, 1, 64, device=device)
    nk.kv_cache.write(x, x, kc, vc, torch.tensor([0, 32, -2, 31], device=device), 1.0, 1.0)
    flat = kc.view(torch.uint8).reshape(32, 64).cpu()
    want = torch.clamp(x.cpu().float(), -448, 448).to(E4M3).view(torch.uint8).reshape(4, 64)
    assert torch.equal(flat[0], want[0]) and torch.equal(flat[31], want[3])
    assert torch.all(flat[1:31] == 0x7F)  # slots 32 and -2 wrote nothing


def test_debug_checks_refuse_out_of_range_slots_before_any_write():
    kc, vc = make_cache(2, 16, 1, 64), make_cache(2, 16, 1, 64)
    x = torch.randn(2, 1, 64)
    previous = nk.debug.set_checks(True)
    try:
        for bad in ([0, 32], [-2, 3]):
            with pytest.raises(ValueError, match="slot_mapping"):
                nk.kv_cache.write(x, x, kc, vc, torch.tensor(bad), 1.0, 1.0)
    finally:
        nk.debug.set_checks(previous)
    assert torch.all(kc.view(torch.uint8) == 0x7F)


def test_gather_zero_fills_rows_it_cannot_find(device):
    """Lengths past the table, bad block ids and rows past sum(seq_lens) read as zero."""
    gen = torch.Generator().manual_seed(5)
    kc = (torch.randn(3, 16, 1, 64, generator=gen)).to(E4M3).to(device)
    vc = kc.clone()
    table = torch.tensor([[0, 1], [2, 7]], dtype=torch.int32, device=device)  # 7: no such block
    lens = torch.tensor([40, 20], dtype=torch.int32, device=device)  # 40 > 2 blocks of 16
    k, v = nk.kv_cache.gather(kc, vc, table, lens, 1.0, 1.0, dtype=torch.float32,
                              total_tokens=64)
    flat = kc.float().reshape(48, 1, 64).cpu()
    k = k.cpu()
    assert torch.equal(k[:32], flat[:32])              # sequence 0, blocks 0 and 1
    assert torch.all(k[32:40] == 0)                    # positions 32..39: past its table row
    assert torch.equal(k[40:56], flat[32:48])          # sequence 1, block 2
    assert torch.all(k[56:60] == 0)                    # block id 7 is outside the cache
    assert torch.all(k[60:] == 0)                      # rows past sum(seq_lens) = 60
    assert torch.equal(v.cpu(), k)


def test_debug_checks_refuse_lengths_and_blocks_out_of_range():
    kc, vc = make_cache(2, 16, 1, 64), make_cache(2, 16, 1, 64)
    table = torch.tensor([[0, 1]], dtype=torch.int32)
    previous = nk.debug.set_checks(True)
    try:
        with pytest.raises(ValueError, match="seq_lens"):
            nk.kv_cache.gather(kc, vc, table, torch.tensor([33]), 1.0, 1.0)
        with pytest.raises(ValueError, match="block_table"):
            nk.kv_cache.gather(kc, vc, torch.tensor([[0, 5]], dtype=torch.int32),
                               torch.tensor([20]), 1.0, 1.0)
        with pytest.raises(ValueError, match="total_tokens"):
            nk.kv_cache.gather(kc, vc, table, torch.tensor([20]), 1.0, 1.0, total_tokens=3)
    finally:
        nk.debug.set_checks(previous)
