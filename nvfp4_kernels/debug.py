"""Opt-in per-call validation that needs the data itself (and so a device-to-host sync).

The hot path checks only shapes, dtypes and devices, which costs no synchronisation and keeps every
op CUDA-graph capturable. Checks that must read tensor *values* (slot ids in range, block ids in
range, scales finite and positive) run only when debug checks are on:

    NVFP4_DEBUG_CHECKS=1 python serve.py        # whole process
    nk.debug.set_checks(True)                   # from code (returns the previous setting)

Kernels never rely on these checks for memory safety: out-of-range indices are skipped or
zero-filled in the kernels themselves (every backend: cuda, triton and the reference backend
behave the same). The debug checks exist to turn such silent skips into an error that names the
argument while a serving stack is being brought up. With checks on, the KV-cache ops synchronise
and cannot be captured in a CUDA graph: turn them off before capturing.

What is checked when on:

* ``kv_cache.write``: every slot is -1 or in [0, num_blocks * block_size).
* ``kv_cache.gather``: lengths in [0, block_table columns * block_size], ``total_tokens`` equals
  ``sum(seq_lens)``, and every block id a sequence uses is in [0, num_blocks).
* ``attention.decode``: the same lengths and block ids (a -1 inside a sequence's used blocks is
  refused too: without checks its keys are silently left out of the softmax), and every
  non-empty sequence holds at least its q_len new tokens.
"""

from __future__ import annotations

import os

import torch

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


# ---------------------------------------------------------------------------------------------
# The value checks (each reads index tensors on the host: one or more device syncs)
# ---------------------------------------------------------------------------------------------

def check_slots(slot_mapping, key_cache) -> None:
    """Slots must be -1 (skip) or in [0, num_blocks * block_size)."""
    if slot_mapping.numel() == 0:
        return
    num_slots = key_cache.shape[0] * key_cache.shape[1]
    lo, hi = int(slot_mapping.min()), int(slot_mapping.max())
    if lo < -1 or hi >= num_slots:
        raise ValueError(f"slot_mapping: slots must be -1 (skip) or in [0, {num_slots}) for a cache "
                         f"of {key_cache.shape[0]} blocks x {key_cache.shape[1]}; got min {lo}, "
                         f"max {hi} (without debug checks these tokens are silently skipped)")


def _check_lengths_and_blocks(key_cache, block_table, seq_lens) -> torch.Tensor:
    """Lengths within the block table and the block ids they use in [0, num_blocks); returns the
    lengths as int64 (on the device)."""
    block_size, num_blocks = key_cache.shape[1], key_cache.shape[0]
    lens = seq_lens.long()
    capacity = block_table.shape[1] * block_size
    if int(lens.min()) < 0 or int(lens.max()) > capacity:
        raise ValueError(f"seq_lens: lengths must be in [0, {capacity}] (block_table has "
                         f"{block_table.shape[1]} blocks of {block_size}); got {seq_lens.tolist()}")
    used = (lens + block_size - 1) // block_size
    cols = block_table.new_tensor(range(block_table.shape[1]), dtype=torch.long)
    live = block_table[cols.unsqueeze(0) < used.unsqueeze(1)]
    if live.numel() and (int(live.min()) < 0 or int(live.max()) >= num_blocks):
        raise ValueError(f"block_table: block ids used by seq_lens must be in [0, {num_blocks}); "
                         f"got min {int(live.min())}, max {int(live.max())}")
    return lens


def check_gather(key_cache, block_table, seq_lens, total_tokens) -> None:
    """Lengths within the block table, total_tokens == sum(seq_lens), used block ids in range."""
    if seq_lens.numel() == 0:
        if total_tokens != 0:
            raise ValueError(f"total_tokens: expected 0 for an empty batch, got {total_tokens}")
        return
    lens = _check_lengths_and_blocks(key_cache, block_table, seq_lens)
    if int(lens.sum()) != total_tokens:
        raise ValueError(f"total_tokens: expected sum(seq_lens) = {int(lens.sum())}, got "
                         f"{total_tokens}")


def check_attention(key_cache, block_table, seq_lens, q_len: int) -> None:
    """As check_gather for the cache reads, and non-empty sequences hold their q_len new tokens."""
    if seq_lens.numel() == 0:
        return
    lens = _check_lengths_and_blocks(key_cache, block_table, seq_lens)
    short = (lens > 0) & (lens < q_len)
    if bool(short.any()):
        raise ValueError(f"seq_lens: a non-empty sequence must hold its {q_len} new token(s) "
                         f"(q_len); got {seq_lens.tolist()}")
