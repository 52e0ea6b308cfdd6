// Decode-size GEMM (M <= 16 tokens) with NVFP4 weights, for GPUs without FP4 tensor cores
// (SM80-SM90). Torch-free: raw pointers and int shapes.
//
//   D[m, n] = alpha[n] * sum_k A[m, k] * B_hat[n, k] (+ bias[n]),  fp32 accumulation
//
// At these sizes the GEMM is bound by reading 4.5-bit weights (an H100 must decode ~5e12
// weights/s to keep up with HBM), so the kernel is built around that:
//
// * Tokens on the narrow side ("swap AB"): mma.sync m16n8k16 with 16 weight rows as the MMA's
//   M side and 8 tokens as its N side, so M = 1 wastes no weight decode.
// * K permuted per thread instead of repacked weights: a sum over k does not care which k sits
//   in which MMA slot as long as A and B agree. Lane (g = lane/4, t = lane%4) loads 16
//   contiguous bytes (32 values, two scale blocks) of weight rows g and g+8 per 128-wide K chunk
//   with one 16-byte load each, straight from the checkpoint layout [N, K/2]; the activations
//   are permuted to match with one byte-permute per register (cheap: one token row per lane).
// * Word-level decode: from a 32-bit word of 8 nibbles, nibbles (p, p+4) become one fp16x2 or
//   bf16x2 pair with a select, a shift and a mask (nvfp4/e2m1_words.cuh: sign bit kept,
//   exponent/mantissa bits moved under the target's exponent), read as lut * 2^-14 (fp16) or lut * 2^-126 (bf16). One packed
//   multiply by the block scale (pre-scaled so that the product is lut * s * 2^-14 resp. 2^-8,
//   exact: at most 6 significant bits, in range) gives the MMA operand; the power of two is
//   undone once per output in the epilogue.
// * KW warps of a CTA split the K range of the same 16*WT weight rows and reduce through shared
//   memory in a fixed order (deterministic, no atomics, no workspace, CUDA-graph safe).
// * Bytes in flight: each warp keeps STAGES - 1 chunks (~1 KB of weights each per 16-row tile)
//   in flight, either in a per-warp shared-memory ring filled by cp.async (Shape::ASYNC: the ring
//   costs no registers, so more warps fit on an SM) or in a register ring of plain loads (for
//   scale views that are not 4-byte aligned). Activations (re-read by every CTA) come from L1.
// * WT 16-row tiles per warp reuse each activation register WT times: at M = 16 the activations
//   a CTA reads from L2 otherwise outweigh its weights four to one.
//
// Issue pipes (Shape::WORD_DECODE, Shape::LEAN: `variant` 4 of csrc/gemm_decode.cu). Nsight
// Compute on the H100 (M = 1, gate_up, variant 0) found the math-pipe throttle the top stall and
// the integer/logic (ALU) pipe the busiest; on SM90 ALU (LOP3/SHF/PRMT/IADD3/ISETP/SEL) and FMA
// (IMAD*, HMUL2/HFMA2, FMUL) each take one warp instruction per two cycles per scheduler. K-loop
// SASS per warp and 128-wide chunk, by pipe (counted offline, sm_90a, CUDA 13.0, by
// tests/csrc/sass_pipes.py; not timed), variant 0 -> variant 4:
//   activations     token tiles   ALU         FMA         all
//   bf16            1             123 -> 98   106 -> 97   264 -> 226
//   fp16            1             123 -> 96    98 -> 91   254 -> 216
//   packed (W4A4)   1             140 -> 112  130 -> 126  305 -> 267
//   bf16            2             236 -> 198  206 -> 202  517 -> 473
//   fp16            2             238 -> 188  190 -> 184  500 -> 440
//   packed (W4A4)   2             269 -> 198  251 -> 223  589 -> 486
// Of that, the word decode (word_pairs: 11 instead of 13 integer instructions per 8 weights, 7
// instead of 9 on ALU) takes 16 ALU per chunk and tile off, folding fp16 scale broadcasts into
// the HMUL2 operand saves 4 permutes, and LEAN another 12-23 bookkeeping instructions (moves,
// zeroing, branch, ring offsets). Tried and
// dropped (same tools): unrolling the ring loop by its stages or by 2, or a predicate-free copy
// of it for the in-range chunks, all spill at the 64 registers that 4 CTAs per SM allow; 3 CTAs
// per SM (80 registers) gave no shorter loop.
//
// What stalls the warps at full clock (Nsight Compute per-instruction samples, H100, M = 1,
// gate_up, 7 warps, 1.81 GHz): the activations loaded one chunk ahead (ACT_AHEAD) 16 % of all
// samples (ptxas copies the ahead registers at the end of the iteration that loads them, and
// about a third of them miss L1), the wait for the ring's oldest chunk 9 %, the final barrier
// 7 %. Tried and dropped (H100, same day): staging M = 1's activations in the ring slot with
// the weights (cp.async, 256 bytes per chunk, read back with 4 LDS.128 per lane): correct
// (memcheck and racecheck clean) but gate_up took 0.087 ms instead of 0.055, the shared-memory
// pipe (MIO throttle, short scoreboard on the LDS) becoming the top stall. Also dropped: the
// activations prefetched into L1 two chunks ahead (prefetch.global.L1) and loaded in their own
// iteration instead of loaded one chunk ahead into registers: no spills and 3 fewer loop
// instructions, but gate_up M = 1 0.0562 vs 0.0553 ms, down 0.0305 vs 0.0289, o 0.0146 vs
// 0.0139, gate_up M = 16 0.0884 vs 0.0746 (same call, two runs each). Two activation register
// sets used by alternate chunks (the loop body twice, no copy) spill at 62-72 registers.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "nvfp4/common.cuh"
#include "nvfp4/e2m1_words.cuh"

namespace nvfp4::decode_gemm {

// What the A operand (activations) holds.
enum class Act : int { kHalf = 0, kBFloat16 = 1, kNvfp4 = 2 };

enum BiasKind : int { kNoBias = 0, kBiasHalf = 1, kBiasBFloat16 = 2, kBiasFloat = 3 };

struct Params {
  const void* a;             // [M, K] fp16/bf16, or [M, K/2] packed E2M1 (Act::kNvfp4)
  const uint8_t* a_scale;    // swizzled e4m3 scales of A (Act::kNvfp4 only)
  const uint8_t* b;          // [N, K/2] packed E2M1 weights
  const uint8_t* b_scale;    // e4m3 scales of B, swizzled (128x4) or linear [N, K/16]
  const float* alpha;        // 1 value, or N when alpha_per_row
  const void* bias;          // [N] or nullptr
  void* out;                 // [M, N] fp16 or bf16
  int m, n, k;               // k % 32 == 0
  int b_scale_swizzled;
  int alpha_per_row;
  int bias_kind;
  int out_bf16;
};

// A launch shape: KW warps per CTA split the K range of the CTA's 16 * WT rows; STAGES chunks
// per warp are in flight; MIN_BLOCKS CTAs per SM bound the registers. ASYNC streams the weights
// through a per-warp shared-memory ring filled by cp.async (so STAGES costs no registers and
// more bytes can be in flight); otherwise the ring is in registers.
// ACT_AHEAD (ASYNC only) loads the activations of a warp's next chunk while it decodes this
// one, so their L2 latency is not exposed once per chunk (costs 16 registers per token tile).
// WORD_DECODE decodes the four pairs of a weight word together (word_pairs below: copies shared
// by two pairs, fewer integer/logic-pipe instructions per word) instead of pair by pair.
// LEAN (ASYNC only) trims the ring loop's bookkeeping: no branch around the refill (a chunk past
// the end has every lane past K, so its copies already read nothing and only zero-fill a slot
// that is never read), one ring offset instead of two (the slot refilled is the one read the
// iteration before), and, with one token tile, activation loads predicated on K only (tokens
// past M read token M-1's row, which act_row clamps to: their outputs are never stored and MMA
// columns do not mix).
template <int KW_, int STAGES_, int MIN_BLOCKS_, int WT_ = 1, bool ASYNC_ = false,
          bool ACT_AHEAD_ = false, bool WORD_DECODE_ = false, bool LEAN_ = false>
struct Shape {
  static constexpr int KW = KW_, STAGES = STAGES_, MIN_BLOCKS = MIN_BLOCKS_, WT = WT_;
  static constexpr bool ASYNC = ASYNC_, ACT_AHEAD = ACT_AHEAD_, WORD_DECODE = WORD_DECODE_;
  static constexpr bool LEAN = LEAN_;
  static_assert(!LEAN || ASYNC, "Shape::LEAN trims the shared-memory ring's loop");
  static constexpr int kThreads = KW * 32;
  // Bytes of one warp's ring slot (ASYNC): WT x 2 rows x 32 lanes x (16 weight + 4 scale bytes).
  static constexpr int kSlotBytes = WT * 2 * 32 * (16 + 4);
  static constexpr int kRingBytes = ASYNC ? KW * STAGES * kSlotBytes : 0;
};
constexpr int kChunk = 128;    // K values per warp step: 32 per lane of a quad

// Token tiles of 8 the kernel is built for: M <= 16. Past that the activations of the ring no
// longer fit in registers, and every CTA re-reading all of them from L2 costs more than its
// weights: nvfp4/mid_gemm.cuh (16 < M <= 64) shares them between the warps of a CTA instead.
constexpr int kMaxTokenTiles = 2;

// ---- element decode: nvfp4/e2m1_words.cuh (shared with the dequantize kernel) -----------

__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1, bool bf16) {
  if (bf16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// ---- loads ----------------------------------------------------------------------------------

// Weights are read exactly once: keep them out of L1 so the activations stay there.
__device__ __forceinline__ uint4 load_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

__device__ __forceinline__ uint4 load_cached(const void* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

__device__ __forceinline__ uint32_t load_u16(const uint8_t* p) {
  return static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(p)));
}

// Scale byte offsets split into a row part (computed once per thread) and a K part (per chunk),
// so the inner loop does no 64-bit index arithmetic. `cb` is an even block index.
__device__ __forceinline__ int64_t scale_row_offset(int64_t r, int64_t k, bool swizzled) {
  if (!swizzled) return r * (k / kBlock);
  const int64_t cols_p = ceil_to(k / kBlock, 4);
  return (r >> 7) * (cols_p >> 2) * 512 + (r & 31) * 16 + ((r >> 5) & 3) * 4;
}
__device__ __forceinline__ int scale_col_offset(int cb, bool swizzled) {
  return swizzled ? (cb >> 2) * 512 + (cb & 3) : cb;
}

// Where one lane reads weights: rows g and g+8 of each row tile (clamped to N-1: rows past N are
// computed and never stored, so the loads need no predicate).
template <int WT>
struct WeightRows {
  const uint8_t* q[WT][2];
  const uint8_t* s[WT][2];
  // ASYNC ring: the 4-byte word copied for the scale pair holds it at this bit offset (0 or 16;
  // the same for every chunk, as chunks move the offset by multiples of 4 bytes).
  int s_shift[WT][2];
};

template <int WT>
__device__ __forceinline__ void weight_rows(WeightRows<WT>& w, const Params& p, int row0, int lane) {
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t r = min(row0 + 16 * i + (lane >> 2) + 8 * h, p.n - 1);
      w.q[i][h] = p.b + r * (p.k / 2);
      w.s[i][h] = p.b_scale + scale_row_offset(r, p.k, p.b_scale_swizzled);
      const uintptr_t first = reinterpret_cast<uintptr_t>(w.s[i][h]) +
                              scale_col_offset(2 * (lane & 3), p.b_scale_swizzled);
      w.s_shift[i][h] = static_cast<int>(first & 2) * 8;
    }
}

// One warp's weight registers for one K chunk: WT row tiles x rows (g, g+8).
template <int WT>
struct WeightChunk {
  uint4 q[WT][2];
  uint32_t s[WT][2];  // two scale bytes (blocks 2t, 2t+1) in the low 16 bits
};

// The MMA operand scales of every row tile of a chunk: scale_pair of each tile's two blocks.
template <int WT>
__device__ __forceinline__ void chunk_scales(const WeightChunk<WT>& w, bool bf16,
                                             uint32_t (&sc)[WT][2][2]) {
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) scale_pair(w.s[i][h], bf16, sc[i][h][0], sc[i][h][1]);
}

template <int WT>
__device__ __forceinline__ void load_weights(WeightChunk<WT>& w, const WeightRows<WT>& rows,
                                             const Params& p, int chunk, int lane) {
  // The last chunk may end before 128: lanes past K re-read the last 32 values (their
  // activations are zero, so they add nothing) instead of branching.
  const int kq = min(chunk * kChunk + 32 * (lane & 3), p.k - 32);
  const int so = scale_col_offset(kq / kBlock, p.b_scale_swizzled);
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      w.q[i][h] = load_stream(rows.q[i][h] + kq / 2);
      w.s[i][h] = load_u16(rows.s[i][h] + so);
    }
}

// ---- the shared-memory ring (Shape::ASYNC) ---------------------------------------------------
// Each warp owns STAGES slots; a lane copies its own 16 weight bytes per row and the 4-byte word
// holding its two scale bytes, and reads back only what it copied itself: no barrier is needed,
// only cp.async.wait_group. Lanes past K copy nothing and get zeros (weight 0, scale 0).

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Per-lane read positions of the ASYNC loop, advanced by a fixed stride per chunk of the warp
// (KW chunks apart), so the loop does no index arithmetic: without them the compiler spent
// ~150 of the ~340 instructions of a chunk on addresses (sm_90a SASS).
template <int WT>
struct WeightCursor {
  const uint8_t* q[WT][2];  // the lane's 16 weight bytes of rows g (+8)
  const uint8_t* s[WT][2];  // the aligned 4-byte word holding its two scale bytes
  int kq;                   // K index of the lane's first value
  int64_t s_step;           // scale bytes per KW chunks: 1024 * KW swizzled, 8 * KW linear
};

template <int KW, int WT>
__device__ __forceinline__ void weight_cursor(WeightCursor<WT>& c, const WeightRows<WT>& rows,
                                              const Params& p, int warp, int lane) {
  c.kq = warp * kChunk + 32 * (lane & 3);
  const int so = scale_col_offset(c.kq / kBlock, p.b_scale_swizzled);
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      c.q[i][h] = rows.q[i][h] + c.kq / 2;
      c.s[i][h] = reinterpret_cast<const uint8_t*>(
          reinterpret_cast<uintptr_t>(rows.s[i][h] + so) & ~uintptr_t(3));
    }
  c.s_step = static_cast<int64_t>(KW) * (p.b_scale_swizzled ? 1024 : kChunk / kBlock);
}

// Copy the cursor's chunk into a ring slot (weights [WT][2][32 lanes] x 16 bytes, then scale
// words [WT][2][32 lanes] x 4; `lane_w` / `lane_s` are the lane's first entries) and advance.
template <int KW, int WT>
__device__ __forceinline__ void issue_weights(WeightCursor<WT>& c, uint32_t lane_w,
                                              uint32_t lane_s, const Params& p) {
  const bool ok = c.kq < p.k;
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      cp_async16(lane_w + 16 * 32 * (i * 2 + h), c.q[i][h], ok);
      cp_async4(lane_s + 4 * 32 * (i * 2 + h), c.s[i][h], ok);
      c.q[i][h] += KW * kChunk / 2;
      c.s[i][h] += c.s_step;
    }
  c.kq += KW * kChunk;
}

template <int WT>
__device__ __forceinline__ void read_slot(WeightChunk<WT>& w, const uint8_t* lane_w,
                                          const uint8_t* lane_s, const WeightRows<WT>& rows) {
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      w.q[i][h] = *reinterpret_cast<const uint4*>(lane_w + 16 * 32 * (i * 2 + h));
      w.s[i][h] = *reinterpret_cast<const uint32_t*>(lane_s + 4 * 32 * (i * 2 + h)) >>
                  rows.s_shift[i][h];
    }
}

// What one lane holds of one token's K chunk (its 32 values): the raw loaded words. Loaded a
// few chunks ahead together with the weights (see Stage), so no load sits right before its use.
template <Act A>
struct ActChunk {
  uint4 v[4];  // 16-bit activations: k pairs (0,1) (2,3) (4,5) (6,7) of each 8-value word
};
template <>
struct ActChunk<Act::kNvfp4> {
  uint4 q;      // 32 packed values
  uint32_t sc;  // the two block scale bytes
};

// Where one lane reads the activations of token `tok` (clamped; `live` says whether it exists).
struct ActRow {
  const uint8_t* a;      // row start (bytes)
  const uint8_t* scale;  // swizzled scale row part (Act::kNvfp4)
  bool live;
};

template <Act A>
__device__ __forceinline__ ActRow act_row(const Params& p, int tok) {
  const int64_t r = min(tok, p.m - 1);
  const int64_t row_bytes = A == Act::kNvfp4 ? p.k / 2 : static_cast<int64_t>(p.k) * 2;
  return {static_cast<const uint8_t*>(p.a) + r * row_bytes,
          A == Act::kNvfp4 ? p.a_scale + scale_row_offset(r, p.k, true) : nullptr, tok < p.m};
}

// Lanes past M or past K load zeros: they then add nothing to the sums.
template <Act A>
__device__ __forceinline__ void load_activations(ActChunk<A>& x, const ActRow& row,
                                                 const Params& p, int chunk, int lane) {
  const int kk = chunk * kChunk + 32 * (lane & 3);
  const bool ok = row.live && kk < p.k;
  if constexpr (A == Act::kNvfp4) {
    x.q = ok ? load_cached(row.a + kk / 2) : make_uint4(0, 0, 0, 0);
    x.sc = ok ? load_u16(row.scale + scale_col_offset(kk / kBlock, true)) : 0u;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      x.v[j] = ok ? load_cached(row.a + 2 * (kk + 8 * j)) : make_uint4(0, 0, 0, 0);
  }
}

// The activations' counterpart of WeightCursor (ASYNC loop).
template <Act A, int MT>
struct ActCursor {
  const uint8_t* a[MT];
  const uint8_t* scale[MT];  // Act::kNvfp4
  bool live[MT];
  int kq;
};

template <Act A, int MT>
__device__ __forceinline__ void act_cursor(ActCursor<A, MT>& c, const ActRow (&rows)[MT],
                                           int warp, int lane) {
  c.kq = warp * kChunk + 32 * (lane & 3);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    c.a[mt] = rows[mt].a + (A == Act::kNvfp4 ? c.kq / 2 : c.kq * 2);
    c.scale[mt] = A == Act::kNvfp4 ? rows[mt].scale + scale_col_offset(c.kq / kBlock, true)
                                   : nullptr;
    c.live[mt] = rows[mt].live;
  }
}

template <Act A, int MT, int KW, bool kAnyToken = false>
__device__ __forceinline__ void load_activations(ActChunk<A> (&x)[MT], ActCursor<A, MT>& c,
                                                 const Params& p) {
  const bool in_k = c.kq < p.k;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    // kAnyToken (Shape::LEAN): lanes of tokens past M load token M-1's values too.
    const bool ok = (kAnyToken || c.live[mt]) && in_k;
    if constexpr (A == Act::kNvfp4) {
      x[mt].q = ok ? load_cached(c.a[mt]) : make_uint4(0, 0, 0, 0);
      x[mt].sc = ok ? load_u16(c.scale[mt]) : 0u;
      c.a[mt] += KW * kChunk / 2;
      c.scale[mt] += KW * 1024;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        x[mt].v[j] = ok ? load_cached(c.a[mt] + 16 * j) : make_uint4(0, 0, 0, 0);
      c.a[mt] += KW * kChunk * 2;
    }
  }
  c.kq += KW * kChunk;
}

// The B operands for MMA steps 2J and 2J+1 of one K chunk, in the order of the weight decode:
// b[0][*] (step 2J) holds k = 8J + (0, 4) and 8J + (1, 5); b[1][*] (step 2J+1) holds
// k = 8J + (2, 6) and 8J + (3, 7), k counted from the lane's first value.
template <Act A, int J>
__device__ __forceinline__ void activation_word(uint32_t (&b)[2][2], const ActChunk<A>& x,
                                                uint32_t s0, uint32_t s1) {
  if constexpr (A == Act::kNvfp4) {
    // Packed activations decode straight into (p, p+4) pairs: no permute needed.
    const uint32_t q = J == 0 ? x.q.x : J == 1 ? x.q.y : J == 2 ? x.q.z : x.q.w;
    const uint32_t s = J < 2 ? s0 : s1;
    b[0][0] = hmul2_bits(e2m1_pair_half<0>(q), s, false);
    b[0][1] = hmul2_bits(e2m1_pair_half<1>(q), s, false);
    b[1][0] = hmul2_bits(e2m1_pair_half<2>(q), s, false);
    b[1][1] = hmul2_bits(e2m1_pair_half<3>(q), s, false);
  } else {
    const uint4 v = x.v[J];
    b[0][0] = __byte_perm(v.x, v.z, 0x5410);
    b[0][1] = __byte_perm(v.x, v.z, 0x7632);
    b[1][0] = __byte_perm(v.y, v.w, 0x5410);
    b[1][1] = __byte_perm(v.y, v.w, 0x7632);
  }
}

// Decode the A operand (weights) for MMA step S of row tile i.
template <int S, bool BF16, int WT>
__device__ __forceinline__ void weight_operand(uint32_t (&a)[4], const WeightChunk<WT>& w, int i,
                                               const uint32_t (&sc)[WT][2][2]) {
  constexpr int J = S / 2;
  const uint32_t q0 = J == 0 ? w.q[i][0].x : J == 1 ? w.q[i][0].y : J == 2 ? w.q[i][0].z
                                                                          : w.q[i][0].w;
  const uint32_t q1 = J == 0 ? w.q[i][1].x : J == 1 ? w.q[i][1].y : J == 2 ? w.q[i][1].z
                                                                          : w.q[i][1].w;
  const uint32_t s0 = sc[i][0][J / 2], s1 = sc[i][1][J / 2];
  constexpr int P0 = (S % 2) * 2, P1 = P0 + 1;
  if constexpr (BF16) {
    a[0] = hmul2_bits(e2m1_pair_bf16<P0>(q0), s0, true);
    a[1] = hmul2_bits(e2m1_pair_bf16<P0>(q1), s1, true);
    a[2] = hmul2_bits(e2m1_pair_bf16<P1>(q0), s0, true);
    a[3] = hmul2_bits(e2m1_pair_bf16<P1>(q1), s1, true);
  } else {
    a[0] = hmul2_bits(e2m1_pair_half<P0>(q0), s0, false);
    a[1] = hmul2_bits(e2m1_pair_half<P0>(q1), s1, false);
    a[2] = hmul2_bits(e2m1_pair_half<P1>(q0), s0, false);
    a[3] = hmul2_bits(e2m1_pair_half<P1>(q1), s1, false);
  }
}

// Steps 2J and 2J+1 of a chunk: decode each row tile's operand once, use it for every token tile.
template <Act A, int MT, int WT, int J>
__device__ __forceinline__ void mma_word(float (&acc)[WT][MT][4], const WeightChunk<WT>& w,
                                         const uint32_t (&sc)[WT][2][2],
                                         const ActChunk<A> (&x)[MT], const uint32_t (&xs)[MT][2]) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t b[MT][2][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) activation_word<A, J>(b[mt], x[mt], xs[mt][0], xs[mt][1]);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int i = 0; i < WT; ++i) {
      uint32_t a[4];
      if (half == 0)
        weight_operand<2 * J, kBf16>(a, w, i, sc);
      else
        weight_operand<2 * J + 1, kBf16>(a, w, i, sc);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) mma_16816(acc[i][mt], a, b[mt][half][0], b[mt][half][1], kBf16);
    }
  }
}

// ---- word decode (Shape::WORD_DECODE) --------------------------------------------------------
// The four pairs (P, P+4), P = 0..3, of one word of 8 nibbles, bit for bit what
// e2m1_pair_half<P> / e2m1_pair_bf16<P> give (sign at 15/31, e1 e0 m at kEm..kEm+2 (+16)). Pair by
// pair, e2m1_pair spends a select (sign from a copy of q shifted by the sign's extra distance,
// e1 e0 m from q), a shift and a mask, plus one shared shifted copy per word: 13 instructions per
// word, 9 of them on the integer/logic (ALU) pipe. Here one select serves two pairs: the two
// pairs whose select positions do not overlap each other's bits take one select from the same
// copy, so a word costs 2 copies + 2 selects + 4 masks + 3 shifts = 11 instructions, 7 of them
// ALU (the select and mask LOP3s, the right shift) and 4 on the FMA pipe (left shifts become
// IMAD.SHL). Each pair is then r = (X & (keep >> k)) << k for its select X and shift k.
//   fp16 (e1 e0 m to bits 9..11): X02 = select(q << 3 at bits 6, 14 (+16), q) gives pairs 0 and 2
//     (shift 9, 1); X13 = select(q at bits 7, 15 (+16), q >> 3) gives pairs 1 and 3 (shift 8, 0).
//   bf16 (e1 e0 m to bits 6..8): X01 = select(q << 6 at bits 9, 13 (+16), q) gives pairs 0 and 1
//     (shift 6, 2); X23 = select(q at bits 11, 15 (+16), q >> 6) gives pairs 2 and 3 (shift 4, 0).

// (a & where_a) | (b & ~where_a): one LOP3 on the device. Written as PTX so that the compiler cannot distribute the pairs' masks
// into it (it did: from plain C++ it rebuilt e2m1_pair's select + mask per pair, 13 per word).
__host__ __device__ __forceinline__ uint32_t bit_select(uint32_t where_a, uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(d) : "r"(a), "r"(b), "r"(where_a));
  return d;
#else
  return (a & where_a) | (b & ~where_a);
#endif
}

template <bool BF16>
__host__ __device__ __forceinline__ void word_pairs(uint32_t q, uint32_t (&r)[4]) {
  if constexpr (BF16) {
    constexpr uint32_t kKeep = 0x81C081C0u;
    const uint32_t x01 = bit_select(0x22002200u, q << 6, q);
    const uint32_t x23 = bit_select(0x88008800u, q, q >> 6);
    r[0] = (x01 & (kKeep >> 6)) << 6;
    r[1] = (x01 & (kKeep >> 2)) << 2;
    r[2] = (x23 & (kKeep >> 4)) << 4;
    r[3] = x23 & kKeep;
  } else {
    constexpr uint32_t kKeep = 0x8E008E00u;
    const uint32_t x02 = bit_select(0x40404040u, q << 3, q);
    const uint32_t x13 = bit_select(0x80808080u, q, q >> 3);
    r[0] = (x02 & (kKeep >> 9)) << 9;
    r[1] = (x13 & (kKeep >> 8)) << 8;
    r[2] = (x02 & (kKeep >> 1)) << 1;
    r[3] = x13 & kKeep;
  }
}

template <int J>
__device__ __forceinline__ uint32_t word_of(const uint4& v) {
  return J == 0 ? v.x : J == 1 ? v.y : J == 2 ? v.z : v.w;
}

// fp16x2 a * (s's low half in both halves) (HI: its high half): ptxas takes the broadcast as
// HMUL2's operand selector (.H0_H0 / .H1_H1), which saves the byte permute per block scale that
// scale_pair spends.
template <bool HI>
__device__ __forceinline__ uint32_t hmul2_half_broadcast(uint32_t a, uint32_t s) {
  uint32_t d;
  if constexpr (HI)
    asm("{.reg .b16 l, h; .reg .b32 b; mov.b32 {l, h}, %2; mov.b32 b, {h, h};\n"
        " mul.rn.f16x2 %0, %1, b;}" : "=r"(d) : "r"(a), "r"(s));
  else
    asm("{.reg .b16 l, h; .reg .b32 b; mov.b32 {l, h}, %2; mov.b32 b, {l, l};\n"
        " mul.rn.f16x2 %0, %1, b;}" : "=r"(d) : "r"(a), "r"(s));
  return d;
}

// scale_pair's fp16 scales without the broadcast: both in one register (low half = first block).
__device__ __forceinline__ uint32_t scale_pair_half_packed(uint32_t two_bytes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
      static_cast<__nv_fp8x2_storage_t>(two_bytes), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | static_cast<uint32_t>(h.y) << 16;
}

// A row's block scales for the word decode: fp16 keeps the pair packed in [0] (the broadcast
// then costs nothing, see hmul2_half_broadcast); bf16 broadcasts each into [0] and [1] as
// scale_pair does (sm_90a: with the packed pair, the bf16 loop allocated worse: more moves, and
// spills at two token tiles).
template <bool BF16>
__device__ __forceinline__ void word_scales(uint32_t two_bytes, uint32_t (&s)[2]) {
  if constexpr (BF16) scale_pair(two_bytes, true, s[0], s[1]);
  else s[0] = scale_pair_half_packed(two_bytes);
}
template <bool BF16, bool kHi>
__device__ __forceinline__ uint32_t word_scale_mul(uint32_t a, const uint32_t (&s)[2]) {
  if constexpr (BF16) return hmul2_bits(a, s[kHi ? 1 : 0], true);
  else return hmul2_half_broadcast<kHi>(a, s[0]);
}

// The A operands of MMA steps 2J (a[0]) and 2J+1 (a[1]) of row tile i, as weight_operand<2J>
// and weight_operand<2J+1> give them, from one word_pairs per row (scales from word_scales).
template <int J, bool BF16, int WT>
__device__ __forceinline__ void weight_word_operands(uint32_t (&a)[2][4], const WeightChunk<WT>& w,
                                                    int i, const uint32_t (&sc)[WT][2][2]) {
  uint32_t r0[4], r1[4];
  word_pairs<BF16>(word_of<J>(w.q[i][0]), r0);
  word_pairs<BF16>(word_of<J>(w.q[i][1]), r1);
  constexpr bool kHi = J >= 2;  // words 0, 1: the first block of the lane's 32 values
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    a[half][0] = word_scale_mul<BF16, kHi>(r0[2 * half], sc[i][0]);
    a[half][1] = word_scale_mul<BF16, kHi>(r1[2 * half], sc[i][1]);
    a[half][2] = word_scale_mul<BF16, kHi>(r0[2 * half + 1], sc[i][0]);
    a[half][3] = word_scale_mul<BF16, kHi>(r1[2 * half + 1], sc[i][1]);
  }
}

// activation_word with packed activations decoded by word_pairs (16-bit ones: the same permute);
// xs: the token's two block scales packed.
template <Act A, int J>
__device__ __forceinline__ void activation_word_pairs(uint32_t (&b)[2][2], const ActChunk<A>& x,
                                                      uint32_t xs) {
  if constexpr (A == Act::kNvfp4) {
    uint32_t r[4];
    word_pairs<false>(word_of<J>(x.q), r);
    constexpr bool kHi = J >= 2;
    b[0][0] = hmul2_half_broadcast<kHi>(r[0], xs);
    b[0][1] = hmul2_half_broadcast<kHi>(r[1], xs);
    b[1][0] = hmul2_half_broadcast<kHi>(r[2], xs);
    b[1][1] = hmul2_half_broadcast<kHi>(r[3], xs);
  } else {
    activation_word<A, J>(b, x, 0u, 0u);
  }
}

// mma_word with the word decode.
template <Act A, int MT, int WT, int J>
__device__ __forceinline__ void mma_word_pairs(float (&acc)[WT][MT][4], const WeightChunk<WT>& w,
                                               const uint32_t (&sc)[WT][2][2],
                                               const ActChunk<A> (&x)[MT],
                                               const uint32_t (&xs)[MT]) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t b[MT][2][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) activation_word_pairs<A, J>(b[mt], x[mt], xs[mt]);
#pragma unroll
  for (int i = 0; i < WT; ++i) {
    uint32_t a[2][4];
    weight_word_operands<J, kBf16>(a, w, i, sc);
#pragma unroll
    for (int half = 0; half < 2; ++half)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        mma_16816(acc[i][mt], a[half], b[mt][half][0], b[mt][half][1], kBf16);
  }
}

// Everything one warp loads for one K chunk.
template <Act A, int MT, int WT>
struct Stage {
  WeightChunk<WT> w;
  ActChunk<A> x[MT];
};

template <Act A, int MT, int WT>
__device__ __forceinline__ void load_stage(Stage<A, MT, WT>& st, const WeightRows<WT>& rows,
                                           const ActRow (&arow)[MT], const Params& p, int chunk,
                                           int lane) {
  load_weights(st.w, rows, p, chunk, lane);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) load_activations<A>(st.x[mt], arow[mt], p, chunk, lane);
}

template <Act A, int MT, int WT>
__device__ __forceinline__ void compute_stage(float (&acc)[WT][MT][4], const Stage<A, MT, WT>& st) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t sc[WT][2][2];
  chunk_scales(st.w, kBf16, sc);
  uint32_t xs[MT][2] = {};
  if constexpr (A == Act::kNvfp4) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) scale_pair(st.x[mt].sc, false, xs[mt][0], xs[mt][1]);
  }
  mma_word<A, MT, WT, 0>(acc, st.w, sc, st.x, xs);
  mma_word<A, MT, WT, 1>(acc, st.w, sc, st.x, xs);
  mma_word<A, MT, WT, 2>(acc, st.w, sc, st.x, xs);
  mma_word<A, MT, WT, 3>(acc, st.w, sc, st.x, xs);
}

// compute_stage with the word decode (Shape::WORD_DECODE): the same operands, bit for bit.
template <Act A, int MT, int WT>
__device__ __forceinline__ void compute_stage_words(float (&acc)[WT][MT][4],
                                                    const Stage<A, MT, WT>& st) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t sc[WT][2][2];
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) word_scales<kBf16>(st.w.s[i][h], sc[i][h]);
  uint32_t xs[MT] = {};
  if constexpr (A == Act::kNvfp4) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) xs[mt] = scale_pair_half_packed(st.x[mt].sc);
  }
  mma_word_pairs<A, MT, WT, 0>(acc, st.w, sc, st.x, xs);
  mma_word_pairs<A, MT, WT, 1>(acc, st.w, sc, st.x, xs);
  mma_word_pairs<A, MT, WT, 2>(acc, st.w, sc, st.x, xs);
  mma_word_pairs<A, MT, WT, 3>(acc, st.w, sc, st.x, xs);
}

template <Act A, int MT, int WT, bool kWordDecode>
__device__ __forceinline__ void compute_chunk(float (&acc)[WT][MT][4], const Stage<A, MT, WT>& st) {
  if constexpr (kWordDecode) compute_stage_words<A, MT, WT>(acc, st);
  else compute_stage<A, MT, WT>(acc, st);
}

__device__ __forceinline__ float load_bias(const Params& p, int64_t r) {
  switch (p.bias_kind) {
    case kBiasHalf: return __half2float(static_cast<const __half*>(p.bias)[r]);
    case kBiasBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p.bias)[r]);
    case kBiasFloat: return static_cast<const float*>(p.bias)[r];
    default: return 0.0f;
  }
}

// Every accumulator to 0 (fully unrolled: the array stays in registers).
template <int WT, int MT>
__device__ __forceinline__ void zero(float (&acc)[WT][MT][4]) {
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][mt][e] = 0.0f;
}

// Output element o (token-major [M, N]) = v rounded to nearest in the output dtype.
__device__ __forceinline__ void store_output(const Params& p, int64_t o, float v) {
  if (p.out_bf16)
    static_cast<__nv_bfloat16*>(p.out)[o] = __float2bfloat16_rn(v);
  else
    static_cast<__half*>(p.out)[o] = __float2half_rn(v);
}

// The power of two the decoded operands carry (see the header comment).
template <Act A>
__host__ __device__ constexpr float unfold() {
  return A == Act::kHalf ? 16384.0f : A == Act::kBFloat16 ? 256.0f : 268435456.0f;
}

// Grid: (ceil(N / (16 * S::WT)), 1), S::kThreads threads. Dynamic shared memory: the ring
// (S::kRingBytes), then S::KW * S::WT * MT * 4 * 32 floats for the reduction.
template <Act A, int MT, class S>
__global__ void __launch_bounds__(S::kThreads, S::MIN_BLOCKS) decode_gemm_kernel(const Params p) {
  constexpr int kWarps = S::KW, kStages = S::STAGES, kThreads = S::kThreads, WT = S::WT;
  static_assert(MT >= 1 && MT <= kMaxTokenTiles, "decode GEMM: M <= 16");
  extern __shared__ __align__(16) uint8_t smem[];
  float* partial = reinterpret_cast<float*>(smem + S::kRingBytes);  // [kWarps][WT][MT][4][32]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row0 = blockIdx.x * 16 * WT;
  const int chunks = (p.k + kChunk - 1) / kChunk;

  float acc[WT][MT][4];
  zero(acc);

  // Warp `warp` takes chunks warp, warp + kWarps, ...: the CTA's warps read neighbouring
  // chunks of the same rows at the same time.
  WeightRows<WT> rows;
  weight_rows(rows, p, row0, lane);
  ActRow arow[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) arow[mt] = act_row<A>(p, mt * 8 + (lane >> 2));
  if constexpr (S::ASYNC) {
    // kStages - 1 chunks of weights in flight in shared memory while one is decoded; the
    // activations (L1/L2 hits, re-read by every CTA) are loaded in the same iteration.
    constexpr uint32_t kRing = kStages * S::kSlotBytes, kScales = WT * 2 * 32 * 16;
    const uint8_t* ring = smem + warp * kRing;
    const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
    WeightCursor<WT> wc;
    weight_cursor<kWarps>(wc, rows, p, warp, lane);
    ActCursor<A, MT> ac;
    act_cursor(ac, arow, warp, lane);
    uint32_t fill = 0;
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (warp + s * kWarps < chunks)
        issue_weights<kWarps>(wc, ring_s + fill + 16 * lane, ring_s + fill + kScales + 4 * lane, p);
      cp_async_commit();
      fill += S::kSlotBytes;
    }
    uint32_t slot = 0;
    // Shape::LEAN: activation loads predicated on K only, with one token tile (with two, bf16
    // spilled at 128 registers).
    constexpr bool kAnyToken = S::LEAN && MT == 1;
    ActChunk<A> ahead[MT];
    if constexpr (S::ACT_AHEAD) load_activations<A, MT, kWarps, kAnyToken>(ahead, ac, p);
    for (int c = warp; c < chunks; c += kWarps) {
      // Refill the slot read in the previous iteration (its values are already consumed).
      if (S::LEAN || c + (kStages - 1) * kWarps < chunks)
        issue_weights<kWarps>(wc, ring_s + fill + 16 * lane, ring_s + fill + kScales + 4 * lane, p);
      cp_async_commit();
      if constexpr (!S::LEAN) fill = fill + S::kSlotBytes == kRing ? 0 : fill + S::kSlotBytes;
      Stage<A, MT, WT> st;
      if constexpr (S::ACT_AHEAD) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) st.x[mt] = ahead[mt];
        // Past the last chunk: zeros, no load.
        load_activations<A, MT, kWarps, kAnyToken>(ahead, ac, p);
      } else {
        load_activations<A, MT, kWarps, kAnyToken>(st.x, ac, p);
      }
      cp_async_wait<kStages - 1>();
      read_slot(st.w, ring + slot + 16 * lane, ring + slot + kScales + 4 * lane, rows);
      compute_chunk<A, MT, WT, S::WORD_DECODE>(acc, st);
      if constexpr (S::LEAN) fill = slot;
      slot = slot + S::kSlotBytes == kRing ? 0 : slot + S::kSlotBytes;
    }
    cp_async_wait<0>();
  } else {
    // A register ring of kStages chunks per warp: compute one, then refill its slot kStages
    // chunks ahead, so kStages - 1 chunks of loads are in flight while a chunk is decoded.
    Stage<A, MT, WT> ring[kStages];
#pragma unroll
    for (int s = 0; s < kStages; ++s) load_stage(ring[s], rows, arow, p, warp + s * kWarps, lane);
    for (int c0 = warp; c0 < chunks; c0 += kStages * kWarps) {
#pragma unroll
      for (int s = 0; s < kStages; ++s) {
        const int c = c0 + s * kWarps;
        if (c < chunks) {
          compute_chunk<A, MT, WT, S::WORD_DECODE>(acc, ring[s]);
          if (c + kStages * kWarps < chunks)
            load_stage(ring[s], rows, arow, p, c + kStages * kWarps, lane);
        }
      }
    }
  }

  // Fixed-order reduction of the kWarps partial sums (deterministic).
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        partial[(((warp * WT + i) * MT + mt) * 4 + e) * 32 + lane] = acc[i][mt][e];
  __syncthreads();
  // Each thread of the CTA finishes some of the WT*MT*4*32 fragment elements.
  constexpr int kElems = WT * MT * 4 * 32;
  for (int idx = threadIdx.x; idx < kElems; idx += kThreads) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += partial[w * kElems + idx];
    const int l = idx & 31, e = (idx >> 5) & 3, mt = (idx >> 7) % MT, i = (idx >> 7) / MT;
    // Accumulator element e of lane l: weight row g (+8 for e >= 2), token 2t + (e & 1).
    const int64_t r = row0 + 16 * i + (l >> 2) + 8 * (e >> 1);
    const int tok = mt * 8 + 2 * (l & 3) + (e & 1);
    if (r >= p.n || tok >= p.m) continue;
    const float alpha = p.alpha[p.alpha_per_row ? r : 0];
    const float v = sum * unfold<A>() * alpha + load_bias(p, r);
    store_output(p, static_cast<int64_t>(tok) * p.n + r, v);
  }
}

}  // namespace nvfp4::decode_gemm
