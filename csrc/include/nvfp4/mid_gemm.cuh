// Mid-size GEMM (16 < M <= 64 tokens) with NVFP4 weights, for GPUs without FP4 tensor cores
// (it needs ~100-210 KB of shared memory per CTA: SM90). Torch-free: raw pointers, ints.
//
//   D[m, n] = alpha[n] * sum_k A[m, k] * B_hat[n, k] (+ bias[n]),  fp32 accumulation
//
// Same arithmetic as the decode kernel (nvfp4/decode_gemm.cuh, whose pieces it reuses): tokens on
// the narrow side of mma.sync m16n8k16 (weight rows = MMA M, tokens = MMA N), the per-lane K
// permutation that lets a lane read 16 contiguous weight bytes straight from the checkpoint
// layout, the select/shift/mask word decode with the power of two folded into the block scale
// and undone once in the epilogue. What changes is who shares what:
//
// * The decode kernel's warps split the K range of the SAME rows, so every CTA reads all M x K
//   activations from L2 for 16 * WT rows: at M = 64 (gate_up, 16-row tiles x2) that is ~925 MB of
//   L2 reads against 130 MB of weights. Here the NW warps of a CTA own DIFFERENT rows (NW x 16 x WT
//   of them) and share one 128-wide K chunk of all M <= 64 activations, staged once per CTA in
//   shared memory by cp.async: the activations read from L2 drop NW-fold (gate_up, M = 64,
//   256-row CTAs: ~116 MB, as much as the weights, well within L2 bandwidth).
// * A STAGES-deep ring of (activation chunk, every warp's weight chunk) in shared memory, filled
//   by 16-byte cp.async (weights: each lane copies and later reads back its own 16 bytes + the
//   4-byte word of its two scales, as in the decode kernel; activations: all threads copy, one
//   __syncthreads per chunk publishes them). (STAGES - 1) x (NW x WT x 1.25 KB of weights) are in
//   flight per CTA: 60 KB at the default shape.
// * Activation chunk layout (fp16/bf16): token row = 256 bytes = 16 units of 8 values; lane
//   (g, t) reads unit 4t + J for word J of its 32 values, so unit u of row r is stored at unit
//   u ^ (((u >> 3) & 1) << 1) ^ (r & 1): each quarter-warp of a 16-byte shared load then hits 8
//   different 16-byte bank groups (conflict-free), and each 8 consecutive copies of the staging
//   write 8 different groups.
// * Packed activations (W4A4) are staged raw (64 bytes + 8 scale bytes per token row) and
//   decoded ONCE per CTA, one chunk ahead of the MMAs, into the same operand rows (fp16
//   lut * s * 2^-14, already in the MMA's pair order, so the warps read them without a byte
//   permute): decoding them in every warp, as the decode kernel does, took 1154 instead of 690
//   instructions per warp and chunk. The decode-ahead costs a stage of copies in flight, so W4A4
//   gets one more stage.
// * Split-K over gridDim.y CTAs when N / rows-per-CTA cannot fill the GPU (o, down: N = 5376):
//   each CTA writes its fp32 partial fragment to a workspace, the last CTA of a row tile to arrive
//   (an atomic arrival counter, the only atomic) sums the partials in split order 0, 1, ... and
//   runs the epilogue: the result does not depend on which CTA arrives last (deterministic).
//   The launcher picks the split count from the CTA slots of the GPU (mid_gemm::choose_splits).
//
// sm_90a SASS (cuobjdump, CUDA 13.0), no local memory (LDL/STL) in any of them; "loop" = the
// instructions of one warp per 128-wide K chunk (its WT x 16 rows x MT x 8 tokens):
//   bf16, MT = 8, default (NW 8, WT 2): 190 registers, loop 730 = 128 HMMA + 138 LOP3 + 136 PRMT
//     + 117 IMAD (69 of them IMAD.SHL: decode shifts on the FMA pipe) + 64 HMUL2 + 43 LDS + ...
//     i.e. per 16x16 weight tile and k16 step: 8 HMMA + ~38 others (weight decode ~18,
//     activation shared loads + byte permutes ~10), ~5.7 instructions per weight.
//   fp16, MT = 3 (M <= 24), default: 124 registers, loop 519 (48 HMMA).
//   W4A4, MT = 8, default: 190 registers, loop 690 (128 HMMA, no PRMT; includes this thread's
//     share of the CTA's activation decode: 4 x (16-byte load, 4 pair decodes, 16-byte store)).
//   bf16, MT = 8, NW 8 x WT 1 (variant 3): 131 registers, loop 487 (64 HMMA).
//   bf16, MT = 8, default + PERMUTE_AHEAD (variant 4): 188 registers, loop 625 (128 HMMA, 24
//     PRMT: the CTA's permute pass instead of every warp's); fp16, MT = 3: 122, loop 497.
#pragma once

#include <cstdint>

#include "nvfp4/decode_gemm.cuh"

namespace nvfp4::mid_gemm {

using decode_gemm::Act;
using decode_gemm::kChunk;
using decode_gemm::Params;

// Token tiles of 8 the kernel is built for: M <= 64.
constexpr int kMaxTokenTiles = 8;
// A split of K gets at least this many 128-wide chunks (the ring's fill is not amortised below).
constexpr int kMinChunksPerSplit = 4;

// A launch shape: NW warps per CTA, each owning WT 16-row tiles (rows NW * 16 * WT per CTA);
// STAGES chunks in the shared-memory ring; at most MAX_SPLITS CTAs share a row tile's K range.
// PERMUTE_AHEAD (16-bit activations): the CTA byte-permutes each staged chunk into the MMA's
// pair order once, one chunk ahead (as packed activations are decoded), instead of every warp
// permuting what it reads: 4 PRMT per 16 bytes once per CTA instead of once per warp, for one
// more stage of shared memory.
template <int NW_, int WT_, int STAGES_, int MAX_SPLITS_, bool PERMUTE_AHEAD_ = false>
struct Shape {
  static constexpr int NW = NW_, WT = WT_, STAGES = STAGES_, MAX_SPLITS = MAX_SPLITS_;
  static constexpr bool PERMUTE_AHEAD = PERMUTE_AHEAD_;
  static constexpr int kThreads = NW * 32;
  static constexpr int kRows = NW * 16 * WT;
  // One warp's share of a ring stage: weights [WT][2][32 lanes] x 16 bytes, then the scale words
  // [WT][2][32 lanes] x 4 bytes (the decode kernel's slot layout, read_slot reads it).
  static constexpr int kWeightSlotBytes = WT * 2 * 32 * (16 + 4);
};

// One stage's activation chunk, MT * 8 token rows: the 16-bit operand rows the MMAs read (256
// bytes each, swizzled), then for packed activations (Act::kNvfp4) the raw copy they are
// decoded from (64 bytes per row, then 8 scale bytes per row).
template <Act A, int MT>
struct ActTile {
  static constexpr int kTokens = MT * 8;
  static constexpr int kRawOffset = kTokens * kChunk * 2;
  static constexpr int kScaleOffset = kRawOffset + kTokens * kChunk / 2;
  static constexpr int kBytes = A == Act::kNvfp4 ? kScaleOffset + kTokens * 8 : kRawOffset;
};

template <Act A, int MT, class S>
struct Layout {
  // Packed activations are decoded (16-bit ones, with PERMUTE_AHEAD, permuted) one chunk ahead
  // (see mid_gemm_kernel), which takes a stage out of the copies in flight: they get one more.
  static constexpr bool kAhead = A == Act::kNvfp4 || S::PERMUTE_AHEAD;
  static constexpr int kStages = S::STAGES + (kAhead ? 1 : 0);
  static constexpr int kActBytes = ActTile<A, MT>::kBytes;
  static constexpr int kStageBytes = kActBytes + S::NW * S::kWeightSlotBytes;
  static constexpr int kSmemBytes = kStages * kStageBytes;
  // fp32 partial sums of one CTA (split-K workspace), in fragment order.
  static constexpr int kCtaElems = S::NW * S::WT * MT * 4 * 32;
};

static_assert(Layout<Act::kHalf, 8, Shape<8, 2, 4, 8>>::kStageBytes % 16 == 0, "16-byte stages");

// Where unit u (8 values) of token row r sits in a 16-bit activation chunk (see the header).
__host__ __device__ constexpr int act_unit(int u, int r) {
  return u ^ (((u >> 3) & 1) << 1) ^ (r & 1);
}

// How many CTAs split the K range of each row tile. Modelled cost: the wave quantisation of
// tiles * splits CTAs over `slots` resident CTAs, times the extra traffic of the fp32 partials
// (written and read back, M_pad x 8 bytes per row and split, counted at half weight since they
// mostly stay in L2) relative to the row's weight bytes (K x 9/16). The smallest split within
// 2 % of the best wins.
__host__ inline int choose_splits(int64_t tiles, int64_t k, int m_pad, int slots, int max_splits) {
  const int64_t chunks = (k + kChunk - 1) / kChunk;
  int limit = static_cast<int>(chunks / kMinChunksPerSplit);
  limit = limit < 1 ? 1 : (limit < max_splits ? limit : max_splits);
  if (slots < 1 || tiles < 1) return 1;
  const double weight_bytes = static_cast<double>(k) * 9.0 / 16.0;
  double costs[64];
  double best_cost = 1e300;
  limit = limit > 64 ? 64 : limit;
  for (int s = 1; s <= limit; ++s) {
    const int64_t ctas = tiles * s;
    const int64_t waves = (ctas + slots - 1) / slots;
    const double util = static_cast<double>(ctas) / static_cast<double>(waves * slots);
    const double extra = s > 1 ? s * m_pad * 8.0 * 0.5 / weight_bytes : 0.0;
    costs[s - 1] = (1.0 + extra) / util;
    best_cost = costs[s - 1] < best_cost ? costs[s - 1] : best_cost;
  }
  for (int s = 1; s <= limit; ++s)
    if (costs[s - 1] <= best_cost * 1.02) return s;
  return 1;
}

// ---- staging one K chunk of the activations (all threads of the CTA) ------------------------

template <Act A, int MT, int kThreads>
struct ActCopier {
  // 16-bit: MT*8 rows x 16 units; packed: MT*8 rows x 4 data units, then MT*8 x 2 scale words.
  static constexpr int kUnits = A == Act::kNvfp4 ? MT * 8 * 4 : MT * 8 * 16;
  static constexpr int kPer = (kUnits + kThreads - 1) / kThreads;
  static constexpr int kScaleWords = A == Act::kNvfp4 ? MT * 8 * 2 : 0;
  static constexpr int kScalePer = (kScaleWords + kThreads - 1) / kThreads;
  const uint8_t* src[kPer];  // chunk 0 of this thread's unit (row clamped to M - 1)
  uint32_t dst[kPer];        // byte offset in the stage
  int k0[kPer];              // K index of the unit's first value in chunk 0 (>= K: not valid)
  const uint8_t* ssrc[kScalePer > 0 ? kScalePer : 1];
  uint32_t sdst[kScalePer > 0 ? kScalePer : 1];
  int sk0[kScalePer > 0 ? kScalePer : 1];  // first block's K index in chunk 0

  __device__ __forceinline__ void init(const Params& p, int tid) {
    const int64_t row_bytes = A == Act::kNvfp4 ? p.k / 2 : static_cast<int64_t>(p.k) * 2;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int idx = tid + j * kThreads;
      const int per_row = A == Act::kNvfp4 ? 4 : 16;
      const int r = idx / per_row, u = idx % per_row;
      const bool row_ok = idx < kUnits && r < p.m;
      const int64_t rc = r < p.m ? r : p.m - 1;
      const int vals = A == Act::kNvfp4 ? 32 : 8;  // values per unit
      src[j] = static_cast<const uint8_t*>(p.a) + rc * row_bytes + u * 16;
      dst[j] = A == Act::kNvfp4 ? ActTile<A, MT>::kRawOffset + r * 64 + u * 16
                                : r * 256 + act_unit(u, r) * 16;
      k0[j] = row_ok ? u * vals : INT32_MAX;
    }
    if constexpr (A == Act::kNvfp4) {
#pragma unroll
      for (int j = 0; j < kScalePer; ++j) {
        const int idx = tid + j * kThreads;
        const int r = idx / 2, w = idx % 2;
        const bool row_ok = idx < kScaleWords && r < p.m;
        const int64_t rc = r < p.m ? r : p.m - 1;
        // Blocks 8c + 4w .. 8c + 4w + 3 of row r: one aligned 4-byte group of the 128x4 layout.
        ssrc[j] = p.a_scale + decode_gemm::scale_row_offset(rc, p.k, true) + w * 512;
        sdst[j] = ActTile<A, MT>::kScaleOffset + r * 8 + w * 4;
        sk0[j] = row_ok ? w * 64 : INT32_MAX;
      }
    }
  }

  __device__ __forceinline__ void issue(uint32_t stage, int chunk, const Params& p) const {
    const int kc = chunk * kChunk;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t step = A == Act::kNvfp4 ? kChunk / 2 : kChunk * 2;
      if (j * kThreads + static_cast<int>(threadIdx.x) < kUnits || kUnits % kThreads == 0) {
        const bool ok = k0[j] < p.k - kc;
        decode_gemm::cp_async16(stage + dst[j], ok ? src[j] + chunk * step : src[j], ok);
      }
    }
    if constexpr (A == Act::kNvfp4) {
#pragma unroll
      for (int j = 0; j < kScalePer; ++j) {
        if (j * kThreads + static_cast<int>(threadIdx.x) < kScaleWords ||
            kScaleWords % kThreads == 0) {
          const bool ok = sk0[j] < p.k - kc;
          decode_gemm::cp_async4(stage + sdst[j], ok ? ssrc[j] + chunk * 1024 : ssrc[j], ok);
        }
      }
    }
  }
};

// ---- the math of one chunk --------------------------------------------------------------------

// Packed activations (Act::kNvfp4): the CTA decodes a staged chunk once into the operand rows,
// already in the MMA's pair order (decode_gemm::activation_word's), as fp16 lut * s * 2^-14
// (exact, as in the decode kernel): thread (row r, quarter t) turns its 32 values into the four
// 16-byte units 4t + J that lane (g = r % 8, t) reads. Rows past M and K were copied as zeros.
template <int MT, int kThreads>
__device__ __forceinline__ void decode_staged_activations(uint8_t* stage, int tid) {
  using T = ActTile<Act::kNvfp4, MT>;
  constexpr int kItems = MT * 8 * 4;
#pragma unroll
  for (int j = 0; j < (kItems + kThreads - 1) / kThreads; ++j) {
    const int idx = tid + j * kThreads;
    if (kItems % kThreads != 0 && idx >= kItems) break;
    const int r = idx >> 2, t = idx & 3;
    const uint4 q = *reinterpret_cast<const uint4*>(stage + T::kRawOffset + r * 64 + 16 * t);
    const uint32_t two =
        *reinterpret_cast<const uint16_t*>(stage + T::kScaleOffset + r * 8 + 2 * t);
    uint32_t s0, s1;
    scale_pair(two, false, s0, s1);
#pragma unroll
    for (int J = 0; J < 4; ++J) {
      const uint32_t w = J == 0 ? q.x : J == 1 ? q.y : J == 2 ? q.z : q.w;
      const uint32_t sc = J < 2 ? s0 : s1;
      uint4 v;
      v.x = hmul2_bits(e2m1_pair_half<0>(w), sc, false);
      v.y = hmul2_bits(e2m1_pair_half<1>(w), sc, false);
      v.z = hmul2_bits(e2m1_pair_half<2>(w), sc, false);
      v.w = hmul2_bits(e2m1_pair_half<3>(w), sc, false);
      *reinterpret_cast<uint4*>(stage + r * 256 + act_unit(4 * t + J, r) * 16) = v;
    }
  }
}

// 16-bit activations with Shape::PERMUTE_AHEAD: each 16-byte unit of a staged chunk, values
// k0..k7, becomes the pairs (k0, k4) (k1, k5) (k2, k6) (k3, k7) in place (the order
// decode_staged_activations writes and decode_gemm::activation_word builds per lane).
template <int MT, int kThreads>
__device__ __forceinline__ void permute_staged_activations(uint8_t* stage, int tid) {
  constexpr int kUnits = MT * 8 * 16;
#pragma unroll
  for (int j = 0; j < (kUnits + kThreads - 1) / kThreads; ++j) {
    const int idx = tid + j * kThreads;
    if (kUnits % kThreads != 0 && idx >= kUnits) break;
    uint4* unit = reinterpret_cast<uint4*>(stage + idx * 16);  // any order: all units move alike
    const uint4 v = *unit;
    *unit = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632),
                       __byte_perm(v.y, v.w, 0x5410), __byte_perm(v.y, v.w, 0x7632));
  }
}

// The B operands of MMA steps 2J, 2J+1 for token tile mt (decode_gemm::activation_word's order).
template <Act A, int MT, int J, bool kPairOrder>
__device__ __forceinline__ void act_operands(uint32_t (&b)[MT][2][2], const uint8_t* act,
                                             uint32_t lane_off) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    // Row mt * 8 + g: rows of one lane differ by 8 (same parity), so the lane's swizzled offset
    // for word J is lane_off ^ (J * 16) plus mt * 8 rows.
    const uint4 v = *reinterpret_cast<const uint4*>(act + mt * 8 * 256 + (lane_off ^ (J * 16)));
    if constexpr (kPairOrder) {
      // Decoded (permuted) by decode_staged_activations (permute_staged_activations) already.
      b[mt][0][0] = v.x;
      b[mt][0][1] = v.y;
      b[mt][1][0] = v.z;
      b[mt][1][1] = v.w;
    } else {
      b[mt][0][0] = __byte_perm(v.x, v.z, 0x5410);
      b[mt][0][1] = __byte_perm(v.x, v.z, 0x7632);
      b[mt][1][0] = __byte_perm(v.y, v.w, 0x5410);
      b[mt][1][1] = __byte_perm(v.y, v.w, 0x7632);
    }
  }
}

template <Act A, int MT, int WT, int J, bool kPairOrder>
__device__ __forceinline__ void mma_word(float (&acc)[WT][MT][4],
                                         const decode_gemm::WeightChunk<WT>& w,
                                         const uint32_t (&sc)[WT][2][2], const uint8_t* act,
                                         uint32_t lane_off) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t b[MT][2][2];
  act_operands<A, MT, J, kPairOrder>(b, act, lane_off);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int i = 0; i < WT; ++i) {
      uint32_t a[4];
      if (half == 0)
        decode_gemm::weight_operand<2 * J, kBf16>(a, w, i, sc);
      else
        decode_gemm::weight_operand<2 * J + 1, kBf16>(a, w, i, sc);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        decode_gemm::mma_16816(acc[i][mt], a, b[mt][half][0], b[mt][half][1], kBf16);
    }
  }
}

template <Act A, int MT, int WT, bool kPairOrder>
__device__ __forceinline__ void compute_chunk(float (&acc)[WT][MT][4],
                                              const decode_gemm::WeightChunk<WT>& w,
                                              const uint8_t* act, uint32_t lane_off) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t sc[WT][2][2];
  decode_gemm::chunk_scales(w, kBf16, sc);
  mma_word<A, MT, WT, 0, kPairOrder>(acc, w, sc, act, lane_off);
  mma_word<A, MT, WT, 1, kPairOrder>(acc, w, sc, act, lane_off);
  mma_word<A, MT, WT, 2, kPairOrder>(acc, w, sc, act, lane_off);
  mma_word<A, MT, WT, 3, kPairOrder>(acc, w, sc, act, lane_off);
}

// Grid: (ceil(N / S::kRows), splits), S::kThreads threads, Layout::kSmemBytes of dynamic shared
// memory. With splits > 1, `partials` holds tiles * splits * Layout::kCtaElems floats and
// `arrivals` tiles zeroed ints (the launcher allocates both on the launch stream).
template <Act A, int MT, class S>
__global__ void __launch_bounds__(S::kThreads, 1)
    mid_gemm_kernel(const Params p, float* __restrict__ partials, int* __restrict__ arrivals) {
  using L = Layout<A, MT, S>;
  constexpr int WT = S::WT, kStages = L::kStages;
  // Packed activations (16-bit ones with PERMUTE_AHEAD): chunk c + 1 is decoded (permuted)
  // while chunk c is multiplied.
  constexpr bool kDecodeAhead = L::kAhead;
  static_assert(MT >= 1 && MT <= kMaxTokenTiles, "mid GEMM: M <= 64");
  static_assert(kStages >= (kDecodeAhead ? 3 : 2), "mid GEMM: too few stages");
  extern __shared__ __align__(16) uint8_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * S::kRows + warp * 16 * WT;  // this warp's first row
  const int splits = gridDim.y, split = blockIdx.y;
  const int chunks = (p.k + kChunk - 1) / kChunk;
  const int c_begin = static_cast<int>(static_cast<int64_t>(split) * chunks / splits);
  const int c_end = static_cast<int>(static_cast<int64_t>(split + 1) * chunks / splits);

  float acc[WT][MT][4];
  decode_gemm::zero(acc);

  decode_gemm::WeightRows<WT> rows;
  decode_gemm::weight_rows(rows, p, row0, lane);
  decode_gemm::WeightCursor<WT> wc;
  decode_gemm::weight_cursor<1>(wc, rows, p, c_begin, lane);  // one chunk per step
  ActCopier<A, MT, S::kThreads> copier;
  copier.init(p, threadIdx.x);

  const uint32_t smem_s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  constexpr uint32_t kScales = WT * 2 * 32 * 16;
  const uint32_t lane_slot = L::kActBytes + warp * S::kWeightSlotBytes;
  // 16-bit activations: the lane's swizzled byte offset of word 0 in its token row g.
  const uint32_t lane_off = g * 256 + act_unit(4 * t, g) * 16;

  auto issue = [&](int chunk, int stage) {
    const uint32_t base = smem_s + stage * L::kStageBytes;
    decode_gemm::issue_weights<1>(wc, base + lane_slot + 16 * lane,
                                  base + lane_slot + kScales + 4 * lane, p);
    copier.issue(base, chunk, p);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (c_begin + s < c_end) issue(c_begin + s, s);
    decode_gemm::cp_async_commit();
  }
  auto decode_ahead = [&](uint8_t* st) {
    if constexpr (A == Act::kNvfp4)
      decode_staged_activations<MT, S::kThreads>(st, threadIdx.x);
    else
      permute_staged_activations<MT, S::kThreads>(st, threadIdx.x);
  };
  if constexpr (kDecodeAhead) {
    decode_gemm::cp_async_wait<kStages - 2>();  // chunk c_begin
    __syncthreads();
    decode_ahead(smem);
  }
  int stage = 0;
#pragma unroll 1
  for (int c = c_begin; c < c_end; ++c) {
    // This thread's copies of chunk c (and c + 1 when decoding ahead) have landed; the barrier
    // publishes everyone's (and the operands decoded from chunk c in the previous iteration)
    // and says that every warp is done with the stage computed in the previous iteration.
    decode_gemm::cp_async_wait<kDecodeAhead ? kStages - 3 : kStages - 2>();
    __syncthreads();
    if (c + kStages - 1 < c_end) issue(c + kStages - 1, stage == 0 ? kStages - 1 : stage - 1);
    decode_gemm::cp_async_commit();
    if constexpr (kDecodeAhead) {
      // Stage c + 1: its raw copy is complete and published, its operand rows were last read
      // for chunk c + 1 - kStages, before the barrier; nobody reads them before the next one.
      if (c + 1 < c_end) decode_ahead(smem + (stage + 1 == kStages ? 0 : stage + 1) * L::kStageBytes);
    }
    const uint8_t* st = smem + stage * L::kStageBytes;
    decode_gemm::WeightChunk<WT> w;
    decode_gemm::read_slot(w, st + lane_slot + 16 * lane, st + lane_slot + kScales + 4 * lane,
                           rows);
    compute_chunk<A, MT, WT, kDecodeAhead>(acc, w, st, lane_off);
    stage = stage + 1 == kStages ? 0 : stage + 1;
  }
  decode_gemm::cp_async_wait<0>();

  if (splits > 1) {
    // Publish this split's partial sums; the last CTA of the row tile to arrive adds all of
    // them in split order (the same order whichever CTA that is).
    __shared__ int is_last;
    float* mine = partials + (static_cast<int64_t>(blockIdx.x) * splits + split) * L::kCtaElems +
                  warp * (WT * MT * 4 * 32) + lane;
#pragma unroll
    for (int i = 0; i < WT; ++i)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) __stcg(mine + ((i * MT + mt) * 4 + e) * 32, acc[i][mt][e]);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(arrivals + blockIdx.x, 1) == splits - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const float* tile = partials + static_cast<int64_t>(blockIdx.x) * splits * L::kCtaElems +
                        warp * (WT * MT * 4 * 32) + lane;
    decode_gemm::zero(acc);
#pragma unroll 1
    for (int s = 0; s < splits; ++s) {
      const float* part = tile + static_cast<int64_t>(s) * L::kCtaElems;
#pragma unroll
      for (int i = 0; i < WT; ++i)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][mt][e] += __ldcg(part + ((i * MT + mt) * 4 + e) * 32);
    }
  }

  // Epilogue: accumulator element e of a lane is weight row g (+8 for e >= 2), token 2t + (e & 1).
  float alpha[WT][2], bias[WT][2];
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = min(row0 + 16 * i + g + 8 * h, p.n - 1);
      alpha[i][h] = p.alpha[p.alpha_per_row ? r : 0];
      bias[i][h] = decode_gemm::load_bias(p, r);
    }
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = row0 + 16 * i + g + 8 * (e >> 1);
        const int tok = mt * 8 + 2 * t + (e & 1);
        if (r >= p.n || tok >= p.m) continue;
        const float v = acc[i][mt][e] * decode_gemm::unfold<A>() * alpha[i][e >> 1] + bias[i][e >> 1];
        decode_gemm::store_output(p, static_cast<int64_t>(tok) * p.n + r, v);
      }
}

}  // namespace nvfp4::mid_gemm
