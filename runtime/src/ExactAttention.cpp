//===- ExactAttention.cpp - attention with exact, updatable sums ----------===//
//
// The from-scratch half of ExactAttention.h: key panels, rotary positions,
// rows computed by the blocked kernels (attention/) and whole attentions.
// The delta terms and finishRow are in ExactAttentionTerms.cpp.
//
//===----------------------------------------------------------------------===//
#include "ExactAttention.h"
#include "Simd.h"
#include "attention/ExactKernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace incnn::runtime::exact {

void keyRange(const AttentionShape &shape, int64_t row, int64_t n,
              int64_t &begin, int64_t &end) {
  int64_t W = shape.window;
  begin = W > 0 ? std::max<int64_t>(0, row - W + 1) : 0;
  end = shape.causal ? row + 1 : W > 0 ? std::min(n, row + W) : n;
}

uint64_t attendedPairs(const AttentionShape &shape, int64_t n) {
  int64_t W = shape.window;
  if (W == 0)
    return uint64_t(shape.causal ? n * (n + 1) / 2 : n * n);
  // Closed forms of the sum of keyRange over rows: keys before the window
  // (sum of max(0, i - W + 1)) and, bidirectional, past it.
  int64_t before = n >= W ? (n - W) * (n - W + 1) / 2 : 0;
  if (shape.causal)
    return uint64_t(n * (n + 1) / 2 - before);
  int64_t k = std::max<int64_t>(0, std::min(n, n - W + 1)); // i + W <= n
  int64_t ends = k * (k - 1) / 2 + k * W + (n - k) * n;
  return uint64_t(ends - before);
}

float valueBound(int64_t maxKeys) {
  double bound = std::ldexp(1.0, 36) / double(std::max<int64_t>(maxKeys, 1));
  return float(std::min(bound, std::ldexp(1.0, 25)));
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

void AttentionState::copyRow(const AttentionState &from, int64_t fromRow,
                             int64_t toRow) {
  size_t H = size_t(numHeads), hd = size_t(headDim);
  size_t f = size_t(fromRow) * H, t = size_t(toRow) * H;
  std::copy_n(&from.shift[f], H, &shift[t]);
  std::copy_n(&from.top[f], H, &top[t]);
  std::copy_n(&from.denom[f], H, &denom[t]);
  std::copy_n(&from.numer[f * hd], H * hd, &numer[t * hd]);
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
  nPad = detail::paddedKeys(n);
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

std::atomic<const detail::KernelTable *> activeKernels{nullptr};

bool avx512Supported() {
#if defined(INCNN_EXACT_AVX512)
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

const detail::KernelTable *kernelsNamed(const char *isa) {
  if (std::strcmp(isa, detail::kBaseKernels.name) == 0 ||
      std::strcmp(isa, "avx2") == 0)
    return &detail::kBaseKernels;
#if defined(INCNN_EXACT_AVX512)
  if (std::strcmp(isa, "avx512") == 0 && avx512Supported())
    return &detail::kAvx512Kernels;
#endif
  return nullptr;
}

} // namespace

const detail::KernelTable &detail::kernels() {
  const detail::KernelTable *k = activeKernels.load(std::memory_order_acquire);
  if (k)
    return *k;
  k = &detail::kBaseKernels;
#if defined(INCNN_EXACT_AVX512)
  if (avx512Supported())
    k = &detail::kAvx512Kernels;
#endif
  if (const char *env = std::getenv("INCNN_ISA"); env && *env) {
    if (const detail::KernelTable *named = kernelsNamed(env))
      k = named;
    else
      std::fprintf(stderr,
                   "incnn: INCNN_ISA=%s is not available on this CPU or "
                   "build (use avx2 or avx512); using %s\n",
                   env, k->name);
  }
  const detail::KernelTable *expected = nullptr;
  if (!activeKernels.compare_exchange_strong(expected, k))
    return *expected;
  return *k;
}

namespace {

/// Keys [0, n) of rows[j] + offset (hd floats) into kt [hd][pad], zero
/// padded.
void transposeKeys(const float *const *rows, int64_t n, int64_t offset,
                   int64_t hd, int64_t pad, float *kt) {
  int64_t j = 0;
#ifdef INCNN_SIMD_AVX2
  if (hd % 8 == 0)
    for (; j + 8 <= n; j += 8)
      for (int64_t c = 0; c < hd; c += 8) {
        __m256 t[8];
        simd::transpose8x8(rows + j, offset + c, t);
        for (int l = 0; l < 8; ++l) // t[l]: column c + l
          _mm256_storeu_ps(kt + (c + l) * pad + j, t[l]);
      }
#endif
  for (; j < n; ++j)
    for (int64_t c = 0; c < hd; ++c)
      kt[c * pad + j] = rows[j][offset + c];
  for (int64_t c = 0; c < hd; ++c)
    std::fill(kt + c * pad + n, kt + (c + 1) * pad, 0.0f);
}

/// Which keys rows first, first + 1, ... attend to (absolute positions, over
/// n keys), relative to key `offset`: see detail::HeadJob.
struct KeyRanges {
  int64_t countBase = 0, countStep = 0, beginBase = 0, beginStep = 0,
          keyLimit = INT64_MAX;
  const int64_t *rowBegin = nullptr, *rowEnd = nullptr; ///< per row, if set
};

KeyRanges rangesOf(const AttentionShape &s, int64_t first, int64_t n,
                   int64_t offset) {
  KeyRanges r;
  int64_t W = s.window;
  if (s.causal) {
    r.countBase = first + 1;
    r.countStep = 1;
  } else if (W > 0) {
    r.countBase = first + W;
    r.countStep = 1;
  } else {
    r.countBase = n;
  }
  if (W > 0) {
    r.beginBase = first - W + 1 - offset;
    r.beginStep = 1;
  }
  r.countBase -= offset;
  r.keyLimit = n - offset;
  return r;
}

/// Attends rows [r0, r0 + rows) of head h (q0: row r0's query); false on a
/// score breach.
bool runRows(const float *q0, int64_t r0, int64_t rows, const KeyRanges &keys,
             const float *kt, int64_t ktStride, const double *values,
             const float *const *vRows, int64_t h, const AttentionShape &shape,
             AttentionState &state) {
  int64_t H = shape.numHeads, hd = shape.headDim;
  detail::HeadJob job;
  job.q = q0 + h * hd;
  job.qStride = shape.queryWidth();
  job.numRows = rows;
  job.countBase = keys.countBase;
  job.countStep = keys.countStep;
  job.beginBase = keys.beginBase;
  job.beginStep = keys.beginStep;
  job.keyLimit = keys.keyLimit;
  job.rowBegin = keys.rowBegin;
  job.rowEnd = keys.rowEnd;
  job.kt = kt;
  job.ktStride = ktStride;
  job.values = values;
  job.vRows = vRows;
  job.vOffset = shape.kvHeadOf(h) * hd;
  job.hd = hd;
  job.scale = shape.scale;
  job.shift = &state.shift[size_t(r0 * H + h)];
  job.top = &state.top[size_t(r0 * H + h)];
  job.denom = &state.denom[size_t(r0 * H + h)];
  job.numer = &state.numer[size_t((r0 * H + h) * hd)];
  job.slotStride = H;
  return detail::kernels().run(job);
}

} // namespace

const char *kernelIsa() { return detail::kernels().name; }

bool setKernelIsa(const char *isa) {
  const detail::KernelTable *k = isa ? kernelsNamed(isa) : nullptr;
  if (!k)
    return false;
  activeKernels.store(k, std::memory_order_release);
  return true;
}

bool computeRow(const float *qRot, const KeyPanel &panel, int64_t keyCount,
                const AttentionShape &shape, AttentionState &state, int64_t row,
                float *out) {
  int64_t hd = shape.headDim, n = panel.numKeys;
  if (shape.window > 0)
    return false; // computeRowsFromRows knows positions
  KeyRanges keys;
  keys.countBase = keyCount;
  for (int64_t h = 0; h < shape.numHeads; ++h) {
    int64_t hk = shape.kvHeadOf(h);
    if (!runRows(qRot, row, 1, keys, panel.keysT.data() + hk * hd * panel.nPad,
                 panel.nPad, panel.values.data() + hk * n * hd, nullptr, h,
                 shape, state))
      return false;
  }
  finishRow(shape, state, row, out);
  return true;
}

bool computeRowFromRows(const float *qRot, const float *const *kRotRows,
                        const float *const *vRows, int64_t keyCount,
                        const AttentionShape &shape, AttentionState &state,
                        int64_t row, float *out) {
  int64_t hd = shape.headDim, kvw = shape.kvWidth();
  if (shape.window > 0)
    return false; // computeRowsFromRows knows positions
  for (int64_t j = 0; j < keyCount; ++j)
    if (!withinBound(vRows[j], kvw, shape.valueBound))
      return false;
  KeyRanges keys;
  keys.countBase = keyCount;
  static thread_local std::vector<float> kt;
  int64_t pad = detail::paddedKeys(keyCount);
  if (kt.size() < size_t(hd * pad))
    kt.resize(size_t(hd * pad));
  int64_t group = shape.numHeads / shape.numKvHeads;
  for (int64_t hk = 0; hk < shape.numKvHeads; ++hk) {
    transposeKeys(kRotRows, keyCount, hk * hd, hd, pad, kt.data());
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
      if (!runRows(qRot, row, 1, keys, kt.data(), pad, nullptr, vRows, h, shape,
                   state))
        return false;
  }
  finishRow(shape, state, row, out);
  return true;
}

bool computeRowsFromRows(const float *qRot, const std::vector<int64_t> &rows,
                         int64_t numKeys, const float *const *kRotRows,
                         const float *const *vRows, const AttentionShape &shape,
                         AttentionState &state, float *out, ThreadPool *pool) {
  if (rows.empty())
    return true;
  int64_t hd = shape.headDim, qw = shape.queryWidth();
  int64_t first = rows.front(), count = int64_t(rows.size());
  bool ranged = shape.causal || shape.window > 0;
  // The keys any of the rows attends to: [begin, end).
  int64_t begin, end, lastBegin, lastEnd;
  keyRange(shape, first, numKeys, begin, end);
  keyRange(shape, rows.back(), numKeys, lastBegin, lastEnd);
  end = std::max(end, lastEnd);
  KeyRanges keys = rangesOf(shape, first, numKeys, begin);
  static thread_local std::vector<int64_t> rowBegin, rowEnd;
  if (ranged && rows.back() - first + 1 != count) {
    // Scattered rows: each its own key range, relative to the panel.
    rowBegin.resize(size_t(count));
    rowEnd.resize(size_t(count));
    for (int64_t t = 0; t < count; ++t) {
      keyRange(shape, rows[size_t(t)], numKeys, rowBegin[size_t(t)],
               rowEnd[size_t(t)]);
      rowBegin[size_t(t)] -= begin;
      rowEnd[size_t(t)] -= begin;
    }
    keys.rowBegin = rowBegin.data();
    keys.rowEnd = rowEnd.data();
  }
  int64_t pad = detail::paddedKeys(end - begin);
  int64_t group = shape.numHeads / shape.numKvHeads;
  std::atomic<bool> ok{true};
  parallelFor(pool, shape.numKvHeads, [&](int64_t hk) {
    static thread_local std::vector<float> kt;
    if (kt.size() < size_t(hd * pad))
      kt.resize(size_t(hd * pad));
    transposeKeys(kRotRows + begin, end - begin, hk * hd, hd, pad, kt.data());
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
      if (!runRows(qRot, 0, count, keys, kt.data(), pad, nullptr, vRows + begin,
                   h, shape, state))
        ok.store(false, std::memory_order_relaxed);
  });
  if (!ok.load())
    return false;
  for (int64_t t = 0; t < count; ++t)
    finishRow(shape, state, t, out + t * qw);
  return true;
}

bool attention(const float *q, const float *k, const float *v, int64_t n,
               const AttentionShape &shape, float *out, AttentionState &state,
               ThreadPool *pool, const std::function<void()> &checkpoint) {
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
  // Head-major tasks of kChunk rows keep one head's keys and values in cache;
  // a short causal chunk is paired with a long one to balance the work.
  constexpr int64_t kChunk = 64;
  int64_t chunks = (n + kChunk - 1) / kChunk, hd = shape.headDim;
  int64_t tasks = shape.numHeads * chunks;
  int64_t wave = checkpoint ? (tasks + 7) / 8 : tasks;
  for (int64_t t0 = 0; t0 < tasks && ok.load(); t0 += wave) {
    if (t0 > 0)
      checkpoint();
    parallelFor(pool, std::min(wave, tasks - t0), [&](int64_t i) {
      int64_t t = t0 + i, h = t / chunks, b = t % chunks,
              hk = shape.kvHeadOf(h);
      int64_t chunk = (b % 2 == 0) ? b / 2 : chunks - 1 - b / 2;
      int64_t r0 = chunk * kChunk, rows = std::min(kChunk, n - r0);
      if (!ok.load(std::memory_order_relaxed))
        return;
      if (!runRows(qRot.data() + r0 * qw, r0, rows, rangesOf(shape, r0, n, 0),
                   panel.keysT.data() + hk * hd * panel.nPad, panel.nPad,
                   panel.values.data() + hk * n * hd, nullptr, h, shape, state))
        ok.store(false, std::memory_order_relaxed);
    });
  }
  if (!ok.load())
    return false;
  parallelFor(pool, n,
              [&](int64_t i) { finishRow(shape, state, i, out + i * qw); });
  return true;
}

} // namespace incnn::runtime::exact
