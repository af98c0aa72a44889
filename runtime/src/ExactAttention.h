//===- ExactAttention.h - attention with exact, updatable sums ---*- C++
//-*-===//
//
// Attention whose softmax sums are exact 64-bit fixed-point integers, so a
// row's result can be updated by subtracting old (key, value) terms and
// adding new ones and still equal, bit for bit, a from-scratch computation.
//
// For query row i and head h, with s_j = scale * dot(q_i, k_j) (rotary
// applied first):
//   M = ceil(max_j s_j)                 (the row's canonical shift)
//   P_j = exp(s_j - M) * 2^24           (float, <= 2^24)
//   L = sum_j round(P_j)                (int64)
//   A[c] = sum_j round(P_j * v_j[c])    (product in double, exact; int64)
//   out[c] = float(double(A[c]) / double(L))
// `top` counts keys with s_j > M - 1; while it is positive and no key
// exceeds M, the shift is unchanged and delta updates are exact. Otherwise
// the row is recomputed. Terms are exact while |P_j * v_j[c]| < 2^51, i.e.
// |v| < 2^27, and sums do not overflow for up to 4096 keys.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_EXACTATTENTION_H
#define INCNN_RUNTIME_EXACTATTENTION_H

#include "ThreadPool.h"

#include <cstdint>
#include <vector>

namespace incnn::runtime::exact {

struct AttentionShape {
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0;
  bool causal = true;
  float ropeTheta = 0.0f; ///< 0: no rotary embedding
  float scale = 1.0f;
  int64_t queryWidth() const { return numHeads * headDim; }
  int64_t kvWidth() const { return numKvHeads * headDim; }
  int64_t kvHeadOf(int64_t h) const { return h / (numHeads / numKvHeads); }
};

/// Softmax state of every (row, head) of one attention op.
struct AttentionState {
  int64_t numRows = 0, numHeads = 0, headDim = 0;
  std::vector<float> shift;   ///< [rows * H]
  std::vector<int32_t> top;   ///< [rows * H]
  std::vector<int64_t> denom; ///< [rows * H]
  std::vector<int64_t> numer; ///< [rows * H * hd]

  void resize(int64_t rows, int64_t heads, int64_t hd);
  /// New state whose row i is old row `from[i]` (or zeroed when -1).
  void remap(const std::vector<int64_t> &from);
  int64_t bytesPerRow() const { return numHeads * (16 + 8 * headDim); }
};

/// Dot product as one FMA chain in increasing index order; the vectorized
/// full-row kernel computes every score with the same chain, lane by lane.
float dot(const float *a, const float *b, int64_t n);

/// Keys and values laid out for computing many rows: per kv head the
/// rotated keys transposed [hd][nPad] and the values widened to double
/// [n][hd].
struct KeyPanel {
  int64_t numKeys = 0, nPad = 0;
  std::vector<float> keysT;   ///< [Hkv][hd][nPad]
  std::vector<double> values; ///< [Hkv][n][hd]
  void build(const float *kRot, const float *v, int64_t n,
             const AttentionShape &shape, ThreadPool *pool);
};

/// Rotates one row [heads * hd] in place for absolute position `position`
/// (Hugging Face half-split pairs). No-op when theta == 0.
void rotateRow(float *row, int64_t heads, int64_t hd, float theta,
               int64_t position);

/// Rows [0, n) of x [n, heads*hd], rotated by their positions into `out`
/// (a copy when theta == 0).
void rotateRows(const float *x, int64_t n, int64_t heads, int64_t hd,
                float theta, float *out, ThreadPool *pool = nullptr);

/// Computes row `row` from scratch: attends to keys [0, keyCount) of
/// `panel` (causal: keyCount = row + 1). `qRot` is the rotated query row.
/// Writes the output row and the row's state.
void computeRow(const float *qRot, const KeyPanel &panel, int64_t keyCount,
                const AttentionShape &shape, AttentionState &state, int64_t row,
                float *out);

/// Applies one key's term to row `row` of `state`: sign +1 adds it, -1
/// removes it. Returns false when the row's shift would change (the row must
/// then be recomputed; `state` for the row is then unspecified).
bool applyTerm(const float *qRot, const float *kRotRow, const float *vRow,
               const AttentionShape &shape, AttentionState &state, int64_t row,
               int sign);

/// Rows handled together by applyTermToBlock.
constexpr int kTermBlock = 8;

/// applyTerm for up to kTermBlock rows at once. `qT` holds their rotated
/// query rows transposed, [qWidth][kTermBlock]; lane l is row rows[l] and
/// takes part only when `use[l]`. Scores run the same FMA chain per lane as
/// dot(), so the result equals calling applyTerm row by row. Rows whose
/// shift would change get ok[l] = false (their state is then unspecified).
void applyTermToBlock(const float *qT, const int64_t *rows, const bool *use,
                      const float *kRotRow, const float *vRow,
                      const AttentionShape &shape, AttentionState &state,
                      int sign, bool *ok);

/// Recomputes the output row from the row's state.
void finishRow(const AttentionShape &shape, const AttentionState &state,
               int64_t row, float *out);

/// From-scratch attention over n tokens: q [n, H*hd], k/v [n, Hkv*hd].
/// Fills `out` [n, H*hd] and `state`.
void attention(const float *q, const float *k, const float *v, int64_t n,
               const AttentionShape &shape, float *out, AttentionState &state,
               ThreadPool *pool = nullptr);

} // namespace incnn::runtime::exact

#endif // INCNN_RUNTIME_EXACTATTENTION_H
