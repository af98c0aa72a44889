//===- Kernels.h - Row-invariant CPU kernels --------------------*- C++ -*-===//
//
// Every kernel here is *row-invariant*: the bits of an output row depend only
// on that row's inputs (and, for attention, on the keys/values it attends to),
// never on how many rows are computed together, how work is split into tiles
// or which thread runs a tile. Each output element is accumulated in one
// fixed order by one fixed sequence of float operations. Incremental
// evaluation relies on this to reproduce from-scratch results exactly.
//
// Matrices are row-major float arrays; `ld*` are row strides in elements.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_KERNELS_H
#define INCNN_RUNTIME_KERNELS_H

#include "ThreadPool.h"

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace incnn::runtime::kernels {

/// A 64-byte aligned float buffer.
class AlignedBuffer {
public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(int64_t count) { resize(count); }
  /// Reallocates to `count` zero-initialized floats.
  void resize(int64_t count);
  float *data() { return ptr.get(); }
  const float *data() const { return ptr.get(); }
  int64_t size() const { return count; }
  bool empty() const { return count == 0; }

private:
  struct Free {
    void operator()(float *p) const { std::free(p); }
  };
  std::unique_ptr<float[], Free> ptr;
  int64_t count = 0;
};

/// Columns per packed panel of a linear layer's weight.
constexpr int64_t kPanelWidth = 16;

/// A linear layer's weight W [out, in] repacked for `linear`: panels of
/// kPanelWidth output columns, each panel stored k-major
/// (panel p, k, j) = W[p * kPanelWidth + j, k], zero-padded past `out`.
struct PackedLinear {
  int64_t out = 0, in = 0, numPanels = 0;
  AlignedBuffer panels;
  AlignedBuffer bias; ///< padded to numPanels * kPanelWidth; empty if none
};

/// Packs W [out, in] (and an optional bias [out]).
void packLinear(const float *w, int64_t out, int64_t in, const float *bias,
                PackedLinear &packed, ThreadPool *pool = nullptr);

/// Y[n, out] = X[n, in] W^T + b. Each element is sum_k x[k] * w[k] by FMA
/// in increasing k from 0, then + b.
void linear(const float *x, int64_t n, int64_t ldx, const PackedLinear &w,
            float *y, int64_t ldy, ThreadPool *pool = nullptr);

/// LayerNorm of each row of x [n, width] (double accumulation, fixed order);
/// beta may be null (no bias).
void layerNorm(const float *x, int64_t n, int64_t width, const float *gamma,
               const float *beta, float epsilon, float *y,
               ThreadPool *pool = nullptr);

/// RMSNorm of each row: y = x / sqrt(mean(x^2) + eps) * gamma.
void rmsNorm(const float *x, int64_t n, int64_t width, const float *gamma,
             float epsilon, float *y, ThreadPool *pool = nullptr);

/// Elementwise ops over `count` floats (y may alias the inputs).
void relu(const float *x, int64_t count, float *y, ThreadPool *pool = nullptr);
void gelu(const float *x, int64_t count, float *y, ThreadPool *pool = nullptr);
/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise in float.
void geluTanh(const float *x, int64_t count, float *y,
              ThreadPool *pool = nullptr);
void silu(const float *x, int64_t count, float *y, ThreadPool *pool = nullptr);
void tanh(const float *x, int64_t count, float *y, ThreadPool *pool = nullptr);
void add(const float *a, const float *b, int64_t count, float *y,
         ThreadPool *pool = nullptr);
void mul(const float *a, const float *b, int64_t count, float *y,
         ThreadPool *pool = nullptr);

/// An elementwise activation (relu, gelu, ...).
using UnaryKernel = void (*)(const float *, int64_t, float *, ThreadPool *);
/// Gated activation of m rows x = [u | g] of width 2h: y = act(u) * g, each
/// element as the unary kernel and mul compute it.
void gated(const float *x, int64_t m, int64_t h, UnaryKernel act, float *y,
           ThreadPool *pool = nullptr);

/// Deterministic vectorized exp (Cephes polynomial), same bits for any lane.
float expf(float x);

/// y[i] = table[tokens[i]] (+ typeRow, when not null) for i < n.
void embed(const int32_t *tokens, int64_t n, const float *table, int64_t width,
           const float *typeRow, float *y);

/// y[i] = x[i] + table[firstPosition + i + offset].
void addPositions(const float *x, int64_t n, int64_t width, const float *table,
                  int64_t firstPosition, int64_t offset, float *y);

/// Squared L2 distance between a and b (length d), in the fixed order used
/// by vectorQuantize.
float squaredDistance(const float *a, const float *b, int64_t d);

/// Index of the nearest of the K codewords (codebook [K, d]) to x, ties to
/// the lowest index. Optionally returns the nearest and second-nearest
/// distances (second = +inf when K == 1) and every codeword's [K].
int64_t nearestCode(const float *x, const float *codebook, int64_t K, int64_t d,
                    float *bestDist = nullptr, float *secondDist = nullptr,
                    float *allDist = nullptr);

/// VQ of each row of x [n, width] with codebook [G, K, width/G]: writes the
/// chosen codewords to quantized [n, width] and their indices (as floats) to
/// codes [n, G], and, when `distances` is set, every codeword's squared
/// distance (nearestCode's) to distances [n, G, K].
void vectorQuantize(const float *x, int64_t n, int64_t width,
                    const float *codebook, int64_t G, int64_t K,
                    float *quantized, float *codes, ThreadPool *pool = nullptr,
                    float *distances = nullptr);

} // namespace incnn::runtime::kernels

#endif // INCNN_RUNTIME_KERNELS_H
