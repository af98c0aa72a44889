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

} // namespace

const KernelTable kAvx512Kernels = tableOf("avx512", &linearPanelPairAvx512);

} // namespace incnn::runtime::exact::detail
