//===- ExactKernelsAvx512.cpp - exact attention kernels, AVX-512 ---------===//
//
// Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl; selected at run
// time. Uses no std templates or shared inline functions (see the header;
// Simd.h has internal linkage).
//
//===----------------------------------------------------------------------===//
#include "Simd.h"
#include "attention/ExactKernels.h"

namespace incnn::runtime::exact::detail {
namespace {

/// Simd.h's AVX-512 lanes and this ISA's blocking (see ExactKernelsAvx2.cpp).
struct T : simd::Avx512 {
  static constexpr int kR = 8, kNV = 2, kRA = 4, kNC = 4, kNV1 = 8;
  /// finishHeads' columns in whole vectors: vcvtqq2pd rounds every int64
  /// as the scalar conversion does. Returns the columns done.
  static int64_t finishColumns(const int64_t *numer, int64_t hd, double inv,
                               float *out) {
    const __m512d scale = _mm512_set1_pd(inv);
    int64_t c = 0;
    for (; c + 8 <= hd; c += 8)
      _mm256_storeu_ps(
          out + c,
          _mm512_cvtpd_ps(_mm512_mul_pd(
              _mm512_cvtepi64_pd(_mm512_loadu_si512(numer + c)), scale)));
    return c;
  }
};

#include "attention/ExactKernels.inc"

/// 8 rows' scores for up to kLaneTerms * N terms (N groups of lanes
/// interleaved to cover the FMA latency), transposed to one vector of rows
/// per term.
template <int N>
void termGroups(const float *qT, const float *kT, int64_t ldk, int64_t hd,
                float *scores, int64_t stride) {
  __m512 acc[N][8];
  for (int g = 0; g < N; ++g)
    for (int l = 0; l < 8; ++l)
      acc[g][l] = _mm512_setzero_ps();
  for (int64_t c = 0; c < hd; ++c) {
    __m512 k[N];
    for (int g = 0; g < N; ++g)
      k[g] = _mm512_loadu_ps(kT + c * ldk + g * kLaneTerms);
    for (int l = 0; l < 8; ++l) {
      __m512 q = _mm512_set1_ps(qT[c * 8 + l]);
      for (int g = 0; g < N; ++g)
        acc[g][l] = _mm512_fmadd_ps(k[g], q, acc[g][l]);
    }
  }
  // Rows x terms to terms x rows, within each 128-bit lane (terms 4q..4q+3)
  // first, as an 8 x 8 transpose does: then r[k] holds rows 0-3 of term
  // 4q + k in lane q, r[k + 4] rows 4-7.
  const __m512i pairLow = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6,
                                            7, 20, 21, 22, 23),
                pairHigh = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12,
                                             13, 14, 15, 28, 29, 30, 31);
  for (int g = 0; g < N; ++g) {
    __m512 t[8], r[8];
    for (int l = 0; l < 8; l += 2) {
      t[l] = _mm512_unpacklo_ps(acc[g][l], acc[g][l + 1]);
      t[l + 1] = _mm512_unpackhi_ps(acc[g][l], acc[g][l + 1]);
    }
    for (int l = 0; l < 8; l += 4) {
      r[l] = _mm512_shuffle_ps(t[l], t[l + 2], 0x44);
      r[l + 1] = _mm512_shuffle_ps(t[l], t[l + 2], 0xee);
      r[l + 2] = _mm512_shuffle_ps(t[l + 1], t[l + 3], 0x44);
      r[l + 3] = _mm512_shuffle_ps(t[l + 1], t[l + 3], 0xee);
    }
    float *out = scores + g * kLaneTerms * stride;
    for (int k = 0; k < 4; ++k) {
      __m512 low = _mm512_permutex2var_ps(r[k], pairLow, r[k + 4]),
             high = _mm512_permutex2var_ps(r[k], pairHigh, r[k + 4]);
      _mm256_storeu_ps(out + k * stride, _mm512_castps512_ps256(low));
      _mm256_storeu_ps(out + (4 + k) * stride, _mm512_extractf32x8_ps(low, 1));
      _mm256_storeu_ps(out + (8 + k) * stride, _mm512_castps512_ps256(high));
      _mm256_storeu_ps(out + (12 + k) * stride,
                       _mm512_extractf32x8_ps(high, 1));
    }
  }
}

} // namespace

void blockTermScoresAvx512(const float *qT, const float *kT, int64_t ldk,
                           int64_t numTerms, int64_t hd, float *scores,
                           int64_t stride) {
  int64_t t = 0;
  for (; t + 2 * kLaneTerms <= numTerms; t += 2 * kLaneTerms)
    termGroups<2>(qT, kT + t, ldk, hd, scores + t * stride, stride);
  for (; t + kLaneTerms <= numTerms; t += kLaneTerms)
    termGroups<1>(qT, kT + t, ldk, hd, scores + t * stride, stride);
}

const KernelTable kAvx512Kernels =
    tableOf("avx512", &linearPanelPairAvx512, &blockTermScoresAvx512);

} // namespace incnn::runtime::exact::detail
