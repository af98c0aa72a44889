//===- Simd.h - the runtime's one SIMD layer and its exp ---------*- C++
//-*-===//
//
// Lane traits: one struct per instruction set with the same static members
// (vector types VF/VD/VI, masks MF, int32 lane counters VN, and the
// operations on them), so that one kernel source instantiates for each:
//
//   Avx2      8 float lanes, AVX2 + FMA     (the baseline build)
//   Avx512   16 float lanes, AVX-512 F/DQ/BW/VL (its own translation unit,
//            chosen at run time)
//   Portable8 8 float lanes in plain C++, for Kernels.cpp without AVX2
//   Scalar    1 lane, the exact attention kernels without AVX2 and scalar
//            tails
//
// Every traits struct runs the same IEEE operation per lane, except `fma`:
// one rounding everywhere but in Portable8, which (like the elementwise and
// linear kernels always did without AVX2) multiplies and adds separately
// rather than call a software fmaf.
//
// cephesExp below is the runtime's only exp; every kernel that needs exp
// instantiates it for its traits.
//
// Everything here has internal linkage (an unnamed namespace): a unit built
// with other ISA flags (ExactKernelsAvx512.cpp) gets its own copies and can
// never hand an AVX-512 body to another unit through the linker. For the same
// reason only compiler builtins are used, no std templates or functions.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_SIMD_H
#define INCNN_RUNTIME_SIMD_H

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define INCNN_SIMD_AVX2 1
#endif
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) &&  \
    defined(__AVX512VL__)
#define INCNN_SIMD_AVX512 1
#endif

namespace incnn::runtime::simd {
namespace {

#ifdef INCNN_SIMD_AVX2
struct Avx2 {
  static constexpr int W = 8, D = 4; ///< float lanes, double lanes
  using VF = __m256;
  using VD = __m256d;
  using VI = __m256i; ///< uint64 lanes
  using MF = __m256;  ///< all-ones lanes
  using VN = __m256i; ///< int32 lanes
  static VF zero() { return _mm256_setzero_ps(); }
  static VF set1(float x) { return _mm256_set1_ps(x); }
  static VF load(const float *p) { return _mm256_loadu_ps(p); }
  static VF loadAligned(const float *p) { return _mm256_load_ps(p); }
  static VF broadcast(const float *p) { return _mm256_broadcast_ss(p); }
  static void store(float *p, VF x) { _mm256_storeu_ps(p, x); }
  static VF fma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
  static VF add(VF a, VF b) { return _mm256_add_ps(a, b); }
  static VF sub(VF a, VF b) { return _mm256_sub_ps(a, b); }
  static VF mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
  static VF div(VF a, VF b) { return _mm256_div_ps(a, b); }
  static VF min(VF a, VF b) { return _mm256_min_ps(a, b); } // NaN: b
  static VF max(VF a, VF b) { return _mm256_max_ps(a, b); } // NaN: b
  static VF floor(VF a) { return _mm256_floor_ps(a); }
  /// 2^k for integral k in [-127, 128].
  static VF pow2(VF k) {
    __m256i e =
        _mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static VF select(MF m, VF a, VF b) { return _mm256_blendv_ps(b, a, m); }
  static MF nge(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_NGE_UQ); }
  static MF gt(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  /// |x| > limit, or NaN.
  static MF outside(VF x, VF limit) {
    const VF absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    return _mm256_cmp_ps(_mm256_and_ps(x, absMask), limit, _CMP_NLE_UQ);
  }
  /// Lanes [0, m).
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
  static VI set1I(uint64_t x) { return _mm256_set1_epi64x(int64_t(x)); }
  static VI addI(VI a, VI b) { return _mm256_add_epi64(a, b); }
  static VI castI(VD a) { return _mm256_castpd_si256(a); }
  /// a * b modulo 2^64, for b < 2^32 (no 64-bit multiply in AVX2).
  static VI mulI(VI a, uint64_t b) {
    const __m256i bv = _mm256_set1_epi64x(int64_t(b));
    __m256i high = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), bv);
    return _mm256_add_epi64(_mm256_mul_epu32(a, bv),
                            _mm256_slli_epi64(high, 32));
  }
  static VI loadI(const uint64_t *p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
  }
  static void storeI(uint64_t *p, VI x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(p), x);
  }
  /// The W floats of x as doubles at dst[0, W).
  static void storeWidened(double *dst, VF x) {
    _mm256_storeu_pd(dst, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    _mm256_storeu_pd(dst + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
  }
};

/// out[l] = floats [offset, offset + 8) of rows 0..7, transposed: lane j of
/// out[l] is rows[j][offset + l].
inline void transpose8x8(const float *const *rows, int64_t offset,
                         __m256 out[8]) {
  __m256 r[8], t[8];
  for (int l = 0; l < 8; ++l)
    r[l] = _mm256_loadu_ps(rows[l] + offset);
  for (int l = 0; l < 8; l += 2) {
    t[l] = _mm256_unpacklo_ps(r[l], r[l + 1]);
    t[l + 1] = _mm256_unpackhi_ps(r[l], r[l + 1]);
  }
  for (int l = 0; l < 8; l += 4) {
    r[l] = _mm256_shuffle_ps(t[l], t[l + 2], 0x44);
    r[l + 1] = _mm256_shuffle_ps(t[l], t[l + 2], 0xee);
    r[l + 2] = _mm256_shuffle_ps(t[l + 1], t[l + 3], 0x44);
    r[l + 3] = _mm256_shuffle_ps(t[l + 1], t[l + 3], 0xee);
  }
  for (int l = 0; l < 4; ++l) {
    out[l] = _mm256_permute2f128_ps(r[l], r[l + 4], 0x20);
    out[l + 4] = _mm256_permute2f128_ps(r[l], r[l + 4], 0x31);
  }
}
#endif // INCNN_SIMD_AVX2

#ifdef INCNN_SIMD_AVX512
struct Avx512 {
  static constexpr int W = 16, D = 8;
  using VF = __m512;
  using VD = __m512d;
  using VI = __m512i;
  using MF = __mmask16;
  using VN = __m512i;
  static VF zero() { return _mm512_setzero_ps(); }
  static VF set1(float x) { return _mm512_set1_ps(x); }
  static VF load(const float *p) { return _mm512_loadu_ps(p); }
  static void store(float *p, VF x) { _mm512_storeu_ps(p, x); }
  static VF fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
  static VF add(VF a, VF b) { return _mm512_add_ps(a, b); }
  static VF sub(VF a, VF b) { return _mm512_sub_ps(a, b); }
  static VF mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
  static VF min(VF a, VF b) { return _mm512_min_ps(a, b); }
  static VF max(VF a, VF b) { return _mm512_max_ps(a, b); }
  static VF floor(VF a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
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
  static VI set1I(uint64_t x) { return _mm512_set1_epi64(int64_t(x)); }
  static VI addI(VI a, VI b) { return _mm512_add_epi64(a, b); }
  static VI castI(VD a) { return _mm512_castpd_si512(a); }
  /// a * b modulo 2^64, for b < 2^32.
  static VI mulI(VI a, uint64_t b) {
    return _mm512_mullo_epi64(a, _mm512_set1_epi64(int64_t(b)));
  }
  static VI loadI(const uint64_t *p) { return _mm512_loadu_si512(p); }
  static void storeI(uint64_t *p, VI x) { _mm512_storeu_si512(p, x); }
  static void storeWidened(double *dst, VF x) {
    _mm512_storeu_pd(dst, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    _mm512_storeu_pd(dst + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)));
  }
};
#endif // INCNN_SIMD_AVX512

/// One lane: the same operations as the vector traits, on plain scalars.
struct Scalar {
  static constexpr int W = 1, D = 1;
  using VF = float;
  using VD = double;
  using VI = uint64_t;
  using MF = bool;
  using VN = int64_t;
  static VF zero() { return 0.0f; }
  static VF set1(float x) { return x; }
  static VF load(const float *p) { return *p; }
  static void store(float *p, VF x) { *p = x; }
  static VF fma(VF a, VF b, VF c) { return __builtin_fmaf(a, b, c); }
  static VF add(VF a, VF b) { return a + b; }
  static VF sub(VF a, VF b) { return a - b; }
  static VF mul(VF a, VF b) { return a * b; }
  static VF min(VF a, VF b) { return a < b ? a : b; } // as minps
  static VF max(VF a, VF b) { return a > b ? a : b; } // as maxps
  static VF floor(VF a) { return __builtin_floorf(a); }
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
  static VF maxMasked(VF acc, MF m, VF x) { return m && x > acc ? x : acc; }
  static float hmax(VF x) { return x; }
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
  static VI set1I(uint64_t x) { return x; }
  static VI addI(VI a, VI b) { return a + b; }
  static VI castI(VD a) {
    uint64_t bits;
    __builtin_memcpy(&bits, &a, 8);
    return bits;
  }
  /// a * b modulo 2^64, for b < 2^32.
  static VI mulI(VI a, uint64_t b) { return a * b; }
  static VI loadI(const uint64_t *p) { return *p; }
  static void storeI(uint64_t *p, VI x) { *p = x; }
  static void storeWidened(double *dst, VF x) { *dst = double(x); }
};

/// Eight float lanes in plain C++ (no AVX2): the float operations the
/// elementwise and linear kernels use. `fma` rounds twice (see the top).
struct Portable8 {
  static constexpr int W = 8;
  struct VF {
    float v[8];
  };
  static VF zero() { return VF{}; }
  static VF set1(float x) {
    VF r;
    for (float &e : r.v)
      e = x;
    return r;
  }
  static VF load(const float *p) {
    VF r;
    __builtin_memcpy(r.v, p, sizeof(r.v));
    return r;
  }
  static VF loadAligned(const float *p) { return load(p); }
  static VF broadcast(const float *p) { return set1(*p); }
  static void store(float *p, VF x) { __builtin_memcpy(p, x.v, sizeof(x.v)); }
#define INCNN_SIMD_LANEWISE(NAME, EXPR)                                        \
  static VF NAME(VF a, VF b) {                                                 \
    VF r;                                                                      \
    for (int i = 0; i < 8; ++i) {                                              \
      float x = a.v[i], y = b.v[i];                                            \
      r.v[i] = (EXPR);                                                         \
    }                                                                          \
    return r;                                                                  \
  }
  INCNN_SIMD_LANEWISE(add, x + y)
  INCNN_SIMD_LANEWISE(sub, x - y)
  INCNN_SIMD_LANEWISE(mul, x *y)
  INCNN_SIMD_LANEWISE(div, x / y)
  INCNN_SIMD_LANEWISE(min, x < y ? x : y) // as minps
  INCNN_SIMD_LANEWISE(max, x > y ? x : y) // as maxps
#undef INCNN_SIMD_LANEWISE
  static VF fma(VF a, VF b, VF c) { return add(mul(a, b), c); }
  static VF floor(VF a) {
    VF r;
    for (int i = 0; i < 8; ++i)
      r.v[i] = __builtin_floorf(a.v[i]);
    return r;
  }
  static VF pow2(VF k) {
    VF r;
    for (int i = 0; i < 8; ++i) {
      uint32_t bits = uint32_t(int32_t(k.v[i]) + 127) << 23;
      __builtin_memcpy(&r.v[i], &bits, 4);
    }
    return r;
  }
};

/// The two forms of cephesExp: one polynomial, two rounding sequences, each
/// pinned by the bits its kernels have always produced.
enum class ExpForm {
  /// The elementwise kernels (silu, expf): x clamped to +-88.3762626647949
  /// (NaN: the upper bound), k = floor(fma(x, log2e, 1/2)), Horner steps
  /// and r^2 P(r) + r as T::fma (P times r * r); about 1 ulp on [-87, 88].
  Clamped,
  /// Exact attention (x <= 0 or -inf): x clamped to [-87, 0], every step a
  /// separate multiply and add, r^2 P(r) + r as (P r) r + r; x below -87,
  /// or NaN, gives exactly 0.
  NonPositive,
};

/// exp(x), Cephes style, in every lane of T: k = floor(x log2(e) + 1/2),
/// r = x - k ln(2) (ln(2) in two parts), exp(x) = (1 + r + r^2 P(r)) 2^k
/// with P of degree 5 in Horner form.
template <class T, ExpForm kForm>
inline typename T::VF cephesExp(typename T::VF x) {
  using VF = typename T::VF;
  constexpr bool kFused = kForm == ExpForm::Clamped;
  auto madd = [](VF a, VF b, VF c) {
    if constexpr (kFused)
      return T::fma(a, b, c);
    else
      return T::add(T::mul(a, b), c);
  };
  VF v;
  if constexpr (kForm == ExpForm::Clamped)
    v = T::max(T::min(x, T::set1(88.3762626647949f)),
               T::set1(-88.3762626647949f));
  else // max(lo, NaN) is NaN, min(NaN, 0) is 0: v is never NaN
    v = T::min(T::max(T::set1(-87.0f), x), T::zero());
  VF k = T::floor(madd(v, T::set1(1.44269504088896341f), T::set1(0.5f)));
  VF r = T::sub(v, T::mul(k, T::set1(0.693359375f)));
  r = T::sub(r, T::mul(k, T::set1(-2.12194440e-4f)));
  VF p = T::set1(1.9875691500e-4f);
  p = madd(p, r, T::set1(1.3981999507e-3f));
  p = madd(p, r, T::set1(8.3334519073e-3f));
  p = madd(p, r, T::set1(4.1665795894e-2f));
  p = madd(p, r, T::set1(1.6666665459e-1f));
  p = madd(p, r, T::set1(5.0000001201e-1f));
  if constexpr (kFused)
    p = T::fma(p, T::mul(r, r), r);
  else
    p = T::add(T::mul(T::mul(p, r), r), r);
  VF y = T::mul(T::add(p, T::set1(1.0f)), T::pow2(k));
  if constexpr (kForm == ExpForm::NonPositive)
    y = T::select(T::nge(x, T::set1(-87.0f)), T::zero(), y); // or NaN
  return y;
}

/// Four doubles (and 64-bit integers, the masks of their comparisons; and
/// eight floats) as
/// GCC vectors: plain per-lane IEEE operations that the compiler maps to the
/// target's registers (one AVX2 register; wider vectors are split into
/// scalars on AVX2), for bound arithmetic written once with no branches.
// Every function that takes or returns them is inlined: no call crosses an
// ABI, whatever the target. GCC warns at the end of a unit, so the pragma
// stays on for every unit that includes this header (the runtime exports no
// function with vector arguments).
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double D4 __attribute__((vector_size(32)));
typedef float F8 __attribute__((vector_size(32)));
typedef uint64_t U4 __attribute__((vector_size(32)));
typedef int64_t I4 __attribute__((vector_size(32)));

inline __attribute__((always_inline)) D4 splat(double x) { return D4{} + x; }
inline __attribute__((always_inline)) D4 minOf(D4 x, D4 y) {
  return y < x ? y : x;
}
inline __attribute__((always_inline)) D4 absOf(D4 x) {
  return x < 0.0 ? -x : x;
}
/// floor(y) for 0 <= y < 2^51: y + 2^52 rounds y to the nearest integer.
inline __attribute__((always_inline)) D4 floorOf(D4 y) {
  D4 nearest = (y + 0x1p52) - 0x1p52;
  return nearest > y ? nearest - 1.0 : nearest;
}

/// An upper bound of exp(x) in every lane with x <= 0 (not NaN), at most 2^-39
/// above it (x below -700 gives exp(-700)): k = round(x log2(e)) by the 1.5 *
/// 2^52 trick, r = x - k ln(2) with ln(2) in two parts (k ln2Hi exact, the
/// subtraction exact by Sterbenz), the Taylor polynomial of degree 12 on
/// |r| <= 0.35 (truncation below 2^-51, Horner rounding below 2^-46
/// relative), 2^k from k's bits, and a final factor 1 + 2^-40.
inline __attribute__((always_inline)) D4 expUpperBound(D4 x) {
  x = x < -700.0 ? splat(-700.0) : x;
  const double magic = 0x1.8p52;
  D4 t = x * 1.4426950408889634 + magic; // k + magic, k in the low bits
  D4 k = t - magic;
  D4 r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  D4 p = splat(1.0 / 479001600.0); // 1/12!
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t magicBits;
  __builtin_memcpy(&magicBits, &magic, sizeof magicBits);
  // A cast between vectors of one size keeps the bits; unsigned arithmetic,
  // so that even a NaN lane (x must not be NaN) is defined.
  U4 exponent = ((U4)t - uint64_t(magicBits) + 1023) << 52;
  return p * (D4)exponent * (1.0 + 0x1p-40);
}

} // namespace
} // namespace incnn::runtime::simd

#endif // INCNN_RUNTIME_SIMD_H
