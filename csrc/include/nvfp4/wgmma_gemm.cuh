// Hopper (sm_90a) warpgroup-MMA GEMM with NVFP4 weights for 17 <= M <= 256 tokens: the weights
// are decoded in registers and fed to wgmma as its REGISTER A operand, the activations are the
// shared-memory B operand. Torch-free: raw pointers and ints. Run and tested on the H100 (every
// variant); the cuda backend's choice for 16 < M <= 128 on sm_90a builds (backends/cuda.py).
//
//   D[m, n] = alpha[n] * sum_k A[m, k] * B_hat[n, k] (+ bias[n]),  fp32 accumulation
//
// Same arithmetic as the mid-size kernel (nvfp4/mid_gemm.cuh) and the decode kernel
// (nvfp4/decode_gemm.cuh, whose weight pieces it reuses unchanged): tokens on the narrow (N) side
// ("swap AB"), 64 weight rows per warpgroup as wgmma's M side, the select/shift/mask word decode
// with the power of two folded into the block scale and undone in the epilogue. What changes is
// the MMA: one wgmma.m64nNk16 per warpgroup and k16 step (N = the token tile, 32..256) instead of
// N/8 mma.sync m16n8k16 per warp, so the MMA issue cost no longer grows with M, and the
// activation operand is read by the tensor cores straight from shared memory (no per-warp
// shared loads and byte permutes: in mid_gemm.cuh those were ~10 of ~38 instructions per 16x16
// tile and k16 step).
//
// Fragment mapping (the decision this file rests on):
// * wgmma's m64k16 register A fragment is, per warp w of the warpgroup, the mma.sync m16n8k16 A
//   fragment of rows 16w..16w+15 (PTX ISA, "Register fragments and shared memory matrix layouts",
//   wgmma .m64nNk16 A; CUTLASS's register-A layout for 16-bit types, ALayout_64x16, reads the
//   same: thread (t, g, warp) x value (pair half, row + 8, k + 8)): lane (g = lane/4, t = lane%4) holds rows g and g+8, K slots (2t, 2t+1) in
//   registers a0 (row g) / a1 (row g+8) and slots (2t+8, 2t+9) in a2 / a3. So the decode kernel's
//   per-lane K permutation carries over as is: for each 128-wide K chunk lane t copies the 16
//   checkpoint bytes (32 contiguous values, k = 32t..32t+31 of the chunk) of each of its rows,
//   and k16 step S = 2J + h (J = word of those 16 bytes, h = 0/1) puts the nibble pair
//   (P, P+4), P = 2h + c, of word J in the slot pair (2t + 8c, 2t + 8c + 1): decode_gemm's
//   weight_operand<S>, unchanged. Slot pair (2t + 8c, +1) of step S therefore holds
//   k = 32t + 8J + P and k + 4.
// * The activations (B, K-major: token rows of 16 slots per step) are stored in that slot
//   order, in the canonical no-swizzle K-major layout the wgmma descriptor reads: per step S a
//   block of N/8 x 2 "core matrices" of 8 token rows x 16 bytes (128 contiguous bytes each;
//   the two K halves c = 0/1 128 bytes apart = the descriptor's leading-dimension offset, 8-token
//   groups 256 bytes apart = its stride offset; steps N x 32 bytes apart). The byte permute this
//   needs is done ONCE per CTA and chunk, in place, one chunk ahead of the MMAs: cp.async puts
//   16-byte unit u = 4t + J of token n (values k = 8u..8u+7) at the core row (step 2J + t/2,
//   half t%2, token n); the thread that owns (n, J) then reads those four units and writes back
//   the four core rows of steps 2J, 2J+1, each word t' of core row (S = 2J + h, c) being pair
//   P = 2h + c, (k = 8(4t' + J) + P, k + 4), of unit 4t' + J (one prmt per word, as
//   mid_gemm.cuh's PERMUTE_AHEAD does). Why not the other way round (decode the weights into
//   natural (k, k+1) pairs so that B could be copied unpermuted): the word decode pairs nibbles
//   P and P+4 of a 32-bit word; pairing the two nibbles of one byte instead costs ~6 more
//   integer operations per 8 weights in every warp (measured on paper: a prmt per register
//   plus the loss of the shared sign copy), against 24 instructions per 32 activations once per
//   CTA here (at 128 rows per CTA: 6 per 8 weights at N = 256, 1.5 at N = 64). And a weight
//   repack at load time would remove both, but changes what NVFP4 tensors carry: left for later.
// * Accumulator fragment (per warp, rows 16w..16w+15 of the warpgroup's 64): for token block j
//   (8 tokens), d[4j + e] is row g + 8 (e >> 1), token 8j + 2t + (e & 1), as mma.sync's C.
//
// Launch shapes: WG = 2 warpgroups per CTA, each with WT = 1 or 2 tiles of 64 rows (one wgmma
// per tile and step on the same B block); token tiles 32, 64, 128, 256 (WT = 2 up to 128);
// one CTA per SM (the ring takes the shared memory: 3 to 8 stages, up to 227 KB).
//
// Pipeline: a STAGES-deep ring of (activation chunk, every warp's weight chunk) filled by 16-byte
// cp.async (weights: each lane copies and reads back its own 16 bytes + scale word, the decode
// kernel's slot layout; activations: all threads). Per chunk, each warpgroup issues 8 wgmmas
// (fence, mma, commit), decoding step S+1's A fragment (double-buffered registers) while MMA S
// runs (wait_group 1 before a buffer is rewritten); meanwhile the CTA permutes the next chunk's
// activations in place (then fence.proxy.async: generic-proxy writes become visible to the
// wgmma's async-proxy reads) and waits for all MMAs before the barrier that frees the stage
// (Shape::OVERLAP, variant 3: only for all but the last, which then runs across the barrier;
// the stage of two chunks back is refilled instead; SASS: one WARPGROUP wait fewer per chunk).
// Split-K with an ordered reduction for N = 5376 layers, as mid_gemm.cuh (choose_splits there).
//
// sm_90a SASS (cuobjdump, CUDA 13.0), no local memory (LDL/STL) in any instantiation
// (tests/csrc/test_sass.py checks that and the 8 register-A HGMMA per tile per chunk); "loop" =
// instructions of one warp per 128-wide K chunk, i.e. per (its 16 rows x 128 K) of each tile;
// dividing by 8 gives the count per warp and k16 step, x 4 warps per 64x16 weight tile:
//   token tile (NT), tiles (WT): registers, loop fp16 / bf16 activations
//   NT  32, WT 1:  83 registers, loop 306 / 316 (8 HGMMA, 17 WARPGROUP fence/arrive/wait)
//   NT  64, WT 1: 100 registers, loop 296 / 306; fp16 = 64 LOP3 + 56 IMAD (decode shifts on
//     the FMA pipe) + 32 HMUL2 (block scale) + 20 PRMT (16 of them the CTA's activation
//     permute, 4 scale broadcasts) + 15 LDS + 8 LDGSTS + 8 HGMMA + 17 WARPGROUP + addressing.
//     Per 64x16 weight tile and k16 step: 4 warps x 37 (bf16: 38) warp instructions, one HGMMA
//     per warpgroup, against mid_gemm.cuh's 4 x ~46 (8 HMMA each, bf16) at M = 64.
//   NT 128, WT 1: 142 registers, loop 354 / 364 (36 PRMT: the permute grows with NT)
//   NT 256, WT 1: 255 registers, loop 457 / 467 (68 PRMT, 20 LDGSTS, 32 SEL of copy sources)
//   NT  32, WT 2: 127 registers (bf16), loop 482 / 502 for two tiles
//   NT  64, WT 2: 157 registers (bf16), loop 473 / 493 for two tiles (237 / 247 per tile)
//   NT 128, WT 2: 255 registers, loop 529 / 549 for two tiles (265 / 275 per tile)
// Modelled H100 bounds per CTA and chunk, gate_up 43008 x 5376 at M = 64, default shape (128
// rows): issue 8 warps x 306 / 4 schedulers = 612 cycles; tensor 128 x 64 x 128 MACs / ~2048
// per cycle = 512; shared memory (cp.async writes 26 KB, permute 16 + 16 KB, wgmma reads
// 2 x 16 KB, weight reads 10 KB) ~100 KB / 128 B per cycle = 780 cycles; HBM ~0.56 B per weight
// -> ~43 us for the layer. At M = 128 the tensor cores (1024 cycles per chunk) and the L2 reads
// of activations (every 128-row CTA reads all M x K: ~3.5x the weight bytes; WT = 2 halves it)
// bound it instead; at M = 256 also the shared-memory traffic of the permute (~330 KB per chunk).
//
// Launch variants 4-10 (csrc/gemm_wgmma.cu; 0-3 unchanged). First H100 profile (gate_up 43008 x
// 5376, M = 128, variant 2): ~6000 SM cycles per chunk against ~2048 of tensor work, one
// instruction per 9.5 cycles per warp (2 warps per scheduler), top stall long_scoreboard 3.2
// cycles per instruction. What the SASS of one chunk shows, in order: DEPBAR.LE SB0 (cp.async
// wait: the only L1TEX wait of the loop besides the LDGSTS operand reads) + BAR.SYNC; ~90
// instructions of refill issue (16 LDGSTS, their SEL/IADD address moves); LDS of the weight
// slot and scale words; decode; then per k16 step WARPGROUP.ARRIVE, HGMMA(s), DEPBAR.LE gsb0 1,
// so at most 2 steps are queued and each decode waits for the previous MMA; at the end the
// permute (4 LDS.128 -> 16 PRMT -> 4 STS.128 per item), MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC.S
// (fence.proxy.async) and WARPGROUP.DEPBAR 0: the tensor cores drain before every barrier,
// and the next MMA waits for barrier + copy issue + LDS + decode. Which instructions the
// long-scoreboard stalls sit on needs per-instruction stall samples (Nsight Compute's source
// page); the variants below each remove one of the candidates.
// Each variant tests one hypothesis; SASS (CUDA 13.0, bf16; fp16 10 to 20 fewer) "loop" =
// instructions of one warp per chunk, registers, ring stages (token tiles 32/64/128/256):
// * 4 = Shape<2, 1, 8, false, 7>: "the per-step wait_group 1 starves the tensor cores".
//   All 8 steps' MMAs of a chunk are queued (8 A register sets; DEPBAR.LE gsb0 7 per step,
//   i.e. no wait inside a chunk), the weight slot is read and the first 2 MMAs issued before
//   the refill's copies; one drain at the chunk end remains. 112/126/161/255 registers,
//   loop 301/304/358/467 (variant 0 in the same build: 316/308/356/469), stages 8/8/5/3.
// * 5 = Shape<2, 1, 8, true, 7>: "+ the chunk-end drain". As 4 with OVERLAP: the warps never
//   wait for an MMA except to keep <= 7 groups queued (the copy issue then goes before the
//   chunk's MMAs, the previous chunk's queue covers it: issued between them, ptxas serializes
//   every MMA, warning C7513). 108/128/161/255 registers, loop 311/304/356/467, stages
//   8/8/5/3 (3 at M > 128: runs as 4 there).
// * 6 = Shape<2, 2, 8, true, 3>: variant 2 (the lead's M = 65..128 choice) with 3 steps queued
//   and no drain. 152/195/255 registers, loop 503/492/543 for two tiles (variant 2: 501/494/
//   551), stages 8/6/4; M > 128 runs 5.
// * 7 = Shape<3, 2, 8> at M <= 64, Shape<3, 1, 8> at 65..128 (M > 128: variant 0): "waves and
//   too few warps". 384 threads (3 warps per scheduler, <= 168 registers): gate_up's 43008
//   rows are 112 CTAs of 384 rows (one wave) or 224 of 192, instead of 168 of 256 (1.27
//   waves). Thread counts that are not a power of two use ActCopierAny. 126/168/158 registers,
//   loop 516/518 (two tiles)/400, stages 5/4/4; at 128 ptxas, at its 168-register cap, reads
//   more from shared memory (37 LDS per chunk against 19).
// * 8 = Shape<2, 1, 8, false, 1, true>: "the CTA-wide permute is the cost" (its instructions,
//   its extra shared-memory traffic of 2 x the chunk's activation bytes, 128 KB at M = 256,
//   and the stage it holds back). The activations are pre-permuted once per
//   call by prepermute_kernel (a second launch; M x K x 2 bytes read and written) into a
//   workspace, the GEMM copies them straight into their core rows; its barrier waits for the
//   chunk it computes (one more chunk of copies in flight: at M > 128, whose ring has 3
//   stages, cp.async wait depth 1 instead of 0). 70/88/144/255 registers, loop 268/277/295/363
//   (variant 0: 316/308/356/469), PRMT 4 (the scale broadcasts), no STS; stages as the default.
// * 9 = Shape<2, 1, 8, true, 7, true>: 8 with variant 5's MMA queue. 100/124/164/255
//   registers, loop 262/274/294/357.
// * 10 = Shape<2, 2, 8, true, 3, true>: 8 with variant 6's shape; M > 128 runs 9. 148/187/255
//   registers, loop 454/460/485 for two tiles (variant 2: 501/494/551).
// The extra launch of 8-10 costs a few microseconds, which shows at the small layers (o, M = 64).
//
// What the first H100 runs settled (2026-11-27): the B descriptor (LBO 128 bytes in K, SBO 256
// bytes per 8 tokens, no swizzle), ptxas keeping an in-flight wgmma's A registers alive until
// its wait_group, the register A fragment layout and the proxy fence order (generic st.shared
// -> fence.proxy.async -> bar.sync -> wgmma) all hold: every variant passes
// tests/backends/cuda/test_wgmma_gemm.py and compute-sanitizer memcheck on the dispatch tests.
// Measured (sweep_decode_gemm.py --kernel wgmma; docs/performance.md): variants 0-3 are
// latency-bound (ncu: 13-23 % issue slots, 24-35 % tensor pipe); 10 is the fastest shape at
// M = 65-128 and on most layers below, 7 on gate_up (N = 43008) at M <= 64 (gate_up M = 64:
// 7 0.120 ms, 10 0.139, 2 0.159, 0 0.203).
// W4A4 (packed activations): the pre-permuting shapes (8-10) decode them to bf16 in their
// permute pass (exact; prepermute_kernel); the others do not take them (the launcher rejects
// them) and the cuda backend decodes the activations to bf16 first.
#pragma once

#include <cstdint>
#include <type_traits>

#include "nvfp4/decode_gemm.cuh"
#include "nvfp4/dequantize.cuh"
#include "nvfp4/mid_gemm.cuh"
#include "nvfp4/wgmma_ops.cuh"

namespace nvfp4::wgmma_gemm {

using decode_gemm::Act;
using decode_gemm::kChunk;
using decode_gemm::Params;

constexpr int kMaxTokens = 256;  // wgmma's largest N
// Shared memory a block may opt in to on an H100 (227 KB); the stage count is fitted under it.
constexpr int kSmemLimit = 227 * 1024;

// A launch shape: WG warpgroups per CTA, each owning WT tiles of 64 weight rows (one wgmma per
// tile and k16 step, on the same B block); at most MAX_SPLITS CTAs share a row tile's K range.
// More rows per CTA (WG x WT x 64) divide the activation bytes each CTA stages from L2 per
// weight byte: every CTA reads all M x K activations.
// OVERLAP: the last MMAs of a chunk keep running across the barrier into the next chunk (the
// stage refilled is the one of two chunks back, whose MMAs are known complete), instead of
// every warpgroup draining its MMAs before each barrier; costs a stage of copies in flight and
// needs 4 stages (token tiles whose ring has 3 run without it).
// DEPTH: MMA groups (one per k16 step) a warpgroup leaves in flight after issuing the next one,
// i.e. its wait_group argument after each step; DEPTH + 1 register sets hold the decoded A
// fragments (an in-flight wgmma still reads its registers). 1 = decode step S + 1 while MMA S
// runs; 7 = all 8 steps of a chunk queued on the tensor cores, the warps never wait on an MMA
// inside a chunk. DEPTH > 1 also reads the chunk's weight slot before issuing the next refill
// (its shared-memory latency then hides under the copy issue instead of delaying the first MMA).
// PREPERMUTED: the activations come already in the MMA's slot order (prepermute_kernel, run
// by the launcher into a workspace before the GEMM): no CTA-wide permute pass, no stage held
// for it (the barrier of chunk c waits for chunk c's copies, not c + 1's), a proxy fence per
// chunk for the cp.async writes instead of the permute's.
template <int WG_, int WT_, int MAX_SPLITS_, bool OVERLAP_ = false, int DEPTH_ = 1,
          bool PREPERMUTED_ = false>
struct Shape {
  static constexpr int WG = WG_, WT = WT_, MAX_SPLITS = MAX_SPLITS_;
  static constexpr bool OVERLAP = OVERLAP_;
  static constexpr int DEPTH = DEPTH_;
  static constexpr bool PREPERMUTED = PREPERMUTED_;
  static_assert(DEPTH == 1 || DEPTH == 3 || DEPTH == 7,
                "wgmma GEMM: DEPTH + 1 A register sets must divide the 8 steps of a chunk");
  static constexpr int kWarps = WG * 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = WG * WT * 64;
  // One warp's share of a ring stage: weights [WT][2 rows][32 lanes] x 16 bytes, then scale
  // words [WT][2][32] x 4 bytes (decode_gemm's slot layout).
  static constexpr int kWeightSlotBytes = WT * 2 * 32 * (16 + 4);
};

template <int NT, class S>
struct Layout {
  static_assert(NT % 8 == 0 && NT >= 8 && NT <= kMaxTokens, "wgmma GEMM: token tile 8..256");
  static constexpr int kStepBytes = NT * 32;  // one k16 step of B: NT tokens x 16 x 2 bytes
  static constexpr int kActBytes = 8 * kStepBytes;
  static constexpr int kStageBytes = kActBytes + S::kWarps * S::kWeightSlotBytes;
  // As many stages as fit (up to 8), reserving 1 KB for static shared memory.
  static constexpr int kFit = (kSmemLimit - 1024) / kStageBytes;
  static constexpr int kStages = kFit > 8 ? 8 : kFit;
  static_assert(kStages >= 3, "wgmma GEMM: a stage in flight, one permuted ahead, one computed");
  static constexpr int kSmemBytes = kStages * kStageBytes;
  static constexpr int kCtaElems = S::kThreads * S::WT * NT / 2;  // fp32 partials of one CTA
};

// Split-K count by modelled time rather than traffic (launch variant 11): waves(s) x (chunks
// per split + kFill), kFill standing for a CTA's fixed costs (ring prologue, the drain, the
// ordered reduction of the partials), s kept at >= mid_gemm::kMinChunksPerSplit chunks per
// split; a larger s must model 10 % faster (its partial sums cost L2 traffic the model leaves
// out: at M = 256 a 128-row CTA writes 128 KB of them). mid_gemm::choose_splits instead
// charges the partial sums' traffic against the weight bytes, which keeps gate_up (168 CTAs
// of 256 rows on 132 SMs, 1.27 waves) unsplit at M = 128 although the kernel is latency-bound
// there.
__host__ inline int splits_by_waves(int64_t tiles, int64_t k, int slots, int max_splits) {
  constexpr int kFill = 2;
  const int64_t chunks = (k + kChunk - 1) / kChunk;
  int64_t limit = chunks / mid_gemm::kMinChunksPerSplit;
  limit = limit < 1 ? 1 : (limit < max_splits ? limit : max_splits);
  if (slots < 1 || tiles < 1) return 1;
  int best = 1;
  double best_cost = 1e300;
  for (int s = 1; s <= limit; ++s) {
    const int64_t waves = (tiles * s + slots - 1) / slots;
    const int64_t per_split = (chunks + s - 1) / s;
    const double cost = static_cast<double>(waves) * static_cast<double>(per_split + kFill);
    if (cost < best_cost * 0.9) best = s, best_cost = cost;
  }
  return best;
}

// Byte offset, inside a stage's activation block, of core row (step s, K half c, token n).
template <int NT>
__host__ __device__ constexpr uint32_t core_row(int s, int c, int n) {
  return s * (NT * 32) + (n >> 3) * 256 + c * 128 + (n & 7) * 16;
}

// Where cp.async puts 16-byte unit u (values 8u..8u+7 of the chunk) of token n: the core row
// (step 2J + t/2, half t%2) with u = 4t + J, which the permute turns into the slot order.
// Linear in the bits of u (and of n in multiples of 8), so a thread's copies are its first
// copy's offset plus constants.
template <int NT>
__host__ __device__ constexpr uint32_t staged_unit(int u, int n) {
  return core_row<NT>(2 * (u & 3) + (u >> 3), (u >> 2) & 1, n);
}

// Pre-permuted activations (Shape::PREPERMUTED): a separate pass (prepermute_kernel) has stored
// each token's chunk as its 16 core rows in order (step S, K half c) = unit 2S + c, K padded
// with zeros to whole chunks, so a copied unit lands in its final core row. Linear in the bits
// of u as staged_unit.
template <int NT>
__host__ __device__ constexpr uint32_t prepermuted_unit(int u, int n) {
  return core_row<NT>(u >> 1, u & 1, n);
}

// K rounded up to whole chunks: the row length of the pre-permuted copy.
__host__ __device__ constexpr int padded_k(int k) { return (k + kChunk - 1) / kChunk * kChunk; }

// Pair P (0..3) of four 16-byte units (eight 16-bit values each) in the MMA's slot order: word t
// is values P and P + 4 of unit t as one bf16x2/fp16x2 (one PRMT). Shared by the in-CTA permute
// and the pre-permuting pass.
__device__ __forceinline__ uint4 slot_pairs(const uint4 (&v)[4], int P) {
  uint32_t w[4];
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const uint32_t lo = P < 2 ? v[t].x : v[t].y, hi = P < 2 ? v[t].z : v[t].w;
    w[t] = __byte_perm(lo, hi, P % 2 == 0 ? 0x5410 : 0x7632);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// Eight packed activations (one word of token row n from value k0 on, swizzled block scales
// a_scale) as eight bf16 values in order: lut[q] * s exactly (at most 6 significant bits, in
// [2^-10, 2688]), so with the weights' alpha the GEMM computes the W4A4 product.
__device__ __forceinline__ uint4 decoded_unit(const uint8_t* a, const uint8_t* a_scale, int n,
                                              int k, int k0) {
  const uint32_t q = *reinterpret_cast<const uint32_t*>(a + static_cast<int64_t>(n) * (k / 2) +
                                                        k0 / 2);
  const uint8_t s = a_scale[swizzled_offset(n, k0 / kBlock, ceil_to(k / kBlock, 4))];
  float v[8];
  dequant::decode_word(q, dequant::scale_half2(s), v);  // lut * s * 2^-14
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] *= 16384.0f;
  uint4 out;
  dequant::store8(reinterpret_cast<__nv_bfloat16*>(&out), v);
  return out;
}

// The pre-permuting pass: one thread per (token n, chunk, word J) item, as permute_staged's
// items but from global memory to global memory: reads units 4t + J (t = 0..3; zeros past K,
// a multiple of 32, so a unit is all in or all out) and writes units 2S + c, S = 2J + h, of
// the chunk (pairs P = 2h + c of the four). Neighbouring J read and write neighbouring 16-byte
// units. Grid: ceil(m * padded_k(k) / 32 / kBlockThreads) blocks of kBlockThreads threads.
// With a_scale (W4A4), `a` holds packed E2M1 activations [m, k/2] that the pass decodes to bf16
// on the way (decoded_unit), so W4A4 costs the GEMM no launch more than W4A16.
template <int kBlockThreads>
__global__ void __launch_bounds__(kBlockThreads) prepermute_kernel(const uint8_t* __restrict__ a,
                                                                   const uint8_t* __restrict__ a_scale,
                                                                   uint8_t* __restrict__ out,
                                                                   int m, int k) {
  const int chunks = padded_k(k) / kChunk;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kBlockThreads + threadIdx.x;
  if (idx >= static_cast<int64_t>(m) * chunks * 4) return;
  const int J = static_cast<int>(idx & 3);
  const int64_t row_chunk = idx >> 2;  // n * chunks + chunk
  const int n = static_cast<int>(row_chunk / chunks), chunk = static_cast<int>(row_chunk % chunks);
  const uint8_t* in = a + (static_cast<int64_t>(n) * k + chunk * kChunk) * 2;
  uint4 v[4];
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const int u = 4 * t + J;
    const int k0 = chunk * kChunk + 8 * u;
    if (k0 >= k) v[t] = make_uint4(0, 0, 0, 0);
    else if (a_scale != nullptr) v[t] = decoded_unit(a, a_scale, n, k, k0);
    else v[t] = *reinterpret_cast<const uint4*>(in + 16 * u);
  }
  uint8_t* o = out + row_chunk * (kChunk * 2);
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int c = 0; c < 2; ++c)
      *reinterpret_cast<uint4*>(o + 16 * (2 * (2 * J + h) + c)) = slot_pairs(v, 2 * h + c);
}

// The wgmma shared-memory matrix descriptor of one step's B block (no swizzle, K-major):
// start address, leading-dimension byte offset (between the two K halves), stride byte offset
// (between 8-token groups), all in 16-byte units; layout type 0 (bits 62-63) = no swizzle.
__device__ __forceinline__ uint64_t b_descriptor(uint32_t smem_addr) {
  constexpr uint64_t kLbo = 128 >> 4, kSbo = 256 >> 4;
  return static_cast<uint64_t>((smem_addr >> 4) & 0x3FFF) | (kLbo << 16) | (kSbo << 32);
}

// ---- staging one K chunk of the activations (all threads of the CTA) ------------------------

// Thread pairs copy the two halves of a 32-byte sector (units 2i, 2i+1); neighbouring pairs
// take neighbouring tokens (a quarter-warp's writes hit at most 2 of a bank group's 16 bytes).
// Copy j of a thread is unit u0 + D (j / R) of token n0 + H (j % R), H = threads / 2: with
// NT <= H a thread keeps its token and walks the units (R = 1, D = 2H / NT), otherwise it
// also walks R = NT / H tokens (D = 2). So a thread keeps R row pointers and one shared-memory
// offset, and everything else is a compile-time offset (no per-copy pointer registers).
// PRE: the source is the pre-permuted copy (rows of whole chunks, no K tail inside a unit).
template <int NT, int kThreads, bool PRE = false>
struct ActCopier {
  static constexpr int H = kThreads / 2;
  static_assert(H % NT == 0 || NT % H == 0, "token tile and thread count: powers of two");
  static constexpr int R = NT > H ? NT / H : 1;
  static constexpr int D = NT > H ? 2 : 2 * H / NT;
  static constexpr int kPer = NT * 16 / kThreads;
  const uint8_t* src[R];  // chunk 0 of unit u0 of token n0 + H r (row clamped to M - 1)
  bool live[R];           // token n0 + H r < M
  uint32_t dst;           // stage offset of copy 0
  int k0;                 // K index of unit u0's first value in chunk 0

  __device__ __forceinline__ void init(const Params& p, int tid) {
    const int n0 = (tid >> 1) % NT, u0 = 2 * ((tid >> 1) / NT) + (tid & 1);
    const int64_t row_bytes = static_cast<int64_t>(PRE ? padded_k(p.k) : p.k) * 2;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int n = n0 + H * r;
      const int64_t rc = n < p.m ? n : p.m - 1;
      src[r] = static_cast<const uint8_t*>(p.a) + rc * row_bytes + u0 * 16;
      live[r] = n < p.m;
    }
    dst = PRE ? prepermuted_unit<NT>(u0, n0) : staged_unit<NT>(u0, n0);
    k0 = u0 * 8;
  }

  __device__ __forceinline__ void issue(uint32_t stage, int chunk, const Params& p,
                                        int /*tid*/) const {
    const int k_left = p.k - chunk * kChunk - k0;  // values of unit u0 onwards in this chunk
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int r = j % R, du = D * (j / R);
      // A pre-permuted unit holds values from the whole chunk: the zero padding stands in for
      // the K check.
      const bool ok = live[r] && (PRE || du * 8 < k_left);
      const uint8_t* from = src[r] + chunk * (kChunk * 2) + du * 16;
      const uint32_t at = PRE ? prepermuted_unit<NT>(du, H * r) : staged_unit<NT>(du, H * r);
      decode_gemm::cp_async16(stage + dst + at, ok ? from : src[r], ok);
    }
  }
};

// The same copies for thread counts that are not a power of two (3 warpgroups): copy j of a
// thread is the pair-interleaved index tid + j * kThreads, (token, unit) = ((i / 2) % NT,
// 2 ((i / 2) / NT) + i % 2), as ActCopier's first copy; tokens and units no longer advance by
// constants, so each of the ceil(NT * 16 / kThreads) copies keeps its own row pointer and stage
// offset (registers, not instructions per chunk).
template <int NT, int kThreads>
struct ActCopierAny {
  static_assert(kThreads % 2 == 0, "thread pairs share a sector");
  static constexpr int kUnits = NT * 16;
  static constexpr int kPer = (kUnits + kThreads - 1) / kThreads;
  const uint8_t* src[kPer];  // chunk 0 of the copy's unit and token (row clamped to M - 1)
  uint32_t dst[kPer];        // stage offset
  int k0[kPer];              // K index of the unit's first value in chunk 0; K if dead token

  __device__ __forceinline__ void init(const Params& p, int tid) {
    const int64_t row_bytes = static_cast<int64_t>(p.k) * 2;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = tid + j * kThreads;
      const int n = (i >> 1) % NT, u = 2 * ((i >> 1) / NT) + (i & 1);
      const bool real = i < kUnits && n < p.m;
      const int64_t rc = n < p.m ? n : p.m - 1;
      src[j] = static_cast<const uint8_t*>(p.a) + rc * row_bytes + (u & 15) * 16;
      dst[j] = staged_unit<NT>(u & 15, n);
      k0[j] = real ? u * 8 : p.k;
    }
  }

  __device__ __forceinline__ void issue(uint32_t stage, int chunk, const Params& p,
                                        int tid) const {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      if (kUnits % kThreads != 0 && tid + j * kThreads >= kUnits) break;  // no such copy
      const bool ok = chunk * kChunk + k0[j] < p.k;
      decode_gemm::cp_async16(stage + dst[j], ok ? src[j] + chunk * (kChunk * 2) : src[j], ok);
    }
  }
};

template <int NT, int kThreads, bool PRE>
using ActCopierFor =
    typename std::conditional<(kThreads & (kThreads - 1)) == 0, ActCopier<NT, kThreads, PRE>,
                              ActCopierAny<NT, kThreads>>::type;

// In-place permute of one staged chunk into the MMA's slot order (see the header): thread item
// (token n, word J) reads units 4t + J (t = 0..3), staged at core rows (2J + t/2, t%2, n), and
// writes core rows (2J + h, c) = pairs 2h + c of the four units.
template <int NT, int kThreads>
__device__ __forceinline__ void permute_staged(uint8_t* act, int tid) {
  constexpr int kItems = NT * 4;
#pragma unroll
  for (int j = 0; j < (kItems + kThreads - 1) / kThreads; ++j) {
    const int idx = tid + j * kThreads;
    if (kItems % kThreads != 0 && idx >= kItems) break;
    const int n = idx % NT, J = idx / NT;
    uint4 v[4];
#pragma unroll
    for (int t = 0; t < 4; ++t)
      v[t] = *reinterpret_cast<const uint4*>(act + core_row<NT>(2 * J + (t >> 1), t & 1, n));
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int c = 0; c < 2; ++c)
        *reinterpret_cast<uint4*>(act + core_row<NT>(2 * J + h, c, n)) =
            slot_pairs(v, 2 * h + c);
  }
}

// ---- the math of one chunk (one warpgroup, its WT x 64 rows x NT tokens) --------------------

// Where one lane reads weights: rows g and g+8 of its warp's 16 in each of the warpgroup's WT
// 64-row tiles (decode_gemm::weight_rows spaces tiles 16 rows apart; here they are 64 apart).
template <int WT>
__device__ __forceinline__ void tile_rows(decode_gemm::WeightRows<WT>& w, const Params& p,
                                            int row0, int lane) {
#pragma unroll
  for (int i = 0; i < WT; ++i) {
    decode_gemm::WeightRows<1> one;
    decode_gemm::weight_rows(one, p, row0 + 64 * i, lane);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      w.q[i][h] = one.q[0][h];
      w.s[i][h] = one.s[0][h];
      w.s_shift[i][h] = one.s_shift[0][h];
    }
  }
}

// k16 step S: decode the warp's A fragments of every tile into register set S % (DEPTH + 1)
// (last read by MMA S - DEPTH - 1, complete since the wait of step S - 1) and issue one MMA per
// tile over the step's B block, which starts S * NT * 32 bytes after step 0's (added to the
// descriptor's 16-byte address field); then wait until at most DEPTH groups are in flight.
// DEPTH + 1 divides 8, so the register sets rotate the same way in every chunk and a group left
// in flight across a chunk boundary (OVERLAP) never has its registers rewritten early.
template <int S, int DEPTH, Act A, int NT, int WT>
__device__ __forceinline__ void mma_step(float (&acc)[WT][NT / 2],
                                         uint32_t (&a)[DEPTH + 1][WT][4],
                                         const decode_gemm::WeightChunk<WT>& w,
                                         const uint32_t (&sc)[WT][2][2], uint64_t desc0) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  constexpr int B = S % (DEPTH + 1);
#pragma unroll
  for (int i = 0; i < WT; ++i) decode_gemm::weight_operand<S, kBf16, WT>(a[B][i], w, i, sc);
  wgmma::wgmma_fence();
#pragma unroll
  for (int i = 0; i < WT; ++i)
    wgmma::Wgmma<NT, kBf16>::mma(acc[i], a[B][i], desc0 + static_cast<uint64_t>(S * NT * 2));
  wgmma::wgmma_commit();
  wgmma::wgmma_wait<DEPTH>();
}

// `after_two()` runs once the first two steps' MMAs are issued (the kernel's copy issue, where
// the shape asks for it: the tensor cores then have work while the copies are being issued).
template <Act A, int NT, int WT, int DEPTH, class AfterTwo>
__device__ __forceinline__ void compute_chunk(float (&acc)[WT][NT / 2],
                                              const decode_gemm::WeightChunk<WT>& w,
                                              uint32_t act_smem, AfterTwo&& after_two) {
  constexpr bool kBf16 = A == Act::kBFloat16;
  uint32_t sc[WT][2][2];
  decode_gemm::chunk_scales(w, kBf16, sc);
  const uint64_t desc0 = b_descriptor(act_smem);
  uint32_t a[DEPTH + 1][WT][4];
  mma_step<0, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<1, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  after_two();
  mma_step<2, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<3, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<4, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<5, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<6, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
  mma_step<7, DEPTH, A, NT, WT>(acc, a, w, sc, desc0);
}

// Grid: (ceil(N / S::kRows), splits), S::kThreads threads, Layout::kSmemBytes of dynamic shared
// memory. With splits > 1, `partials` holds tiles * splits * Layout::kCtaElems floats and
// `arrivals` tiles zeroed ints (the launcher allocates both on the launch stream).
template <Act A, int NT, class S>
__global__ void __launch_bounds__(S::kThreads, 1)
    wgmma_gemm_kernel(const Params p, float* __restrict__ partials, int* __restrict__ arrivals) {
  static_assert(A != Act::kNvfp4, "wgmma GEMM: 16-bit activations only (W4A16)");
  using L = Layout<NT, S>;
  constexpr int kStages = L::kStages, kThreads = S::kThreads, WT = S::WT;
  constexpr int kAcc = NT / 2;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  // This warp's first row: warpgroup warp / 4 owns WT x 64 rows, the warp 16 in each tile.
  const int row0 = blockIdx.x * S::kRows + (warp >> 2) * (64 * WT) + (warp & 3) * 16;
  const int splits = gridDim.y, split = blockIdx.y;
  const int chunks = (p.k + kChunk - 1) / kChunk;
  const int c_begin = static_cast<int>(static_cast<int64_t>(split) * chunks / splits);
  const int c_end = static_cast<int>(static_cast<int64_t>(split + 1) * chunks / splits);

  float acc[WT][kAcc];
#pragma unroll
  for (int i = 0; i < WT; ++i)
#pragma unroll
    for (int e = 0; e < kAcc; ++e) acc[i][e] = 0.0f;

  decode_gemm::WeightRows<WT> rows;
  tile_rows(rows, p, row0, lane);
  decode_gemm::WeightCursor<WT> wc;
  decode_gemm::weight_cursor<1>(wc, rows, p, c_begin, lane);  // one chunk per step
  static_assert(!S::PREPERMUTED || (kThreads & (kThreads - 1)) == 0,
                "wgmma GEMM: pre-permuted activations with a power-of-two thread count");
  ActCopierFor<NT, kThreads, S::PREPERMUTED> copier;
  copier.init(p, tid);

  const uint32_t smem_s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  constexpr uint32_t kScales = WT * 2 * 32 * 16;
  const uint32_t lane_slot = L::kActBytes + warp * S::kWeightSlotBytes;

  auto issue = [&](int chunk, int stage) {
    const uint32_t base = smem_s + stage * L::kStageBytes;
    decode_gemm::issue_weights<1>(wc, base + lane_slot + 16 * lane,
                                  base + lane_slot + kScales + 4 * lane, p);
    copier.issue(base, chunk, p, tid);
  };
  // Chunks copied ahead of the one computed: kStages - 1, or kStages - 2 when the stage of the
  // previous chunk is still being read by its last MMAs (OVERLAP).
  constexpr bool kOverlap = S::OVERLAP && kStages >= 4;
  constexpr int kAhead = kOverlap ? kStages - 2 : kStages - 1;
  // DEPTH > 1: the chunk's weight slot is read before the refill's copies are issued, and
  // without OVERLAP also the chunk's first two MMAs.
  constexpr bool kMmaFirst = S::DEPTH > 1;
  constexpr bool kPre = S::PREPERMUTED;
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (c_begin + s < c_end) issue(c_begin + s, s);
    decode_gemm::cp_async_commit();
  }
  if constexpr (!kPre) {
    decode_gemm::cp_async_wait<kAhead - 1>();  // chunk c_begin
    __syncthreads();
    permute_staged<NT, kThreads>(smem, tid);
    wgmma::fence_proxy_async_shared();
  }
  int stage = 0;
#pragma unroll 1
  for (int c = c_begin; c < c_end; ++c) {
    // This thread's copies of chunk c + 1 have landed; the barrier publishes everyone's, and the
    // permuted chunk c. It also frees a stage: without OVERLAP every warpgroup waited for all
    // its MMAs before reaching it, so chunk c - 1's stage is refilled; with OVERLAP each waited
    // for all but its last DEPTH groups (all of chunk c - 1), so chunk c - 2's stage is.
    // Pre-permuted: this thread's copies of chunk c itself have landed; its proxy fence and the
    // barrier hand everyone's to the MMAs.
    if constexpr (kPre) {
      decode_gemm::cp_async_wait<kAhead - 1>();
      wgmma::fence_proxy_async_shared();
    } else {
      decode_gemm::cp_async_wait<kAhead - 2>();
    }
    __syncthreads();
    const uint8_t* st = smem + stage * L::kStageBytes;
    decode_gemm::WeightChunk<WT> w;
    auto refill = [&] {
      const int back = kOverlap ? 2 : 1;  // the stage of chunk c - back, i.e. of c + kAhead
      const int into = stage - back < 0 ? stage - back + kStages : stage - back;
      if (c + kAhead < c_end) issue(c + kAhead, into);
      decode_gemm::cp_async_commit();
    };
    if constexpr (kMmaFirst && !kOverlap) {
      decode_gemm::read_slot(w, st + lane_slot + 16 * lane, st + lane_slot + kScales + 4 * lane,
                             rows);
      compute_chunk<A, NT, WT, S::DEPTH>(acc, w, smem_s + stage * L::kStageBytes, refill);
    } else if constexpr (kMmaFirst) {
      // The previous chunk's last MMAs keep the tensor cores busy during the copy issue. (The
      // copy issue between this chunk's MMAs makes ptxas serialize them here: C7513.)
      decode_gemm::read_slot(w, st + lane_slot + 16 * lane, st + lane_slot + kScales + 4 * lane,
                             rows);
      refill();
      compute_chunk<A, NT, WT, S::DEPTH>(acc, w, smem_s + stage * L::kStageBytes, [] {});
    } else {
      refill();
      decode_gemm::read_slot(w, st + lane_slot + 16 * lane, st + lane_slot + kScales + 4 * lane,
                             rows);
      compute_chunk<A, NT, WT, S::DEPTH>(acc, w, smem_s + stage * L::kStageBytes, [] {});
    }
    // While the last MMAs run: chunk c + 1's raw copy (complete and published above; nobody
    // reads that stage before the next barrier) is permuted into the MMA's slot order.
    const int next = stage + 1 == kStages ? 0 : stage + 1;
    if constexpr (!kPre) {
      if (c + 1 < c_end) permute_staged<NT, kThreads>(smem + next * L::kStageBytes, tid);
      wgmma::fence_proxy_async_shared();
    }
    if constexpr (!kOverlap) wgmma::wgmma_wait<0>();
    stage = next;
  }
  wgmma::wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < WT; ++i) wgmma::fence_accumulators(acc[i]);
  decode_gemm::cp_async_wait<0>();

  if (splits > 1) {
    // Publish this split's partial sums; the last CTA of the row tile to arrive adds all of
    // them in split order (the same order whichever CTA that is).
    __shared__ int is_last;
    float* mine =
        partials + (static_cast<int64_t>(blockIdx.x) * splits + split) * L::kCtaElems + tid;
#pragma unroll
    for (int i = 0; i < WT; ++i)
#pragma unroll
      for (int e = 0; e < kAcc; ++e) __stcg(mine + (i * kAcc + e) * kThreads, acc[i][e]);
    __threadfence();
    __syncthreads();
    if (tid == 0) is_last = atomicAdd(arrivals + blockIdx.x, 1) == splits - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const float* tile =
        partials + static_cast<int64_t>(blockIdx.x) * splits * L::kCtaElems + tid;
#pragma unroll
    for (int i = 0; i < WT; ++i)
#pragma unroll
      for (int e = 0; e < kAcc; ++e) acc[i][e] = 0.0f;
#pragma unroll 1
    for (int s = 0; s < splits; ++s) {
      const float* part = tile + static_cast<int64_t>(s) * L::kCtaElems;
#pragma unroll
      for (int i = 0; i < WT; ++i)
#pragma unroll
        for (int e = 0; e < kAcc; ++e) acc[i][e] += __ldcg(part + (i * kAcc + e) * kThreads);
    }
  }

  // Epilogue: accumulator d[4j + e] of tile i is weight row 64 i + g + 8 (e >> 1) (from the
  // warp's first row), token 8j + 2t + (e & 1).
#pragma unroll
  for (int i = 0; i < WT; ++i) {
    float alpha[2], bias[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = min(row0 + 64 * i + g + 8 * h, p.n - 1);
      alpha[h] = p.alpha[p.alpha_per_row ? r : 0];
      bias[h] = decode_gemm::load_bias(p, r);
    }
#pragma unroll
    for (int e4 = 0; e4 < kAcc; ++e4) {
      const int e = e4 & 3, j = e4 >> 2;
      const int r = row0 + 64 * i + g + 8 * (e >> 1);
      const int tok = j * 8 + 2 * t + (e & 1);
      if (r >= p.n || tok >= p.m) continue;
      const float v = acc[i][e4] * decode_gemm::unfold<A>() * alpha[e >> 1] + bias[e >> 1];
      const int64_t o = static_cast<int64_t>(tok) * p.n + r;
      if (p.out_bf16)
        static_cast<__nv_bfloat16*>(p.out)[o] = __float2bfloat16_rn(v);
      else
        static_cast<__half*>(p.out)[o] = __float2half_rn(v);
    }
  }
}

}  // namespace nvfp4::wgmma_gemm
