//===- ExactAttention.cpp - attention with exact, updatable sums ----------===//
#include "ExactAttention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace incnn::runtime::exact {

namespace {

constexpr float kTermScale = 16777216.0f; // 2^24

/// Rounds |x| < 2^51 to the nearest integer (ties to even), exactly, with
/// plain double arithmetic so scalar and vectorized code agree.
inline int64_t roundToInt(double x) {
  double shifted = x + 6755399441055744.0; // 1.5 * 2^52
  int64_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return bits - int64_t(0x4338000000000000LL);
}

/// exp(x) for x <= 0 by range reduction and a degree-6 polynomial: the same
/// IEEE operations for every element, whether or not the loop is vectorized.
void expNonPositive(const float *x, int64_t n, float *y) {
  int64_t i = 0;
#if defined(__AVX2__)
  // The same IEEE operations as the scalar loop below, eight lanes at once.
  const __m256 lo = _mm256_set1_ps(-87.0f), zero = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    __m256 xi = _mm256_loadu_ps(x + i);
    // max(lo, NaN) is lo; min keeps the exponent in range for any input.
    __m256 v = _mm256_min_ps(_mm256_max_ps(lo, xi), zero);
    __m256 k = _mm256_floor_ps(
        _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                      _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_sub_ps(v, _mm256_mul_ps(k, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(k, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r),
                      _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    __m256 under = _mm256_cmp_ps(xi, lo, _CMP_NGE_UQ); // below -87, or NaN
    _mm256_storeu_ps(y + i, _mm256_andnot_ps(under, result));
  }
#endif
  for (; i < n; ++i) {
    float v = x[i] >= -87.0f ? std::min(x[i], 0.0f) : -87.0f; // NaN: -87
    float k = std::floor(v * 1.44269504088896341f + 0.5f);
    float r = v - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = uint32_t(int32_t(k) + 127) << 23; // k in [-126, 0]
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    y[i] = x[i] >= -87.0f ? p * scale : 0.0f;
  }
}

} // namespace

float valueBound(int64_t maxKeys) {
  double bound = std::ldexp(1.0, 38) / double(std::max<int64_t>(maxKeys, 1));
  return float(std::min(bound, std::ldexp(1.0, 27)));
}

bool withinBound(const float *x, int64_t n, float bound) {
  int64_t i = 0;
  bool ok = true;
#if defined(__AVX2__)
  const __m256 b = _mm256_set1_ps(bound);
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 bad = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absMask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_NLE_UQ)); // > or NaN
  }
  ok = _mm256_movemask_ps(bad) == 0;
#endif
  for (; i < n; ++i)
    ok = ok && std::fabs(x[i]) <= bound;
  return ok;
}

void AttentionState::resize(int64_t rows, int64_t heads, int64_t hd) {
  numRows = rows;
  numHeads = heads;
  headDim = hd;
  shift.assign(size_t(rows * heads), 0.0f);
  top.assign(size_t(rows * heads), 0);
  denom.assign(size_t(rows * heads), 0);
  numer.assign(size_t(rows * heads * hd), 0);
}

void AttentionState::remap(const std::vector<int64_t> &from) {
  AttentionState next;
  next.resize(int64_t(from.size()), numHeads, headDim);
  int64_t H = numHeads, hd = headDim;
  for (size_t i = 0; i < from.size(); ++i) {
    int64_t r = from[i];
    if (r < 0)
      continue;
    std::copy_n(&shift[size_t(r * H)], H, &next.shift[i * H]);
    std::copy_n(&top[size_t(r * H)], H, &next.top[i * H]);
    std::copy_n(&denom[size_t(r * H)], H, &next.denom[i * H]);
    std::copy_n(&numer[size_t(r * H * hd)], H * hd, &next.numer[i * H * hd]);
  }
  *this = std::move(next);
}

float dot(const float *a, const float *b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    acc = std::fma(a[i], b[i], acc);
  return acc;
}

bool KeyPanel::build(const float *kRot, const float *v, int64_t n,
                     const AttentionShape &shape, ThreadPool *pool) {
  if (!withinBound(v, n * shape.kvWidth(), shape.valueBound))
    return false;
  int64_t Hkv = shape.numKvHeads, hd = shape.headDim, kvw = shape.kvWidth();
  numKeys = n;
  nPad = (n + 7) / 8 * 8;
  keysT.assign(size_t(Hkv * hd * nPad), 0.0f);
  values.resize(size_t(Hkv * n * hd));
  parallelFor(pool, Hkv, [&](int64_t h) {
    float *kt = keysT.data() + h * hd * nPad;
    double *vd = values.data() + h * n * hd;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < hd; ++c) {
        kt[c * nPad + j] = kRot[j * kvw + h * hd + c];
        vd[j * hd + c] = double(v[j * kvw + h * hd + c]);
      }
  });
  return true;
}

void rotateRow(float *row, int64_t heads, int64_t hd, float theta,
               int64_t position) {
  if (theta == 0.0f)
    return;
  int64_t half = hd / 2;
  for (int64_t t = 0; t < half; ++t) {
    double angle =
        double(position) * std::pow(double(theta), -double(2 * t) / double(hd));
    float c = float(std::cos(angle)), s = float(std::sin(angle));
    for (int64_t h = 0; h < heads; ++h) {
      float *x = row + h * hd;
      float x1 = x[t], x2 = x[t + half];
      float a = x1 * c, b = x2 * s, d = x2 * c, e = x1 * s;
      x[t] = a - b;
      x[t + half] = d + e;
    }
  }
}

void rotateRows(const float *x, int64_t n, int64_t heads, int64_t hd,
                float theta, float *out, ThreadPool *pool) {
  int64_t width = heads * hd;
  std::memcpy(out, x, sizeof(float) * size_t(n * width));
  if (theta == 0.0f)
    return;
  parallelFor(pool, n, [&](int64_t i) {
    rotateRow(out + i * width, heads, hd, theta, i);
  });
}

namespace {

/// scores[j] = dot(q, key j) for j < count, 32 keys at a time (four
/// independent vectors hide the FMA latency); each lane runs the same FMA
/// chain as dot().
void scoreKeys(const float *q, const float *kt, int64_t nPad, int64_t hd,
               int64_t count, float *scores) {
  int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; j + 32 <= count; j += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *k = kt + j;
    for (int64_t c = 0; c < hd; ++c, k += nPad) {
      __m256 qc = _mm256_set1_ps(q[c]);
      a0 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k), a0);
      a1 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + 8), a1);
      a2 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + 16), a2);
      a3 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + 24), a3);
    }
    _mm256_storeu_ps(scores + j, a0);
    _mm256_storeu_ps(scores + j + 8, a1);
    _mm256_storeu_ps(scores + j + 16, a2);
    _mm256_storeu_ps(scores + j + 24, a3);
  }
  for (; j + 8 <= count; j += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t c = 0; c < hd; ++c)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(q[c]),
                            _mm256_loadu_ps(kt + c * nPad + j), acc);
    _mm256_storeu_ps(scores + j, acc);
  }
#endif
  for (; j < count; ++j) {
    float acc = 0.0f;
    for (int64_t c = 0; c < hd; ++c)
      acc = std::fma(q[c], kt[c * nPad + j], acc);
    scores[j] = acc;
  }
}

constexpr uint64_t kMagicBits = 0x4338000000000000ULL;

/// acc[c] += sum over keys j of bits(p[j] * v[j][c] + bias), with p[j] the
/// scaled weight as a double; columns in register-resident blocks of 32.
void accumulateRow(const double *p, int64_t count, const double *values,
                   int64_t hd, uint64_t *acc) {
  int64_t c0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  for (; c0 + 32 <= hd; c0 += 32) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0,
            a5 = a0, a6 = a0, a7 = a0;
    const double *v = values + c0;
    for (int64_t j = 0; j < count; ++j, v += hd) {
      __m256d pj = _mm256_broadcast_sd(p + j);
#define INCNN_TERM(a, off)                                                     \
  a = _mm256_add_epi64(a, _mm256_castpd_si256(_mm256_fmadd_pd(                 \
                              pj, _mm256_loadu_pd(v + off), magic)))
      INCNN_TERM(a0, 0);
      INCNN_TERM(a1, 4);
      INCNN_TERM(a2, 8);
      INCNN_TERM(a3, 12);
      INCNN_TERM(a4, 16);
      INCNN_TERM(a5, 20);
      INCNN_TERM(a6, 24);
      INCNN_TERM(a7, 28);
#undef INCNN_TERM
    }
    __m256i parts[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int r = 0; r < 8; ++r) {
      __m256i *dst = reinterpret_cast<__m256i *>(acc + c0 + 4 * r);
      _mm256_storeu_si256(dst,
                          _mm256_add_epi64(_mm256_loadu_si256(dst), parts[r]));
    }
  }
#endif
  for (int64_t j = 0; c0 < hd && j < count; ++j)
    for (int64_t c = c0; c < hd; ++c) {
      double t = std::fma(p[j], values[j * hd + c], 6755399441055744.0);
      uint64_t bits;
      std::memcpy(&bits, &t, sizeof(bits));
      acc[c] += bits;
    }
}

/// scores[j] *= scale; returns the maximum (max is exact in any order), or
/// NaN when a scaled score is non-finite or above kMaxScore in magnitude.
float scaleAndMax(float *scores, int64_t count, float scale) {
  int64_t j = 0;
  float best = -INFINITY;
  bool ok = true;
#if defined(__AVX2__)
  __m256 vmax = _mm256_set1_ps(-INFINITY), vs = _mm256_set1_ps(scale);
  const __m256 limit = _mm256_set1_ps(kMaxScore);
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 bad = _mm256_setzero_ps();
  for (; j + 8 <= count; j += 8) {
    __m256 x = _mm256_mul_ps(_mm256_loadu_ps(scores + j), vs);
    _mm256_storeu_ps(scores + j, x);
    vmax = _mm256_max_ps(vmax, x);
    bad = _mm256_or_ps(
        bad, _mm256_cmp_ps(_mm256_and_ps(x, absMask), limit, _CMP_NLE_UQ));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float x : lanes)
    best = std::max(best, x);
  ok = _mm256_movemask_ps(bad) == 0;
#endif
  for (; j < count; ++j) {
    scores[j] *= scale;
    best = std::max(best, scores[j]);
    ok = ok && std::fabs(scores[j]) <= kMaxScore;
  }
  return ok ? best : NAN;
}

struct RowScratch {
  std::vector<float> scores, weights;
  std::vector<double> scaled;
  std::vector<uint64_t> acc;
};

} // namespace

namespace {

/// The state of one (row, head) from scratch; false on a contract breach.
bool computeRowHead(const float *qRot, const KeyPanel &panel, int64_t keyCount,
                    const AttentionShape &shape, AttentionState &state,
                    int64_t row, int64_t h) {
  static thread_local RowScratch scratch;
  int64_t H = shape.numHeads, hd = shape.headDim, hk = shape.kvHeadOf(h);
  size_t cap = size_t(std::max<int64_t>(keyCount, 1));
  if (scratch.scores.size() < cap) {
    scratch.scores.resize(cap);
    scratch.weights.resize(cap);
    scratch.scaled.resize(cap);
  }
  scratch.acc.resize(size_t(hd));
  float *scores = scratch.scores.data(), *weights = scratch.weights.data();
  double *scaled = scratch.scaled.data();
  scoreKeys(qRot + h * hd, panel.keysT.data() + hk * hd * panel.nPad,
            panel.nPad, hd, keyCount, scores);
  float maxScore = scaleAndMax(scores, keyCount, shape.scale);
  if (std::isnan(maxScore))
    return false;
  float shift = std::ceil(maxScore);
  int32_t top = 0;
  for (int64_t j = 0; j < keyCount; ++j) {
    top += scores[j] > shift - 1.0f;
    scores[j] -= shift;
  }
  expNonPositive(scores, keyCount, weights);
  // Weights are at most 2^24 after scaling, so their rounded sum is exact
  // in double in any order.
  double denomSum = 0.0;
  for (int64_t j = 0; j < keyCount; ++j) {
    float p = weights[j] * kTermScale;
    scaled[j] = double(p);
    denomSum += std::nearbyint(scaled[j]);
  }
  int64_t denom = int64_t(denomSum);
  uint64_t contributing = uint64_t(keyCount); // every key adds one bias
  uint64_t *acc = scratch.acc.data();
  std::fill_n(acc, hd, 0);
  accumulateRow(scaled, keyCount, panel.values.data() + hk * panel.numKeys * hd,
                hd, acc);
  // Remove the bias: one per contributing key.
  int64_t *numer = &state.numer[size_t((row * H + h) * hd)];
  for (int64_t c = 0; c < hd; ++c)
    numer[c] = int64_t(acc[c] - contributing * kMagicBits);
  state.shift[size_t(row * H + h)] = shift;
  state.top[size_t(row * H + h)] = top;
  state.denom[size_t(row * H + h)] = denom;
  return true;
}

} // namespace

bool computeRow(const float *qRot, const KeyPanel &panel, int64_t keyCount,
                const AttentionShape &shape, AttentionState &state, int64_t row,
                float *out) {
  for (int64_t h = 0; h < shape.numHeads; ++h)
    if (!computeRowHead(qRot, panel, keyCount, shape, state, row, h))
      return false;
  finishRow(shape, state, row, out);
  return true;
}

namespace {
/// numer[c] += sign * round(p * v[c]) for c < hd (p * v is exact in double).
void addTerms(double p, const float *v, int64_t hd, int sign, int64_t *numer) {
  int64_t c = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256d pv = _mm256_set1_pd(p);
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  const __m256i magicBits = _mm256_set1_epi64x(int64_t(kMagicBits));
  for (; c + 4 <= hd; c += 4) {
    __m256d t =
        _mm256_fmadd_pd(pv, _mm256_cvtps_pd(_mm_loadu_ps(v + c)), magic);
    __m256i term = _mm256_sub_epi64(_mm256_castpd_si256(t), magicBits);
    __m256i *dst = reinterpret_cast<__m256i *>(numer + c);
    __m256i old = _mm256_loadu_si256(dst);
    _mm256_storeu_si256(dst, sign > 0 ? _mm256_add_epi64(old, term)
                                      : _mm256_sub_epi64(old, term));
  }
#endif
  for (; c < hd; ++c)
    numer[c] += sign * roundToInt(p * double(v[c]));
}
} // namespace

void applyTermToBlock(const float *qT, const int64_t *rows, const bool *use,
                      const float *kRotRow, const float *vRow,
                      const AttentionShape &shape, AttentionState &state,
                      int sign, bool *ok) {
  int64_t H = shape.numHeads, hd = shape.headDim;
  for (int64_t h = 0; h < H; ++h) {
    const float *k = kRotRow + shape.kvHeadOf(h) * hd;
    const float *q = qT + h * hd * kTermBlock;
    float scores[kTermBlock];
#if defined(__AVX2__) && defined(__FMA__)
    static_assert(kTermBlock == 8, "one AVX2 vector of rows");
    __m256 acc = _mm256_setzero_ps();
    for (int64_t c = 0; c < hd; ++c)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c * kTermBlock),
                            _mm256_set1_ps(k[c]), acc);
    _mm256_storeu_ps(scores, acc);
#else
    for (int l = 0; l < kTermBlock; ++l) {
      float acc = 0.0f;
      for (int64_t c = 0; c < hd; ++c)
        acc = std::fma(q[c * kTermBlock + l], k[c], acc);
      scores[l] = acc;
    }
#endif
    float x[kTermBlock], weights[kTermBlock];
    for (int l = 0; l < kTermBlock; ++l) {
      x[l] = 0.0f;
      if (!use[l] || !ok[l])
        continue;
      float score = scores[l] * shape.scale;
      size_t slot = size_t(rows[l] * H + h);
      float shift = state.shift[slot];
      if (!(std::fabs(score) <= kMaxScore) || score > shift) {
        ok[l] = false; // the shift would rise, or a breach: recompute
        continue;
      }
      if (score > shift - 1.0f) {
        state.top[slot] += sign;
        if (state.top[slot] <= 0) {
          ok[l] = false; // the maximum may have dropped a bucket
          continue;
        }
      }
      x[l] = score - shift;
    }
    expNonPositive(x, kTermBlock, weights);
    const float *vj = vRow + shape.kvHeadOf(h) * hd;
    for (int l = 0; l < kTermBlock; ++l) {
      if (!use[l] || !ok[l])
        continue;
      size_t slot = size_t(rows[l] * H + h);
      double p = double(weights[l] * kTermScale);
      state.denom[slot] += sign * roundToInt(p);
      addTerms(p, vj, hd, sign, &state.numer[slot * size_t(hd)]);
    }
  }
}

void finishRow(const AttentionShape &shape, const AttentionState &state,
               int64_t row, float *out) {
  int64_t H = shape.numHeads, hd = shape.headDim;
  for (int64_t h = 0; h < H; ++h) {
    size_t slot = size_t(row * H + h);
    double denom = double(state.denom[slot]);
    // One reciprocal per head; every path finishes rows with this function.
    double inv = denom > 0 ? 1.0 / denom : 0.0;
    const int64_t *numer = &state.numer[slot * size_t(hd)];
    for (int64_t c = 0; c < hd; ++c)
      out[h * hd + c] = float(double(numer[c]) * inv);
  }
}

bool attention(const float *q, const float *k, const float *v, int64_t n,
               const AttentionShape &shape, float *out, AttentionState &state,
               ThreadPool *pool) {
  int64_t qw = shape.queryWidth(), kvw = shape.kvWidth();
  std::vector<float> qRot(size_t(n * qw)), kRot(size_t(n * kvw));
  rotateRows(q, n, shape.numHeads, shape.headDim, shape.ropeTheta, qRot.data(),
             pool);
  rotateRows(k, n, shape.numKvHeads, shape.headDim, shape.ropeTheta,
             kRot.data(), pool);
  KeyPanel panel;
  if (!panel.build(kRot.data(), v, n, shape, pool))
    return false;
  state.resize(n, shape.numHeads, shape.headDim);
  std::atomic<bool> ok{true};
  // Head-major tasks keep one head's keys and values in cache; blocks pair a
  // short causal row range with a long one to balance the work.
  constexpr int64_t kBlock = 16;
  int64_t blocks = (n + kBlock - 1) / kBlock;
  parallelFor(pool, shape.numHeads * blocks, [&](int64_t t) {
    int64_t h = t / blocks, b = t % blocks;
    int64_t block = (b % 2 == 0) ? b / 2 : blocks - 1 - b / 2;
    for (int64_t i = block * kBlock; i < std::min(n, (block + 1) * kBlock); ++i)
      if (!computeRowHead(qRot.data() + i * qw, panel, shape.causal ? i + 1 : n,
                          shape, state, i, h)) {
        ok.store(false, std::memory_order_relaxed);
        return;
      }
  });
  if (!ok.load())
    return false;
  parallelFor(pool, n,
              [&](int64_t i) { finishRow(shape, state, i, out + i * qw); });
  return true;
}

} // namespace incnn::runtime::exact
