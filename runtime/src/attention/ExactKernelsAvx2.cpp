//===- ExactKernelsAvx2.cpp - exact attention kernels, baseline ISA ------===//
//
// AVX2+FMA when the build targets it, otherwise one-lane scalar code running
// the same IEEE operations.
//
//===----------------------------------------------------------------------===//
#include "attention/ExactKernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define INCNN_EXACT_BASE_AVX2 1
#endif

namespace incnn::runtime::exact::detail {
namespace {

#ifdef INCNN_EXACT_BASE_AVX2
struct T {
  static constexpr int W = 8, D = 4;
  static constexpr int kR = 8, kNV = 1, kRA = 2, kNC = 4, kNV1 = 8;
  using VF = __m256;
  using VD = __m256d;
  using VI = __m256i;
  using MF = __m256;
  static VF zero() { return _mm256_setzero_ps(); }
  static VF set1(float x) { return _mm256_set1_ps(x); }
  static VF load(const float *p) { return _mm256_loadu_ps(p); }
  static VF fma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
  static VF add(VF a, VF b) { return _mm256_add_ps(a, b); }
  static VF sub(VF a, VF b) { return _mm256_sub_ps(a, b); }
  static VF mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
  static VF min(VF a, VF b) { return _mm256_min_ps(a, b); }
  static VF max(VF a, VF b) { return _mm256_max_ps(a, b); }
  static VF floor(VF a) { return _mm256_floor_ps(a); }
  static VF roundNearest(VF a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static VF pow2(VF k) {
    __m256i e =
        _mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static VF select(MF m, VF a, VF b) { return _mm256_blendv_ps(b, a, m); }
  static MF nge(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_NGE_UQ); }
  static MF gt(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static MF outside(VF x, VF limit) {
    const VF absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    return _mm256_cmp_ps(_mm256_and_ps(x, absMask), limit, _CMP_NLE_UQ);
  }
  static MF below(int64_t m) {
    int32_t c = m >= 8 ? 8 : m <= 0 ? 0 : int32_t(m);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c), lanes));
  }
  static MF none() { return _mm256_setzero_ps(); }
  static MF orM(MF a, MF b) { return _mm256_or_ps(a, b); }
  static MF andM(MF a, MF b) { return _mm256_and_ps(a, b); }
  static MF andNotM(MF a, MF b) { return _mm256_andnot_ps(b, a); } // a & ~b
  static bool any(MF m) { return _mm256_movemask_ps(m) != 0; }
  static int count(MF m) { return __builtin_popcount(_mm256_movemask_ps(m)); }
  static VF maxMasked(VF acc, MF m, VF x) {
    return _mm256_blendv_ps(acc, _mm256_max_ps(acc, x), m);
  }
  static float hmax(VF x) {
    alignas(32) float l[8];
    _mm256_store_ps(l, x);
    float m = l[0];
    for (int i = 1; i < 8; ++i)
      m = l[i] > m ? l[i] : m;
    return m;
  }
  using VN = __m256i; // int32 lanes
  static VN zeroN() { return _mm256_setzero_si256(); }
  static VN addRoundedN(VN a, VF p) {
    return _mm256_add_epi32(a, _mm256_cvtps_epi32(p)); // nearest, ties even
  }
  static VN countN(VN a, MF m) {
    return _mm256_sub_epi32(a, _mm256_castps_si256(m));
  }
  static int64_t hsumN(VN x) {
    alignas(32) int32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i *>(l), x);
    int64_t s = 0;
    for (int32_t e : l)
      s += e;
    return s;
  }
  static VD set1D(double x) { return _mm256_set1_pd(x); }
  static VD loadD(const double *p) { return _mm256_loadu_pd(p); }
  static VD loadFD(const float *p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static VD fmaD(VD a, VD b, VD c) { return _mm256_fmadd_pd(a, b, c); }
  static VI zeroI() { return _mm256_setzero_si256(); }
  static VI addI(VI a, VI b) { return _mm256_add_epi64(a, b); }
  static VI castI(VD a) { return _mm256_castpd_si256(a); }
  static VI loadI(const uint64_t *p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
  }
  static void storeI(uint64_t *p, VI x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(p), x);
  }
  static void storeWidened(double *dst, VF x) {
    _mm256_storeu_pd(dst, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    _mm256_storeu_pd(dst + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
  }
};
#else
/// One lane: the same operations, scalar.
struct T {
  static constexpr int W = 1, D = 1;
  static constexpr int kR = 4, kNV = 2, kRA = 2, kNC = 4, kNV1 = 8;
  using VF = float;
  using VD = double;
  using VI = uint64_t;
  using MF = bool;
  static VF zero() { return 0.0f; }
  static VF set1(float x) { return x; }
  static VF load(const float *p) { return *p; }
  static VF fma(VF a, VF b, VF c) { return __builtin_fmaf(a, b, c); }
  static VF add(VF a, VF b) { return a + b; }
  static VF sub(VF a, VF b) { return a - b; }
  static VF mul(VF a, VF b) { return a * b; }
  static VF min(VF a, VF b) { return a < b ? a : b; } // as minps
  static VF max(VF a, VF b) { return a > b ? a : b; } // as maxps
  static VF floor(VF a) { return __builtin_floorf(a); }
  static VF roundNearest(VF a) { return __builtin_nearbyintf(a); }
  static VF pow2(VF k) {
    uint32_t bits = uint32_t(int32_t(k) + 127) << 23;
    float r;
    __builtin_memcpy(&r, &bits, 4);
    return r;
  }
  static VF select(MF m, VF a, VF b) { return m ? a : b; }
  static MF nge(VF a, VF b) { return !(a >= b); }
  static MF gt(VF a, VF b) { return a > b; }
  static MF outside(VF x, VF limit) { return !(__builtin_fabsf(x) <= limit); }
  static MF below(int64_t m) { return m > 0; }
  static MF none() { return false; }
  static MF orM(MF a, MF b) { return a || b; }
  static MF andM(MF a, MF b) { return a && b; }
  static MF andNotM(MF a, MF b) { return a && !b; }
  static bool any(MF m) { return m; }
  static int count(MF m) { return m ? 1 : 0; }
  static VF maxMasked(VF acc, MF m, VF x) { return m && x > acc ? x : acc; }
  static float hmax(VF x) { return x; }
  using VN = int64_t;
  static VN zeroN() { return 0; }
  static VN addRoundedN(VN a, VF p) {
    return a + int64_t(__builtin_nearbyintf(p));
  }
  static VN countN(VN a, MF m) { return a + (m ? 1 : 0); }
  static int64_t hsumN(VN x) { return x; }
  static VD set1D(double x) { return x; }
  static VD loadD(const double *p) { return *p; }
  static VD loadFD(const float *p) { return double(*p); }
  static VD fmaD(VD a, VD b, VD c) { return __builtin_fma(a, b, c); }
  static VI zeroI() { return 0; }
  static VI addI(VI a, VI b) { return a + b; }
  static VI castI(VD a) {
    uint64_t bits;
    __builtin_memcpy(&bits, &a, 8);
    return bits;
  }
  static VI loadI(const uint64_t *p) { return *p; }
  static void storeI(uint64_t *p, VI x) { *p = x; }
  static void storeWidened(double *dst, VF x) { *dst = double(x); }
};
#endif

#include "attention/ExactKernels.inc"

} // namespace

#ifdef INCNN_EXACT_BASE_AVX2
const KernelTable kBaseKernels = {"avx2", &runJob};
#else
const KernelTable kBaseKernels = {"scalar", &runJob};
#endif

} // namespace incnn::runtime::exact::detail
