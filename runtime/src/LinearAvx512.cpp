//===- LinearAvx512.cpp - linear layers' 32-column tile, AVX-512 ---------===//
//
// Compiled with -mavx512f; selected at run time through the kernel table
// (attention/ExactKernels.h). Intrinsics only (see Simd.h on why).
//
//===----------------------------------------------------------------------===//
#include "attention/ExactKernels.h"

#include <immintrin.h>

namespace incnn::runtime::exact::detail {
namespace {

constexpr int64_t kRowStride = 6; // rows of a packed A block

template <int MR>
void panelPair(int64_t kc, const float *__restrict ap,
               const float *__restrict bp, int64_t panelStride, float *c,
               int64_t ldc, bool accumulate, const float *bias,
               const float *next, int64_t nextLines) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    acc0[r] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    acc1[r] =
        accumulate ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
  }
  const float *bq = bp + panelStride;
  // One line of each of the next pair's panels every `every` k steps, so the
  // prefetches spread over the whole tile instead of bursting.
  const int64_t every = nextLines > 0 ? (kc + nextLines - 1) / nextLines : kc;
  int64_t untilPrefetch = 0, line = 0;
  for (int64_t k = 0; k < kc; ++k) {
    if (--untilPrefetch < 0 && line < nextLines) {
      _mm_prefetch(reinterpret_cast<const char *>(next + 16 * line),
                   _MM_HINT_T0);
      _mm_prefetch(
          reinterpret_cast<const char *>(next + panelStride + 16 * line),
          _MM_HINT_T0);
      ++line;
      untilPrefetch = every - 1;
    }
    __m512 b0 = _mm512_loadu_ps(bp + 16 * k), b1 = _mm512_loadu_ps(bq + 16 * k);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      __m512 a = _mm512_set1_ps(ap[r]);
      acc0[r] = _mm512_fmadd_ps(a, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(a, b1, acc1[r]);
    }
    ap += kRowStride;
  }
  if (bias) {
    __m512 c0 = _mm512_loadu_ps(bias), c1 = _mm512_loadu_ps(bias + 16);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      acc0[r] = _mm512_add_ps(acc0[r], c0);
      acc1[r] = _mm512_add_ps(acc1[r], c1);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc0[r]);
    _mm512_storeu_ps(c + r * ldc + 16, acc1[r]);
  }
}

using PanelPairFn = void (*)(int64_t, const float *, const float *, int64_t,
                             float *, int64_t, bool, const float *,
                             const float *, int64_t);
constexpr PanelPairFn kPanelPairs[kRowStride + 1] = {
    nullptr,      panelPair<1>, panelPair<2>, panelPair<3>,
    panelPair<4>, panelPair<5>, panelPair<6>};

} // namespace

void linearPanelPairAvx512(int64_t kc, int64_t mr, const float *ap,
                           const float *bp, int64_t panelStride, float *c,
                           int64_t ldc, bool accumulate, const float *bias,
                           const float *next, int64_t nextLines) {
  kPanelPairs[mr](kc, ap, bp, panelStride, c, ldc, accumulate, bias, next,
                  nextLines);
}

} // namespace incnn::runtime::exact::detail
