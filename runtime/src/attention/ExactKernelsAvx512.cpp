//===- ExactKernelsAvx512.cpp - exact attention kernels, AVX-512 ---------===//
//
// Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl; selected at run
// time. Uses no std templates or shared inline functions (see the header).
//
//===----------------------------------------------------------------------===//
#include "attention/ExactKernels.h"

#include <immintrin.h>

namespace incnn::runtime::exact::detail {
namespace {

struct T {
  static constexpr int W = 16, D = 8;
  static constexpr int kR = 8, kNV = 2, kRA = 4, kNC = 4, kNV1 = 8;
  using VF = __m512;
  using VD = __m512d;
  using VI = __m512i;
  using MF = __mmask16;
  static VF zero() { return _mm512_setzero_ps(); }
  static VF set1(float x) { return _mm512_set1_ps(x); }
  static VF load(const float *p) { return _mm512_loadu_ps(p); }
  static VF fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
  static VF add(VF a, VF b) { return _mm512_add_ps(a, b); }
  static VF sub(VF a, VF b) { return _mm512_sub_ps(a, b); }
  static VF mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
  static VF min(VF a, VF b) { return _mm512_min_ps(a, b); }
  static VF max(VF a, VF b) { return _mm512_max_ps(a, b); }
  static VF floor(VF a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static VF roundNearest(VF a) {
    return _mm512_roundscale_ps(a,
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static VF pow2(VF k) {
    __m512i e =
        _mm512_add_epi32(_mm512_cvttps_epi32(k), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static VF select(MF m, VF a, VF b) { return _mm512_mask_blend_ps(m, b, a); }
  static MF nge(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_NGE_UQ); }
  static MF gt(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static MF outside(VF x, VF limit) {
    return _mm512_cmp_ps_mask(_mm512_abs_ps(x), limit, _CMP_NLE_UQ);
  }
  static MF below(int64_t m) {
    return m >= 16 ? MF(0xffff) : m <= 0 ? MF(0) : MF((1u << m) - 1);
  }
  static MF none() { return 0; }
  static MF orM(MF a, MF b) { return MF(a | b); }
  static MF andM(MF a, MF b) { return MF(a & b); }
  static MF andNotM(MF a, MF b) { return MF(a & ~b); }
  static bool any(MF m) { return m != 0; }
  static int count(MF m) { return __builtin_popcount(unsigned(m)); }
  static VF maxMasked(VF acc, MF m, VF x) {
    return _mm512_mask_max_ps(acc, m, acc, x);
  }
  static float hmax(VF x) {
    alignas(64) float l[16];
    _mm512_store_ps(l, x);
    float m = l[0];
    for (int i = 1; i < 16; ++i)
      m = l[i] > m ? l[i] : m;
    return m;
  }
  using VN = __m512i; // int32 lanes
  static VN zeroN() { return _mm512_setzero_si512(); }
  static VN addRoundedN(VN a, VF p) {
    return _mm512_add_epi32(a, _mm512_cvtps_epi32(p)); // nearest, ties even
  }
  static VN countN(VN a, MF m) {
    return _mm512_mask_sub_epi32(a, m, a, _mm512_set1_epi32(-1));
  }
  static int64_t hsumN(VN x) {
    alignas(64) int32_t l[16];
    _mm512_store_si512(l, x);
    int64_t s = 0;
    for (int32_t e : l)
      s += e;
    return s;
  }
  static VD set1D(double x) { return _mm512_set1_pd(x); }
  static VD loadD(const double *p) { return _mm512_loadu_pd(p); }
  static VD loadFD(const float *p) {
    return _mm512_cvtps_pd(_mm256_loadu_ps(p));
  }
  static VD fmaD(VD a, VD b, VD c) { return _mm512_fmadd_pd(a, b, c); }
  static VI zeroI() { return _mm512_setzero_si512(); }
  static VI addI(VI a, VI b) { return _mm512_add_epi64(a, b); }
  static VI castI(VD a) { return _mm512_castpd_si512(a); }
  static VI loadI(const uint64_t *p) { return _mm512_loadu_si512(p); }
  static void storeI(uint64_t *p, VI x) { _mm512_storeu_si512(p, x); }
  static void storeWidened(double *dst, VF x) {
    _mm512_storeu_pd(dst, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    _mm512_storeu_pd(dst + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)));
  }
};

#include "attention/ExactKernels.inc"

} // namespace

const KernelTable kAvx512Kernels = {"avx512", &runJob};

} // namespace incnn::runtime::exact::detail
