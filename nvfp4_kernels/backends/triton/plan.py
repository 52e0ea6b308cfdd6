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
# 256 is an estimate from issue 9's H100 numbers, not a measured crossover yet: at M = 128 on
# gate_up the fused kernel took 0.335 ms while cuBLAS bf16 alone took 0.18 ms plus ~0.2 ms to
# dequantize 231 M weights at copy bandwidth; from M = 256 up cuBLAS's lead over the fused kernel
# (0.29x at M = 1024) exceeds the dequantize cost. benchmarks/bench_prefill.py measures both
# routes per M; replace these with its crossover.
PREFILL_MIN_M: dict[int, int] = {8: 256, 9: 256}


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
