// Host-side check of csrc/include/nvfp4/e2m1_encode.h (the quantize kernel's E2M1 encode), built
// with the host C++ compiler by tests/csrc/test_e2m1_encode.py.
//
//   e2m1_encode_check exhaustive   every float32 with 1/8 <= |q| < 8 (all the rounding
//                                  boundaries and the saturation), a stride of all other
//                                  non-NaN floats, packed words of random values, and the
//                                  sign gathers on random raw input words
//   e2m1_encode_check codes        float32 values on stdin -> one code byte each on stdout
//                                  (the test compares those with nvfp4_kernels.reference)
//
// The expected code in `exhaustive` is the reference's rule written out: clamp to [-6, 6], count
// the rounding boundaries (a tie rounds to the even code), bit 3 = value < 0.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "nvfp4/e2m1_encode.h"

namespace {

uint32_t reference_code(float q) {
  const float v = std::fmin(std::fmax(q, -6.0f), 6.0f);
  const float a = std::fabs(v);
  const uint32_t code = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                        (a >= 3.5f) + (a > 5.0f);
  return code | (v < 0.0f ? 8u : 0u);
}

uint32_t fast_code(float q) { return nvfp4::e2m1_magnitude(q) | (q < 0.0f ? 8u : 0u); }

// Sign bits at 4i+3, the reference's (q < 0) test; the kernel takes them from its inputs.
uint32_t sign_bits(const float (&q)[8]) {
  uint32_t signs = 0u;
  for (int i = 0; i < 8; ++i) signs |= (q[i] < 0.0f ? 8u : 0u) << (4 * i);
  return signs;
}

int fail(const char* what, float q, uint32_t got, uint32_t want) {
  std::printf("MISMATCH %s: q = %a (bits %08x): got %08x, want %08x\n", what, q,
              nvfp4::float_bits(q), got, want);
  return 1;
}

int mismatch(const char* what, float q) {
  return fail(what, q, fast_code(q), reference_code(q));
}

int exhaustive() {
  uint64_t checked = 0;
  // Every float in [1/8, 8), both signs for the first binade and the one holding 6 and 5.
  for (uint32_t u = nvfp4::float_bits(0.125f); u < nvfp4::float_bits(8.0f); ++u) {
    const float q = nvfp4::bits_float(u);
    if (fast_code(q) != reference_code(q)) return mismatch("magnitude", q);
    ++checked;
  }
  for (uint32_t u = nvfp4::float_bits(4.0f); u < nvfp4::float_bits(8.0f); ++u) {
    const float q = -nvfp4::bits_float(u);
    if (fast_code(q) != reference_code(q)) return mismatch("negative", q);
    ++checked;
  }
  // All other non-NaN floats, by a stride that is prime to every power of two (so every
  // exponent and many mantissa patterns are visited), plus the extremes.
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
    const float q = nvfp4::bits_float(static_cast<uint32_t>(u));
    if (std::isnan(q)) continue;
    if (fast_code(q) != reference_code(q)) return mismatch("stride", q);
    ++checked;
  }
  const float extremes[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1.17549435e-38f, 3.40282347e38f,
                            -3.40282347e38f, INFINITY, -INFINITY};
  for (float q : extremes)
    if (fast_code(q) != reference_code(q)) return mismatch("extreme", q);

  // Packed words: values drawn from the E2M1 grid, its ties, one float either side of them, and
  // random magnitudes, with random signs; the word must equal the eight codes packed.
  std::mt19937 rng(12345);
  std::vector<float> pool;
  for (float g : {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 0.25f, 0.75f, 1.25f, 1.75f,
                  2.5f, 3.5f, 5.0f, 7.0f, 1e30f, INFINITY}) {
    pool.push_back(g);
    pool.push_back(std::nextafter(g, 0.0f));
    pool.push_back(std::nextafter(g, INFINITY));
  }
  std::uniform_real_distribution<float> uniform(0.0f, 7.0f);
  for (int n = 0; n < 2000000; ++n) {
    float q[8];
    uint32_t want = 0u;
    for (int i = 0; i < 8; ++i) {
      const uint32_t r = rng();
      const float mag = (r & 1u) ? uniform(rng) : pool[(r >> 1) % pool.size()];
      q[i] = (r & 0x100u) ? -mag : mag;
      want |= reference_code(q[i]) << (4 * i);
    }
    const uint32_t got = nvfp4::e2m1x8_magnitudes(q) + sign_bits(q);
    if (got != want) return fail("packed word (first value shown)", q[0], got, want);
    checked += 8;
  }
  // Sign gathers from raw input words: 16-bit halves (bf16/fp16 pairs) and float32 words; bit
  // 4i+3 of the result must be the sign bit of input i.
  for (int n = 0; n < 200000; ++n) {
    uint32_t halves[4], floats[8], want_halves = 0u, want_floats = 0u;
    for (int j = 0; j < 4; ++j) {
      halves[j] = rng();
      want_halves |= ((halves[j] >> 15) & 1u) << (8 * j + 3);
      want_halves |= (halves[j] >> 31) << (8 * j + 7);
    }
    for (int i = 0; i < 8; ++i) {
      floats[i] = rng();
      want_floats |= (floats[i] >> 31) << (4 * i + 3);
    }
    if (nvfp4::sign_bits_of_halves(halves) != want_halves)
      return fail("sign_bits_of_halves", 0.0f, nvfp4::sign_bits_of_halves(halves), want_halves);
    if (nvfp4::sign_bits_of_floats(floats) != want_floats)
      return fail("sign_bits_of_floats", 0.0f, nvfp4::sign_bits_of_floats(floats), want_floats);
  }
  std::printf("OK %llu values\n", static_cast<unsigned long long>(checked));
  return 0;
}

int codes() {
  float q;
  while (std::fread(&q, sizeof q, 1, stdin) == 1) {
    const unsigned char c = static_cast<unsigned char>(fast_code(q));
    std::fwrite(&c, 1, 1, stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "exhaustive") == 0) return exhaustive();
  if (argc == 2 && std::strcmp(argv[1], "codes") == 0) return codes();
  std::fprintf(stderr, "usage: %s exhaustive|codes\n", argv[0]);
  return 2;
}
