//===- Kernels.cpp - Row-invariant CPU kernels ----------------------------===//
//
// Kernels use the 8-lane float traits `S` of Simd.h: Avx2 when the build
// targets AVX2+FMA, otherwise Portable8 (the same algorithms with separate
// multiply and add). Tails shorter than 8 go through the same vector code on
// zero-padded copies, so every element sees one code path.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"
#include "Simd.h"
#include "attention/ExactKernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace incnn::runtime::kernels {

//===----------------------------------------------------------------------===//
// 8-lane vectors
//===----------------------------------------------------------------------===//

namespace {

#ifdef INCNN_SIMD_AVX2
using S = simd::Avx2;
#else
using S = simd::Portable8;
#endif
static_assert(S::W == 8, "reductions and tails assume 8 lanes");
using V = S::VF;

/// Sum of the 8 lanes in a fixed order.
inline float vreduce(V x) {
  alignas(32) float l[8];
  S::store(l, x);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/// Cephes-style exp; accurate to ~1 ulp on [-87, 88]; 0 far below.
inline V vexp(V x) { return simd::cephesExp<S, simd::ExpForm::Clamped>(x); }

inline int64_t roundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/// Applies `f` (V -> V) to x[0..count) writing y; the tail goes through a
/// zero-padded copy so every element uses the same code.
template <typename F>
void mapUnary(const float *x, int64_t count, float *y, ThreadPool *pool, F f) {
  constexpr int64_t kChunk = 8192;
  int64_t tasks = (count + kChunk - 1) / kChunk;
  parallelFor(pool, tasks, [&](int64_t t) {
    int64_t begin = t * kChunk, end = std::min(count, begin + kChunk);
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
      S::store(y + i, f(S::load(x + i)));
    if (i < end) {
      alignas(32) float buf[8] = {};
      std::memcpy(buf, x + i, sizeof(float) * size_t(end - i));
      S::store(buf, f(S::load(buf)));
      std::memcpy(y + i, buf, sizeof(float) * size_t(end - i));
    }
  });
}

/// y[i] = f(x[i]) with a scalar f (libm functions), in chunks.
template <typename F>
void mapScalar(const float *x, int64_t count, float *y, ThreadPool *pool, F f) {
  constexpr int64_t kChunk = 8192;
  parallelFor(pool, (count + kChunk - 1) / kChunk, [&](int64_t t) {
    int64_t end = std::min(count, (t + 1) * kChunk);
    for (int64_t i = t * kChunk; i < end; ++i)
      y[i] = f(x[i]);
  });
}

template <typename F>
void mapBinary(const float *a, const float *b, int64_t count, float *y,
               ThreadPool *pool, F f) {
  constexpr int64_t kChunk = 8192;
  int64_t tasks = (count + kChunk - 1) / kChunk;
  parallelFor(pool, tasks, [&](int64_t t) {
    int64_t begin = t * kChunk, end = std::min(count, begin + kChunk);
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
      S::store(y + i, f(S::load(a + i), S::load(b + i)));
    if (i < end) {
      alignas(32) float ba[8] = {}, bb[8] = {};
      size_t bytes = sizeof(float) * size_t(end - i);
      std::memcpy(ba, a + i, bytes);
      std::memcpy(bb, b + i, bytes);
      S::store(ba, f(S::load(ba), S::load(bb)));
      std::memcpy(y + i, ba, bytes);
    }
  });
}

} // namespace

void AlignedBuffer::resize(int64_t newCount) {
  ptr.reset();
  count = 0;
  if (newCount <= 0)
    return;
  size_t bytes = size_t(roundUp(newCount * int64_t(sizeof(float)), 64));
  void *p = std::aligned_alloc(64, bytes);
  if (!p)
    throw std::bad_alloc();
  std::memset(p, 0, bytes);
  ptr.reset(static_cast<float *>(p));
  count = newCount;
}

float expf(float x) {
  alignas(32) float buf[8] = {x};
  S::store(buf, vexp(S::load(buf)));
  return buf[0];
}

//===----------------------------------------------------------------------===//
// Linear layers
//===----------------------------------------------------------------------===//

namespace {

constexpr int64_t kMR = 6;   // rows per micro-kernel
constexpr int64_t kKC = 256; // k block
constexpr int64_t kMC = 96;  // rows per task (multiple of kMR)
constexpr int64_t kPanelsPerTask = 8;
static_assert(kPanelWidth == 16, "the micro-kernel computes 2 x 8 lanes");

/// C[MR, 16] (+)= A[MR, kc] * B[kc, 16] (+ bias). `ap` holds A packed
/// k-major with stride kMR; `bp` one panel slice, k-major with stride 16.
template <int MR>
void microKernel(int64_t kc, const float *__restrict ap,
                 const float *__restrict bp, float *c, int64_t ldc,
                 bool accumulate, const float *bias) {
  V acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    acc0[r] = accumulate ? S::load(c + r * ldc) : S::zero();
    acc1[r] = accumulate ? S::load(c + r * ldc + 8) : S::zero();
  }
  for (int64_t k = 0; k < kc; ++k) {
    V b0 = S::loadAligned(bp), b1 = S::loadAligned(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      V a = S::broadcast(ap + r);
      acc0[r] = S::fma(a, b0, acc0[r]);
      acc1[r] = S::fma(a, b1, acc1[r]);
    }
    ap += kMR;
    bp += kPanelWidth;
  }
  if (bias) {
    V c0 = S::loadAligned(bias), c1 = S::loadAligned(bias + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      acc0[r] = S::add(acc0[r], c0);
      acc1[r] = S::add(acc1[r], c1);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    S::store(c + r * ldc, acc0[r]);
    S::store(c + r * ldc + 8, acc1[r]);
  }
}

using MicroKernelFn = void (*)(int64_t, const float *, const float *, float *,
                               int64_t, bool, const float *);
constexpr MicroKernelFn kMicroKernels[kMR + 1] = {
    nullptr,        microKernel<1>, microKernel<2>, microKernel<3>,
    microKernel<4>, microKernel<5>, microKernel<6>};

} // namespace

void packLinear(const float *w, int64_t out, int64_t in, const float *bias,
                PackedLinear &packed, ThreadPool *pool) {
  packed.out = out;
  packed.in = in;
  packed.numPanels = (out + kPanelWidth - 1) / kPanelWidth;
  packed.panels.resize(packed.numPanels * in * kPanelWidth);
  float *dst = packed.panels.data();
  parallelFor(pool, packed.numPanels, [&](int64_t p) {
    float *panel = dst + p * in * kPanelWidth;
    int64_t cols = std::min(kPanelWidth, out - p * kPanelWidth);
    for (int64_t j = 0; j < cols; ++j) {
      const float *row = w + (p * kPanelWidth + j) * in;
      for (int64_t k = 0; k < in; ++k)
        panel[k * kPanelWidth + j] = row[k];
    }
  });
  if (bias) {
    packed.bias.resize(packed.numPanels * kPanelWidth);
    std::memcpy(packed.bias.data(), bias, sizeof(float) * size_t(out));
  } else {
    packed.bias.resize(0);
  }
}

void linear(const float *x, int64_t n, int64_t ldx, const PackedLinear &w,
            float *y, int64_t ldy, ThreadPool *pool) {
  if (n <= 0)
    return;
  const int64_t in = w.in, out = w.out;
  // Row blocks of at most kMR rows, their sizes as even as can be: a block
  // of few rows is bound by FMA latency, not by throughput.
  const int64_t rowBlocks = (n + kMR - 1) / kMR, nPad = rowBlocks * kMR;
  const int64_t evenRows = n / rowBlocks, longer = n % rowBlocks;
  auto blockStart = [&](int64_t b) {
    return b * evenRows + std::min(b, longer);
  };
  auto blockRows = [&](int64_t b) { return evenRows + (b < longer ? 1 : 0); };
  // Pack X once: for each k block (k0, kc), each row block stored k-major
  // with stride kMR, block b at aPacked[k0 * nPad + b * kMR * kc].
  thread_local std::vector<float> aPackedBuf;
  if (aPackedBuf.size() < size_t(nPad * in))
    aPackedBuf.resize(size_t(nPad * in));
  float *aPacked = aPackedBuf.data();
  constexpr int64_t kBlocksPerPackTask = 8;
  parallelFor(pool, (rowBlocks + kBlocksPerPackTask - 1) / kBlocksPerPackTask,
              [&](int64_t t) {
                int64_t b1 = std::min(rowBlocks, (t + 1) * kBlocksPerPackTask);
                for (int64_t b = t * kBlocksPerPackTask; b < b1; ++b) {
                  int64_t r0 = blockStart(b), mr = blockRows(b);
                  for (int64_t k0 = 0; k0 < in; k0 += kKC) {
                    int64_t kc = std::min(kKC, in - k0);
                    float *dst = aPacked + k0 * nPad + b * kMR * kc;
                    for (int64_t r = 0; r < mr; ++r) {
                      const float *src = x + (r0 + r) * ldx + k0;
                      for (int64_t k = 0; k < kc; ++k)
                        dst[k * kMR + r] = src[k];
                    }
                  }
                }
              });

  // Two full panels at once where the CPU has a 32-column tile (the same
  // FMA chains, so the same bits).
  const auto panelPair = exact::detail::kernels().linearPanelPair;
  constexpr int64_t kBlocksPerChunk = kMC / kMR;
  const int64_t rowChunks = (rowBlocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  const int64_t panelGroups =
      (w.numPanels + kPanelsPerTask - 1) / kPanelsPerTask;
  parallelFor(pool, rowChunks * panelGroups, [&](int64_t task) {
    // Row chunks vary fastest so that threads share weight panels in cache.
    int64_t b0 = (task % rowChunks) * kBlocksPerChunk,
            b1 = std::min(rowBlocks, b0 + kBlocksPerChunk);
    int64_t p0 = (task / rowChunks) * kPanelsPerTask;
    int64_t p1 = std::min(w.numPanels, p0 + kPanelsPerTask);
    alignas(64) float edge[kMR * kPanelWidth];
    for (int64_t k0 = 0; k0 < in; k0 += kKC) {
      int64_t kc = std::min(kKC, in - k0);
      bool last = k0 + kc == in;
      const float *aBlock = aPacked + k0 * nPad;
      for (int64_t p = p0; p < p1; ++p) {
        const float *bp = w.panels.data() + (p * in + k0) * kPanelWidth;
        const float *bias =
            last && !w.bias.empty() ? w.bias.data() + p * kPanelWidth : nullptr;
        int64_t c0 = p * kPanelWidth;
        int64_t cols = std::min(kPanelWidth, out - c0);
        if (panelPair && p + 1 < p1 && c0 + 2 * kPanelWidth <= out) {
          // The row blocks prefetch the task's next pair's slice (after the
          // last pair: the first pair's next k block), each an equal share.
          const float *next = nullptr;
          int64_t nextKc = 0;
          if (p + 3 < p1) {
            next = bp + 2 * in * kPanelWidth;
            nextKc = kc;
          } else if (k0 + kc < in && p0 + 1 < p1) {
            next = w.panels.data() + (p0 * in + k0 + kc) * kPanelWidth;
            nextKc = std::min(kKC, in - k0 - kc);
          }
          int64_t share = (nextKc + b1 - b0 - 1) / (b1 - b0);
          for (int64_t b = b0; b < b1; ++b) {
            int64_t from = std::min((b - b0) * share, nextKc);
            panelPair(kc, blockRows(b), aBlock + b * kMR * kc, bp,
                      in * kPanelWidth, y + blockStart(b) * ldy + c0, ldy,
                      k0 > 0, bias, next ? next + from * kPanelWidth : nullptr,
                      std::min(nextKc, from + share) - from);
          }
          ++p;
          continue;
        }
        for (int64_t b = b0; b < b1; ++b) {
          int64_t mr = blockRows(b);
          const float *ap = aBlock + b * kMR * kc;
          float *c = y + blockStart(b) * ldy + c0;
          if (cols == kPanelWidth) {
            kMicroKernels[mr](kc, ap, bp, c, ldy, k0 > 0, bias);
            continue;
          }
          // Partial panel: go through a 16-wide scratch tile.
          std::memset(edge, 0, sizeof(edge));
          if (k0 > 0)
            for (int64_t r = 0; r < mr; ++r)
              std::memcpy(edge + r * kPanelWidth, c + r * ldy,
                          sizeof(float) * size_t(cols));
          kMicroKernels[mr](kc, ap, bp, edge, kPanelWidth, k0 > 0, bias);
          for (int64_t r = 0; r < mr; ++r)
            std::memcpy(c + r * ldy, edge + r * kPanelWidth,
                        sizeof(float) * size_t(cols));
        }
      }
    }
  });
}

//===----------------------------------------------------------------------===//
// Norms and elementwise ops
//===----------------------------------------------------------------------===//

void layerNorm(const float *x, int64_t n, int64_t width, const float *gamma,
               const float *beta, float epsilon, float *y, ThreadPool *pool) {
  forRowChunks(n, 16, pool, [&](int64_t i) {
    const float *xr = x + i * width;
    float *yr = y + i * width;
    double sum = 0.0;
    for (int64_t j = 0; j < width; ++j)
      sum += xr[j];
    double mean = sum / double(width);
    double sq = 0.0;
    for (int64_t j = 0; j < width; ++j) {
      double d = double(xr[j]) - mean;
      sq += d * d;
    }
    double rstd = 1.0 / std::sqrt(sq / double(width) + double(epsilon));
    for (int64_t j = 0; j < width; ++j) {
      float normed = float((double(xr[j]) - mean) * rstd);
      yr[j] = beta ? normed * gamma[j] + beta[j] : normed * gamma[j];
    }
  });
}

void rmsNorm(const float *x, int64_t n, int64_t width, const float *gamma,
             float epsilon, float *y, ThreadPool *pool) {
  forRowChunks(n, 16, pool, [&](int64_t i) {
    const float *xr = x + i * width;
    float *yr = y + i * width;
    double sq = 0.0;
    for (int64_t j = 0; j < width; ++j)
      sq += double(xr[j]) * double(xr[j]);
    double rstd = 1.0 / std::sqrt(sq / double(width) + double(epsilon));
    for (int64_t j = 0; j < width; ++j)
      yr[j] = float(double(xr[j]) * rstd) * gamma[j];
  });
}

void relu(const float *x, int64_t count, float *y, ThreadPool *pool) {
  mapUnary(x, count, y, pool, [](V v) { return S::max(v, S::zero()); });
}

void gelu(const float *x, int64_t count, float *y, ThreadPool *pool) {
  mapScalar(x, count, y, pool, [](float v) {
    return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
  });
}

void geluTanh(const float *x, int64_t count, float *y, ThreadPool *pool) {
  mapScalar(x, count, y, pool, [](float v) {
    float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
    return 0.5f * v * (1.0f + std::tanh(inner));
  });
}

void tanh(const float *x, int64_t count, float *y, ThreadPool *pool) {
  mapScalar(x, count, y, pool, [](float v) { return std::tanh(v); });
}

void silu(const float *x, int64_t count, float *y, ThreadPool *pool) {
  mapUnary(x, count, y, pool, [](V v) {
    return S::div(v, S::add(S::set1(1.0f), vexp(S::sub(S::zero(), v))));
  });
}

void add(const float *a, const float *b, int64_t count, float *y,
         ThreadPool *pool) {
  mapBinary(a, b, count, y, pool, [](V p, V q) { return S::add(p, q); });
}

void mul(const float *a, const float *b, int64_t count, float *y,
         ThreadPool *pool) {
  mapBinary(a, b, count, y, pool, [](V p, V q) { return S::mul(p, q); });
}

void gated(const float *x, int64_t m, int64_t h, UnaryKernel act, float *y,
           ThreadPool *pool) {
  parallelFor(pool, m, [&](int64_t r) {
    float *out = y + r * h;
    act(x + r * 2 * h, h, out, nullptr);
    mul(out, x + r * 2 * h + h, h, out, nullptr);
  });
}

void embed(const int32_t *tokens, int64_t n, const float *table, int64_t width,
           const float *typeRow, float *y) {
  for (int64_t i = 0; i < n; ++i) {
    const float *t = table + int64_t(tokens[i]) * width;
    float *yr = y + i * width;
    if (typeRow)
      for (int64_t j = 0; j < width; ++j)
        yr[j] = t[j] + typeRow[j];
    else
      std::memcpy(yr, t, sizeof(float) * size_t(width));
  }
}

void addPositions(const float *x, int64_t n, int64_t width, const float *table,
                  int64_t firstPosition, int64_t offset, float *y) {
  for (int64_t i = 0; i < n; ++i) {
    const float *t = table + (firstPosition + i + offset) * width;
    for (int64_t j = 0; j < width; ++j)
      y[i * width + j] = x[i * width + j] + t[j];
  }
}

//===----------------------------------------------------------------------===//
// Vector quantization
//===----------------------------------------------------------------------===//

namespace {

/// Squared distances from x to 4 codewords; each one the same op sequence as
/// squaredDistance.
void squaredDistance4(const float *x, const float *c0, const float *c1,
                      const float *c2, const float *c3, int64_t d,
                      float *outDist) {
  V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    V xv = S::load(x + i);
    V d0 = S::sub(xv, S::load(c0 + i)), d1 = S::sub(xv, S::load(c1 + i));
    V d2 = S::sub(xv, S::load(c2 + i)), d3 = S::sub(xv, S::load(c3 + i));
    a0 = S::fma(d0, d0, a0);
    a1 = S::fma(d1, d1, a1);
    a2 = S::fma(d2, d2, a2);
    a3 = S::fma(d3, d3, a3);
  }
  float s[4] = {vreduce(a0), vreduce(a1), vreduce(a2), vreduce(a3)};
  const float *cs[4] = {c0, c1, c2, c3};
  for (; i < d; ++i)
    for (int t = 0; t < 4; ++t) {
      float diff = x[i] - cs[t][i];
      s[t] = s[t] + diff * diff;
    }
  for (int t = 0; t < 4; ++t)
    outDist[t] = s[t];
}

} // namespace

float squaredDistance(const float *a, const float *b, int64_t d) {
  V acc = S::zero();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    V diff = S::sub(S::load(a + i), S::load(b + i));
    acc = S::fma(diff, diff, acc);
  }
  float s = vreduce(acc);
  for (; i < d; ++i) {
    float diff = a[i] - b[i];
    s = s + diff * diff;
  }
  return s;
}

int64_t nearestCode(const float *x, const float *codebook, int64_t K, int64_t d,
                    float *bestDist, float *secondDist, float *allDist) {
  int64_t best = 0;
  float bestD = std::numeric_limits<float>::infinity();
  float secondD = std::numeric_limits<float>::infinity();
  bool haveBest = false;
  auto consider = [&](int64_t idx, float dist) {
    if (allDist)
      allDist[idx] = dist;
    if (!haveBest) {
      best = idx;
      bestD = dist;
      haveBest = true;
    } else if (dist < bestD) {
      secondD = bestD;
      best = idx;
      bestD = dist;
    } else if (dist < secondD) {
      secondD = dist;
    }
  };
  int64_t c = 0;
  float dist[4];
  for (; c + 4 <= K; c += 4) {
    const float *base = codebook + c * d;
    squaredDistance4(x, base, base + d, base + 2 * d, base + 3 * d, d, dist);
    for (int t = 0; t < 4; ++t)
      consider(c + t, dist[t]);
  }
  for (; c < K; ++c)
    consider(c, squaredDistance(x, codebook + c * d, d));
  if (bestDist)
    *bestDist = bestD;
  if (secondDist)
    *secondDist = secondD;
  return best;
}

void vectorQuantize(const float *x, int64_t n, int64_t width,
                    const float *codebook, int64_t G, int64_t K,
                    float *quantized, float *codes, ThreadPool *pool,
                    float *distances) {
  const int64_t d = width / G;
  forRowChunks(n, 4, pool, [&](int64_t i) {
    for (int64_t g = 0; g < G; ++g) {
      const float *cb = codebook + g * K * d;
      int64_t idx =
          nearestCode(x + i * width + g * d, cb, K, d, nullptr, nullptr,
                      distances ? distances + (i * G + g) * K : nullptr);
      std::memcpy(quantized + i * width + g * d, cb + idx * d,
                  sizeof(float) * size_t(d));
      codes[i * G + g] = float(idx);
    }
  });
}

} // namespace incnn::runtime::kernels
