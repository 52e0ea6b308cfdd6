"""nk.attention.decode: the reference's semantics, the public function, the op contract, errors.

The kernel itself is tested in tests/backends/triton/test_triton_attention.py; here the device
fixture runs the automatic choice (the reference on CPU, Triton on a GPU).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.library import opcheck

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref
from tests.conftest import rel_error

E4M3 = torch.float8_e4m3fn


def naive(q, kc, vc, table, lens, ks, vs, sm_scale, window=None):
    """One query row at a time, written from the docstring of nk.attention.decode."""
    batch, q_len, hq, dim = q.shape
    num_blocks, bs, hkv, _ = kc.shape
    vc = kc if vc is None else vc
    vs = ks if vs is None else vs
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b in range(batch):
        n = int(lens[b])
        for t in range(q_len):
            p = n - q_len + t
            for j in range(hq):
                h = j // (hq // hkv)
                scores, values = [], []
                for key in range(n):
                    col = key // bs
                    if key > p or (window and key <= p - window) or col >= table.shape[1]:
                        continue
                    blk = int(table[b, col])
                    if not 0 <= blk < num_blocks:
                        continue
                    k = kc[blk, key % bs, h].float().double() * float(ks.reshape(-1)[h % ks.numel()])
                    v = vc[blk, key % bs, h].float().double() * float(vs.reshape(-1)[h % vs.numel()])
                    scores.append(float(q[b, t, j].double() @ k) * sm_scale)
                    values.append(v)
                if scores:
                    w = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0)
                    out[b, t, j] = sum(wi * vi for wi, vi in zip(w, values))
    return out


def random_case(gen, *, batch=3, q_len=1, hq=4, hkv=2, dim=32, bs=4, num_blocks=12, cols=4,
                lens=(5, 0, 13), kv_eq=False, per_head=True):
    kc = (torch.randn(num_blocks, bs, hkv, dim, generator=gen) * 2).to(E4M3)
    vc = None if kv_eq else (torch.randn(num_blocks, bs, hkv, dim, generator=gen) * 2).to(E4M3)
    table = torch.stack([torch.randperm(num_blocks, generator=gen)[:cols]
                         for _ in range(batch)]).int()
    q = torch.randn(batch, q_len, hq, dim, generator=gen).half()
    n = hkv if per_head else 1
    ks = torch.rand(n, generator=gen) + 0.5
    vs = None if kv_eq else torch.rand(n, generator=gen) + 0.5
    return q, kc, vc, table, torch.tensor(lens, dtype=torch.int32), ks, vs


@pytest.mark.parametrize("q_len,window,kv_eq", [(1, None, False), (2, 3, False), (3, None, True)])
def test_reference_is_the_documented_semantics(q_len, window, kv_eq):
    gen = torch.Generator().manual_seed(q_len)
    q, kc, vc, table, lens, ks, vs = random_case(gen, q_len=q_len, kv_eq=kv_eq)
    table[2, 1] = -1   # keys 4..7 of sequence 2 are missing
    table[2, 2] = 99   # and 8..11 point outside the cache
    got = ref.attention_decode(q, kc, vc, table, lens, ks, vs, 0.3, window)
    want = naive(q, kc, vc, table, lens, ks, vs, 0.3, window)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(got[1], torch.zeros_like(got[1]))  # seq_len 0


def test_decode_shapes_defaults_and_accuracy(device):
    """3-D q (one token) and 4-D q; default sm_scale 1/sqrt(D); float scales; within 2e-3."""
    gen = torch.Generator().manual_seed(7)
    q, kc, vc, table, lens, ks, vs = random_case(gen, dim=64, bs=16, cols=3, lens=(40, 1, 33))
    dev = [t.to(device) for t in (q, kc, vc, table, lens)]
    want = ref.attention_decode(q, kc, vc, table, lens, torch.tensor([0.5]),
                                torch.tensor([2.0]), 1 / math.sqrt(64))
    out4 = nk.attention.decode(dev[0], dev[1], dev[2], dev[3], dev[4], 0.5, 2.0)
    out3 = nk.attention.decode(dev[0][:, 0].contiguous(), dev[1], dev[2], dev[3], dev[4], 0.5, 2.0)
    assert out4.shape == q.shape and out4.dtype == torch.float16 and out4.device == q.to(device).device
    assert out3.shape == (3, 4, 64)
    assert rel_error(out4, want) <= 2e-3
    assert torch.equal(out3.cpu(), out4[:, 0].cpu())


def test_value_cache_none_reads_v_from_the_key_cache(device):
    gen = torch.Generator().manual_seed(3)
    q, kc, _, table, lens, ks, _ = random_case(gen, dim=32, bs=16, cols=2, lens=(20, 3, 9))
    d = lambda t: t.to(device)  # noqa: E731
    shared = nk.attention.decode(d(q), d(kc), None, d(table), d(lens), d(ks), sm_scale=0.2)
    explicit = nk.attention.decode(d(q), d(kc), d(kc), d(table), d(lens), d(ks), d(ks),
                                   sm_scale=0.2)
    assert torch.equal(shared.cpu(), explicit.cpu())


def test_empty_batch_and_cache_without_blocks(device):
    q = torch.zeros(0, 4, 32, dtype=torch.bfloat16, device=device)
    kc = torch.zeros(3, 16, 2, 32, dtype=E4M3, device=device)
    none = torch.zeros(0, 2, dtype=torch.int32, device=device)
    out = nk.attention.decode(q, kc, kc, none, none[:, 0], 1.0, 1.0)
    assert out.shape == (0, 4, 32)
    q1 = torch.randn(2, 4, 32, device=device).bfloat16()
    table = torch.zeros(2, 1, dtype=torch.int32, device=device)
    lens = torch.tensor([5, 0], dtype=torch.int32, device=device)
    out = nk.attention.decode(q1, kc[:0], kc[:0], table, lens, 1.0, 1.0)
    assert torch.equal(out.float().cpu(), torch.zeros(2, 4, 32))  # every block id is out of range


def test_bad_inputs_name_the_argument():
    kc = torch.zeros(4, 16, 2, 64, dtype=E4M3)
    q = torch.randn(2, 4, 64).bfloat16()
    table = torch.zeros(2, 3, dtype=torch.int32)
    lens = torch.tensor([3, 5], dtype=torch.int32)
    dec = nk.attention.decode
    with pytest.raises(TypeError, match="q: dtype"):
        dec(q.float(), kc, kc, table, lens, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"q: expected \[batch, q_heads, head_dim\]"):
        dec(q[0], kc, kc, table, lens, 1.0, 1.0)
    with pytest.raises(ValueError, match="head_dim 32 does not match the cache's 64"):
        dec(q[..., :32].contiguous(), kc, kc, table, lens, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"query heads \(3\) must be a multiple"):
        dec(q[:, :3].contiguous(), kc, kc, table, lens, 1.0, 1.0)
    with pytest.raises(ValueError, match="key_cache and value_cache differ"):
        dec(q, kc, kc[:2], table, lens, 1.0, 1.0)
    with pytest.raises(TypeError, match="key_cache: dtype"):
        dec(q, kc.float(), kc, table, lens, 1.0, 1.0)
    with pytest.raises(ValueError, match="one row per sequence"):
        dec(q, kc, kc, table[:1], lens, 1.0, 1.0)
    with pytest.raises(TypeError, match="seq_lens: dtype"):
        dec(q, kc, kc, table, lens.float(), 1.0, 1.0)
    with pytest.raises(ValueError, match="v_scale: required"):
        dec(q, kc, kc, table, lens, 1.0)
    with pytest.raises(ValueError, match="k_scale: expected 1 or 2 element"):
        dec(q, kc, kc, table, lens, torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="k_scale: must be finite"):
        dec(q, kc, kc, table, lens, -1.0, 1.0)
    with pytest.raises(ValueError, match="sm_scale"):
        dec(q, kc, kc, table, lens, 1.0, 1.0, sm_scale=float("nan"))
    with pytest.raises(ValueError, match="window: expected an int >= 0"):
        dec(q, kc, kc, table, lens, 1.0, 1.0, window=-2)
    with pytest.raises(ValueError, match="num_splits"):
        dec(q, kc, kc, table, lens, 1.0, 1.0, num_splits=1.5)
    with pytest.raises(ValueError, match="must be contiguous"):
        dec(q.transpose(0, 1), kc, kc, table, lens, 1.0, 1.0)


def test_debug_checks_refuse_lengths_blocks_and_short_sequences():
    """With nk.debug checks on, what the kernels would silently skip is an error naming the
    argument; with them off the same call runs (those keys are left out)."""
    gen = torch.Generator().manual_seed(11)
    q, kc, vc, table, _, ks, vs = random_case(gen, batch=2, q_len=2, lens=(5, 6))
    cases = [("seq_lens", table, [17, 6]),            # more keys than 4 blocks of 4
             ("block_table", table.clone().index_fill_(1, torch.tensor([1]), -1), [5, 6]),
             ("seq_lens", table, [1, 6])]             # 1 key, 2 new tokens
    previous = nk.debug.set_checks(True)
    try:
        for name, bad_table, lens in cases:
            with pytest.raises(ValueError, match=name):
                nk.attention.decode(q, kc, vc, bad_table, torch.tensor(lens, dtype=torch.int32),
                                    ks, vs)
        nk.attention.decode(q, kc, vc, table, torch.tensor([5, 0], dtype=torch.int32), ks, vs)
    finally:
        nk.debug.set_checks(previous)
    out = nk.attention.decode(q, kc, vc, cases[1][1], torch.tensor([5, 6], dtype=torch.int32),
                              ks, vs)
    assert torch.isfinite(out).all()


def _op_args(device):
    gen = torch.Generator().manual_seed(0)
    q, kc, vc, table, lens, ks, vs = random_case(gen, dim=32, bs=16, cols=2, lens=(20, 3, 0))
    d = lambda t: t.to(device)  # noqa: E731
    return (d(q), d(kc).view(torch.uint8), d(vc).view(torch.uint8), d(table), d(lens), d(ks),
            d(vs), 0.25)


def test_opcheck(device):
    args = _op_args(device)
    for extra in ((), (8, 40, 2)):
        result = opcheck(torch.ops.nvfp4.attention_decode.default, args + extra)
        assert all(v == "SUCCESS" for v in result.values()), result
    q, kc, _, table, lens, ks, _, scale = args
    result = opcheck(torch.ops.nvfp4.attention_decode.default,
                     (q, kc, None, table, lens, ks, None, scale))
    assert all(v == "SUCCESS" for v in result.values()), result


def test_fake_kernel_gives_the_shape_and_checks():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(8, 2, 32, 256, dtype=torch.bfloat16)
        kc = torch.empty(100, 16, 16, 256, dtype=E4M3)
        table = torch.empty(8, 64, dtype=torch.int32)
        lens = torch.empty(8, dtype=torch.int32)
        one = torch.empty(1)
        out = torch.ops.nvfp4.attention_decode(q, kc, kc, table, lens, one, one, 0.0625)
        assert out.shape == q.shape and out.dtype == q.dtype
        with pytest.raises(ValueError, match="query heads"):
            torch.ops.nvfp4.attention_decode(q[:, :, :30].contiguous(), kc, kc, table, lens, one, one, 1.0)


def test_compile_fullgraph_write_then_attend_matches_eager():
    gen = torch.Generator().manual_seed(4)
    kc = torch.zeros(4, 16, 2, 32, dtype=E4M3)
    table = torch.tensor([[2, 0]], dtype=torch.int32)
    pos = torch.arange(21)
    slots = table[0, pos // 16].long() * 16 + pos % 16
    keys = torch.randn(20, 2, 32, generator=gen)
    nk.kv_cache.write(keys, keys, kc, kc.clone(), slots[:20], 1.0, 1.0)

    def step(q, key, kc, slot, lens):
        nk.kv_cache.write(key, key, kc, kc, slot, torch.ones(1), torch.ones(1))
        return nk.attention.decode(q, kc, None, table, lens, torch.ones(1), window=8)

    q = torch.randn(1, 4, 32, generator=gen).half()
    key = torch.randn(1, 2, 32, generator=gen)
    args = (slots[20:], torch.tensor([21], dtype=torch.int32))
    kc2 = kc.clone()
    eager = step(q, key, kc, *args)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(q, key, kc2, *args)
    assert torch.equal(eager, compiled)
