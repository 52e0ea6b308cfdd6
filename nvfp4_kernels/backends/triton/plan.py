"""Shape-aware GEMM plan: a fixed configuration per M bucket, chosen without autotuning.

The table is for the H100 (132 SMs, 228 KB shared memory per SM, ~3 TB/s). It was chosen by
reasoning, not measured yet: benchmarks/bench_gemm.py --sweep times every candidate in
CANDIDATES on the device so the table can be replaced by measured winners. The reasoning per
bucket is in docs/triton.md; the short version is in the comments below.

Pure Python: importing this module imports neither Triton nor queries a GPU.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    block_m: int      # rows of A (tokens) per program
    block_n: int      # output columns (weight rows) per program
    block_k: int      # reduction step; a multiple of 16 (one scale per 16)
    num_warps: int
    num_stages: int
    group_m: int = 1  # programs along M sharing a weight column strip (L2 reuse, prefill)
    swap_ab: bool = True  # compute D^T = B_hat @ A^T (weights are the MMA's "A" side)
    split_k: int = 0  # 0: choose from the grid size (see split_k_for); else fixed

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# (largest M of the bucket, config). Why (details in docs/triton.md):
# - M <= 16 (decode): bound by reading 4.5-bit weights. Many programs over N, a long K step
#   (256 elements = 128 packed bytes per weight row, 16-byte loads) and split-K to fill all SMs;
#   swap_ab puts the decoded weights on the MMA's M side (64/128 rows) and the few tokens on its
#   N side (8..16), so no MMA lane is wasted on padding tokens to 64.
# - M <= 64: still mostly weight-bound; the token tile grows to 64 and the K step shrinks to
#   keep the decoded fp16 tile (block_n x block_k) near 64 registers per thread.
# - M <= 256: the decode is amortised over 128 tokens; 128x128 tiles, 4 stages (~21 KB/stage).
# - M > 256 (prefill): compute-bound; 128x128x64 tiles, 8 warps, 3 stages, grouped ordering so
#   consecutive programs reuse the same weight strip from L2.
H100_TABLE: tuple[tuple[int, GemmConfig], ...] = (
    (16, GemmConfig(block_m=16, block_n=64, block_k=256, num_warps=4, num_stages=4)),
    (64, GemmConfig(block_m=64, block_n=128, block_k=128, num_warps=4, num_stages=4)),
    (256, GemmConfig(block_m=128, block_n=128, block_k=64, num_warps=8, num_stages=4)),
    (1 << 62, GemmConfig(block_m=128, block_n=128, block_k=64, num_warps=8, num_stages=3,
                         group_m=8)),
)

# The interpreter is slow per program and per element: small tiles keep the CPU tests fast
# while still covering several programs, masked edges and split-K.
INTERPRETER_TABLE: tuple[tuple[int, GemmConfig], ...] = (
    (1 << 62, GemmConfig(block_m=16, block_n=32, block_k=64, num_warps=4, num_stages=1)),
)

# Candidates the benchmark sweeps on the device (per M bucket, plus the table's own entry).
CANDIDATES: tuple[GemmConfig, ...] = (
    GemmConfig(16, 64, 256, 4, 4), GemmConfig(16, 128, 128, 4, 4), GemmConfig(16, 32, 512, 4, 3),
    GemmConfig(16, 128, 256, 8, 3), GemmConfig(16, 64, 256, 4, 4, swap_ab=False),
    GemmConfig(64, 128, 128, 4, 4), GemmConfig(64, 64, 128, 4, 4),
    GemmConfig(128, 128, 64, 8, 4), GemmConfig(128, 256, 64, 8, 3),
    GemmConfig(128, 128, 64, 8, 3, group_m=8), GemmConfig(128, 128, 128, 8, 3, group_m=8),
    GemmConfig(128, 256, 64, 8, 3, group_m=8), GemmConfig(256, 128, 64, 8, 3, group_m=8),
)


# Prefill route (backends/triton/prefill.py: dequantize the weight in chunks, then cuBLAS): the
# smallest M that takes it, per GPU major arch (SM80-SM90, no FP4 tensor cores); archs without an
# entry never take it automatically. Below it the fused kernel above runs.
# Measured on the H100 (benchmarks/bench_prefill.py, its `summary` rows; table in
# docs/performance.md): from M = 256 the route beats the fused kernel on every Gemma-4-31B layer,
# W4A16 and W4A4 (gate_up M = 256: 0.49 vs 0.68 ms); at M = 128 the fused kernel wins on gate_up
# and qkv (0.34 vs 0.46 ms on gate_up) and loses narrowly on o and down. SM80 has no measurement
# of its own and keeps the H100's bound.
PREFILL_MIN_M: dict[int, int] = {8: 256, 9: 129}


def config_for(m: int, interpreter: bool = False) -> GemmConfig:
    table = INTERPRETER_TABLE if interpreter else H100_TABLE
    for bound, cfg in table:
        if m <= bound:
            return cfg
    return table[-1][1]


def split_k_for(cfg: GemmConfig, m: int, n: int, k: int, sm_count: int) -> int:
    """How many programs share one output tile's K range.

    Split only when the (m, n) tiles leave SMs idle: aim for about two programs per SM, keep
    at least four K steps per split (each split pays a prologue and a partial-sum write), and
    use a power of two dividing the number of K steps so every split gets the same work.
    """
    if cfg.split_k:
        return cfg.split_k
    tiles = -(-m // cfg.block_m) * -(-n // cfg.block_n)
    steps = -(-k // cfg.block_k)
    split = 1
    while (tiles * split * 2 <= 2 * sm_count and steps % (split * 2) == 0
           and steps // (split * 2) >= 4):
        split *= 2
    return split


# ---- decode GEMV (gemv.py): M <= GEMV_MAX_M --------------------------------------------------

# Largest M for which the triton backend uses the FMA GEMV (gemv.py) instead of the tensor-core
# kernel. The GEMV decodes each weight once per group of up to 4 tokens and does one float32 FMA
# per weight and token: from the SASS (sm_90) its main loop issues ~5.7 instructions per weight
# at M = 1 and ~10.7 at M = 4 (4 tokens per program), so past M = 4 (two token groups) it
# would issue more than the tensor-core kernel's decode. An estimate from instruction counts,
# not a timing: benchmarks/bench_gemm.py reports both kernels at every M <= 16 to place it.
GEMV_MAX_M = 4
GEMV_MAX_BLOCK_M = 4  # tokens per program the kernel is written for (1, 2 or 4)


@dataclasses.dataclass(frozen=True)
class GemvConfig:
    block_m: int           # tokens per program, 0: the smallest of 1, 2, 4 covering M
    block_k: int           # K values per step, at most (the launcher takes the largest power
                           # of two dividing K up to this, so steps need no masks)
    words_per_thread: int  # 8-value weight words each thread decodes per step; sets the rows
                           # per program: block_n = words_per_thread * threads / step words
    num_warps: int
    programs_per_sm: int = 4  # split K until about this many programs per SM
    split_k: int = 0       # 0: choose (gemv_split_k_for); else fixed (must divide the K steps)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# 8 words (64 weights, 32 bytes) per thread per step, 4 warps, steps of up to 1024 K values
# (rows per program: 8 at K = 8192 / 21504, 32 at K = 5376). sm_90 SASS at M = 1: 91 registers
# (so 5 programs of 128 threads fit an SM), no local memory. Not yet timed on the H100.
GEMV_H100 = GemvConfig(block_m=0, block_k=1024, words_per_thread=8, num_warps=4)
# Interpreter: small steps so that the K = 32..1056 test shapes take several steps and splits.
GEMV_INTERPRETER = GemvConfig(block_m=0, block_k=64, words_per_thread=1, num_warps=4,
                              programs_per_sm=2)

GEMV_CANDIDATES: tuple[GemvConfig, ...] = (
    GEMV_H100,
    GemvConfig(0, 1024, 4, 4), GemvConfig(0, 1024, 16, 4), GemvConfig(0, 512, 8, 4),
    GemvConfig(0, 1024, 8, 8), GemvConfig(0, 1024, 8, 2), GemvConfig(0, 1024, 8, 4, 8),
    GemvConfig(0, 1024, 8, 4, 2), GemvConfig(1, 1024, 8, 4),
)

MAX_SPLIT = 16


def gemv_config_for(interpreter: bool = False) -> GemvConfig:
    return GEMV_INTERPRETER if interpreter else GEMV_H100


def gemv_block_m(cfg: GemvConfig, m: int) -> int:
    if cfg.block_m:
        return cfg.block_m
    bm = 1
    while bm < min(m, GEMV_MAX_BLOCK_M):
        bm *= 2
    return bm


def gemv_split_k_for(cfg: GemvConfig, tiles: int, steps: int, sm_count: int) -> int:
    """How many programs share one row block's K range (a divisor of the K steps).

    The smallest split that brings the grid to cfg.programs_per_sm programs per SM while every
    split keeps at least two K steps; if none does, the largest such split up to MAX_SPLIT (the
    reduction kernel unrolls over the splits and each split value is one more compile).
    """
    if cfg.split_k:
        if steps % cfg.split_k:
            raise ValueError(f"GemvConfig.split_k={cfg.split_k} does not divide the {steps} "
                             "K steps of this shape")
        return cfg.split_k
    splits = [d for d in range(1, min(steps, MAX_SPLIT) + 1)
              if steps % d == 0 and (d == 1 or steps // d >= 2)]
    for d in splits:
        if tiles * d >= cfg.programs_per_sm * sm_count:
            return d
    return splits[-1]
