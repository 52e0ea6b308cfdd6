"""Triton decode attention over the FP8 paged cache, against the float64 reference.

Interpreter on CPU tensors in CI, compiled kernels on a GPU (this folder's conftest). Shapes are
small so the interpreter stays fast; head dims 256 and 512 (Gemma-4-31B's sliding and full
layers) run with short sequences.
"""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels import reference as ref

from triton_testlib import poisoned, rel_error

ta = pytest.importorskip("nvfp4_kernels.backends.triton.attention")

BAR = 2e-3  # issue 12: relative error vs the float64 reference
E4M3 = torch.float8_e4m3fn


def make_case(gen, device, *, batch=3, q_len=1, hq=4, hkv=2, dim=64, block_size=16,
              num_blocks=24, cols=5, lens=None, kv_eq=False, per_head=False,
              dtype=torch.float16, cache_dtype=E4M3):
    """Random e4m3 caches (never NaN codes), a shuffled block table, ragged lengths."""
    shape = (num_blocks, block_size, hkv, dim)
    kc = (torch.randn(shape, generator=gen) * 3).to(E4M3)
    vc = None if kv_eq else (torch.randn(shape, generator=gen) * 3).to(E4M3)
    table = torch.stack([torch.randperm(num_blocks, generator=gen)[:cols]
                         for _ in range(batch)]).int()
    if lens is None:
        lens = torch.randint(1, cols * block_size + 1, (batch,), generator=gen)
    lens = torch.as_tensor(lens, dtype=torch.int32)
    q = torch.randn(batch, q_len, hq, dim, generator=gen).to(dtype)
    n = hkv if per_head else 1
    ks = torch.rand(n, generator=gen) + 0.25
    vs = None if kv_eq else torch.rand(n, generator=gen) + 0.25
    on = lambda t: None if t is None else t.to(device)  # noqa: E731
    return dict(q=on(q), key_cache=on(kc.view(cache_dtype)),
                value_cache=on(None if vc is None else vc.view(cache_dtype)),
                block_table=on(table), seq_lens=on(lens), k_scale=on(ks), v_scale=on(vs))


def run(case, *, sm_scale=0.1, window=0, max_seq_len=0, num_splits=0, **kw):
    out = poisoned(case["q"].shape, case["q"].dtype, case["q"].device)
    return ta.attention_decode(case["q"], case["key_cache"], case["value_cache"],
                               case["block_table"], case["seq_lens"], case["k_scale"],
                               case["v_scale"], sm_scale, window, max_seq_len, num_splits,
                               out=out, **kw)


def expected(case, *, sm_scale=0.1, window=0):
    cpu = {k: None if v is None else v.cpu() for k, v in case.items()}
    return ref.attention_decode(cpu["q"], cpu["key_cache"], cpu["value_cache"],
                                cpu["block_table"], cpu["seq_lens"], cpu["k_scale"],
                                cpu["v_scale"], sm_scale, window or None)


def assert_close(out, want, dtype):
    """Within the bar, and no worse than rounding the exact result to dtype plus 5e-4."""
    assert not torch.isnan(out).any(), "NaN in the output (unwritten or 0/0)"
    err = rel_error(out, want)
    floor = rel_error(want.to(dtype), want)
    assert err <= BAR and err <= floor + 5e-4, (err, floor)


@pytest.mark.parametrize("block_size,hq,hkv,dim,q_len,window,kv_eq,per_head,dtype,splits", [
    (16, 4, 2, 64, 1, 0, False, False, torch.float16, 0),
    (32, 8, 1, 32, 1, 0, False, True, torch.bfloat16, 3),     # GQA 8, forced splits
    (64, 2, 2, 48, 1, 40, False, False, torch.float16, 2),     # MHA, window, head dim not pow2
    (128, 6, 3, 64, 1, 0, True, True, torch.bfloat16, 1),     # K = V, per-head scales
    (16, 4, 1, 64, 3, 0, False, False, torch.float16, 4),      # 3 query tokens (speculative)
    (16, 16, 2, 32, 3, 20, True, False, torch.bfloat16, 2),    # 24 rows: 2 row blocks, window
])
def test_matches_reference(block_size, hq, hkv, dim, q_len, window, kv_eq, per_head, dtype,
                           splits, device, gen):
    case = make_case(gen, device, hq=hq, hkv=hkv, dim=dim, block_size=block_size,
                     num_blocks=max(12, 3 * 200 // block_size), cols=200 // block_size + 1,
                     q_len=q_len, kv_eq=kv_eq, per_head=per_head, dtype=dtype,
                     lens=[200, 1 + q_len, 97])
    out = run(case, window=window, num_splits=splits)
    assert out.shape == case["q"].shape and out.dtype == dtype
    assert_close(out, expected(case, window=window), dtype)


@pytest.mark.parametrize("dim,hq,hkv,window", [(256, 4, 2, 48), (512, 8, 1, 0)])
def test_gemma4_head_dims(dim, hq, hkv, window, device, gen):
    """Gemma-4-31B's layer kinds (GQA 2 at 256 with a window; GQA 8 at 512, K = V), short."""
    case = make_case(gen, device, batch=2, hq=hq, hkv=hkv, dim=dim, block_size=16,
                     num_blocks=10, cols=5, lens=[70, 33], kv_eq=dim == 512,
                     dtype=torch.bfloat16)
    out = run(case, sm_scale=1.0 / dim ** 0.5, window=window, num_splits=2)
    assert_close(out, expected(case, sm_scale=1.0 / dim ** 0.5, window=window), torch.bfloat16)


def test_empty_sequences_padding_and_bad_block_ids(device, gen):
    """seq_len 0 -> zeros (no NaN); -1 and out-of-range block ids drop their keys; columns past
    a sequence's length (padding) are never read, whatever they hold."""
    case = make_case(gen, device, batch=4, cols=6, num_blocks=8, lens=[0, 40, 0, 17])
    table = case["block_table"].clone()
    table[1, 1] = -1            # positions 16..31 of sequence 1 are missing
    table[1, 2] = 1000          # and 32..39 point outside the cache
    table[3, 2:] = -7           # padding past length 17 (2 blocks)
    case["block_table"] = table
    for splits in (1, 3):
        out = run(case, num_splits=splits)
        want = expected(case)
        assert torch.equal(out[0].cpu(), torch.zeros_like(out[0].cpu()))
        assert torch.equal(out[2].cpu(), torch.zeros_like(out[2].cpu()))
        assert_close(out, want, torch.float16)


def test_every_key_masked_gives_zeros(device, gen):
    """A sequence whose every block id is -1 has no key: zeros, like seq_len 0."""
    case = make_case(gen, device, batch=2, lens=[30, 30])
    case["block_table"][0].fill_(-1)
    out = run(case, num_splits=2)
    assert torch.equal(out[0].float().cpu(), torch.zeros(out[0].shape))
    assert_close(out[1:], expected(case)[1:], torch.float16)


def test_split_count_and_max_seq_len_do_not_change_the_result(device, gen):
    """Any split count (auto from max_seq_len, or forced) gives the same answer within rounding,
    and one split count always gives the same bits (ordered combine, no atomics)."""
    case = make_case(gen, device, batch=2, lens=[75, 5], cols=5)
    want = expected(case)
    first = run(case, num_splits=4)
    assert torch.equal(first.cpu(), run(case, num_splits=4).cpu())
    for kwargs in (dict(num_splits=1), dict(num_splits=7), dict(max_seq_len=80), dict()):
        assert_close(run(case, **kwargs), want, torch.float16)


def test_uint8_caches_and_int64_indices(device, gen):
    case = make_case(gen, device, cache_dtype=torch.uint8, lens=[33, 64, 1])
    case["block_table"] = case["block_table"].long()
    case["seq_lens"] = case["seq_lens"].long()
    assert_close(run(case, num_splits=2), expected(case), torch.float16)


def test_bit_decode_path_matches(device, gen):
    """The SM80 path (e4m3 decoded by moving bits, 2**8 folded into the scale) is the one the
    interpreter always runs; on a GPU it is forced here so both paths are tested compiled."""
    case = make_case(gen, device, batch=2, lens=[50, 9])
    assert_close(run(case, num_splits=2, hw_cvt=False), expected(case), torch.float16)


@pytest.mark.parametrize("dim,config", [(64, (32, 4, 1, False)), (18, None), (64, (16, 4, 2))])
def test_byte_load_path_matches(dim, config, device, gen):
    """Byte loads (no word loads): forced by the config's fourth element, or a head dim that is
    not a multiple of 4 (18); a 3-tuple config keeps word loads."""
    case = make_case(gen, device, batch=2, dim=dim, lens=[70, 9])
    assert_close(run(case, num_splits=2, config=config), expected(case), torch.float16)


def test_every_candidate_config_matches(device, gen):
    """What the benchmark's --sweep times must be correct too (one small case each)."""
    case = make_case(gen, device, batch=1, hq=2, hkv=1, dim=32, lens=[150], cols=10,
                     num_blocks=10)
    want = expected(case)
    for config in ta.CANDIDATES + (ta.config_for(256), ta.config_for(512)):
        assert_close(run(case, num_splits=2, config=config), want, torch.float16)


def test_combine_over_more_splits_than_one_step(device, gen):
    """More splits than the combine's BLOCK_S per step (partial last step), some of them empty
    (sequence shorter than the split count times BLOCK_N)."""
    case = make_case(gen, device, batch=2, lens=[75, 3], cols=5)
    splits = ta.COMBINE_BLOCK_S + 3
    out = run(case, num_splits=splits, config=(16, 4, 1))
    assert_close(out, expected(case), torch.float16)
    assert torch.equal(out.cpu(), run(case, num_splits=splits, config=(16, 4, 1)).cpu())


def test_choose_splits_fills_the_gpu_without_tiny_splits():
    sms = 132
    # Batch 1, 32K keys, 16 KV heads: many splits, each >= MIN_SPLIT_KEYS keys.
    s = ta.choose_splits(1, 16, 1, 32768, sms)
    assert 16 * s >= ta.WAVES * sms and 32768 / s >= ta.MIN_SPLIT_KEYS
    # Short sequences never split below MIN_SPLIT_KEYS; large batches need no split.
    assert ta.choose_splits(8, 16, 1, 300, sms) == 2
    assert ta.choose_splits(64, 16, 1, 32768, sms) == 1
    assert ta.choose_splits(0, 16, 1, 0, sms) == 1
    # Splits rounded up to BLOCK_N keys: 9 wanted, 8 of 512 cover 4096 keys (no empty split).
    assert ta.choose_splits(1, 64, 1, 4096, sms) == 9
    assert ta.choose_splits(1, 64, 1, 4096, sms, block_n=64) == 8
    # Per head dim: twice the default waves at 256, the default at 512.
    assert ta.waves_for(256) == 2 * ta.WAVES and ta.waves_for(512) == ta.WAVES
    wide = ta.choose_splits(1, 16, 1, 32768, sms, waves=ta.waves_for(256))
    assert 16 * wide >= ta.waves_for(256) * sms and wide > s


def test_public_path(device, gen):
    case = make_case(gen, device, batch=2, lens=[21, 40])
    q3 = case["q"][:, 0].contiguous()
    out = nk.attention.decode(q3, case["key_cache"], case["value_cache"], case["block_table"],
                              case["seq_lens"], case["k_scale"], case["v_scale"], sm_scale=0.1,
                              backend="triton")
    assert out.shape == q3.shape
    assert_close(out, expected(case)[:, 0], torch.float16)
