//===- ExactKernelsAvx2.cpp - exact attention kernels, baseline ISA ------===//
//
// AVX2+FMA when the build targets it, otherwise one-lane scalar code running
// the same IEEE operations (Simd.h's traits).
//
//===----------------------------------------------------------------------===//
#include "Simd.h"
#include "attention/ExactKernels.h"

namespace incnn::runtime::exact::detail {
namespace {

/// The lanes of Simd.h and this ISA's blocking: kR rows per group and kNV
/// key vectors per block (kNV1 for one row), kRA rows and kNC column vectors
/// per accumulation block.
#ifdef INCNN_SIMD_AVX2
struct T : simd::Avx2 {
  static constexpr int kR = 8, kNV = 1, kRA = 2, kNC = 4, kNV1 = 8;
  /// finishHeads' columns in whole vectors while |numer| < 2^51, which
  /// converts exactly through the bits of x + 1.5 * 2^52 (the same double
  /// as the scalar conversion). Returns the columns done.
  static int64_t finishColumns(const int64_t *numer, int64_t hd, double inv,
                               float *out) {
    const __m256i lo = _mm256_set1_epi64x(-(int64_t(1) << 51)),
                  hi = _mm256_set1_epi64x(int64_t(1) << 51),
                  magicBits = _mm256_set1_epi64x(int64_t(kRoundMagicBits));
    const __m256d magic = _mm256_set1_pd(kRoundMagic),
                  scale = _mm256_set1_pd(inv);
    int64_t c = 0;
    for (; c + 4 <= hd; c += 4) {
      __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i *>(numer + c));
      __m256i outside =
          _mm256_or_si256(_mm256_cmpgt_epi64(lo, x), _mm256_cmpgt_epi64(x, hi));
      if (!_mm256_testz_si256(outside, outside))
        break; // the scalar loop takes the rest
      __m256d d = _mm256_sub_pd(
          _mm256_castsi256_pd(_mm256_add_epi64(x, magicBits)), magic);
      _mm_storeu_ps(out + c, _mm256_cvtpd_ps(_mm256_mul_pd(d, scale)));
    }
    return c;
  }
};
#else
struct T : simd::Scalar {
  static constexpr int kR = 4, kNV = 2, kRA = 2, kNC = 4, kNV1 = 8;
  static int64_t finishColumns(const int64_t *, int64_t, double, float *) {
    return 0; // finishHeads' scalar loop takes every column
  }
};
#endif

#include "attention/ExactKernels.inc"

} // namespace

#ifdef INCNN_SIMD_AVX2
const KernelTable kBaseKernels = tableOf("avx2", nullptr, nullptr);
#else
const KernelTable kBaseKernels = tableOf("scalar", nullptr, nullptr);
#endif

} // namespace incnn::runtime::exact::detail
