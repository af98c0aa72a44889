//===- ExactAttention.h - attention with exact, updatable sums ---*- C++
//-*-===//
//
// Attention whose softmax sums are exact 64-bit fixed-point integers, so a
// row's result can be updated by subtracting old (key, value) terms and
// adding new ones and still equal, bit for bit, a from-scratch computation.
//
// For query row i and head h, with s_j = scale * dot(q_i, k_j) (rotary
// applied first):
//   M = 4 ceil(max_j s_j / 4) + 0       (the row's canonical shift; +0 not -0)
//   P_j = exp(s_j - M) * 2^26           (float, <= 2^26)
//   L = sum_j round(P_j)                (int64)
//   A[c] = sum_j round(P_j * v_j[c])    (product in double, exact; int64)
//   out[c] = float(double(A[c]) / double(L))
// `top` counts keys with s_j > M - 4; while it is positive and no key
// exceeds M, the shift is unchanged and delta updates are exact. Otherwise
// the row is recomputed.
//
// The contract (docs/exactness.md): every score is finite with |s_j| <=
// kMaxScore, so M and M - 4 are exact floats; every value is finite with
// |v| <= valueBound(maxKeys), so each term is exact (|P_j v_j| < 2^51) and no
// sum of up to maxKeys terms leaves int64 (maxKeys * 2^26 * |v| <= 2^62).
// Kernels report a breach instead of computing garbage; callers reject the
// input.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_EXACTATTENTION_H
#define INCNN_RUNTIME_EXACTATTENTION_H

#include "ThreadPool.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace incnn::runtime::exact {

/// Largest |score| (scale * q.k) the exact softmax accepts.
constexpr float kMaxScore = 1048576.0f; // 2^20
/// Most keys one attention row may attend to (programs longer than this are
/// refused at load).
constexpr int64_t kMaxKeys = int64_t(1) << 20;

/// Largest |v| for which sums over `maxKeys` keys stay exact in int64:
/// min(2^25, 2^36 / maxKeys).
float valueBound(int64_t maxKeys);

struct AttentionShape;
/// The keys row `row` of n attends to: [begin, end).
void keyRange(const AttentionShape &shape, int64_t row, int64_t n,
              int64_t &begin, int64_t &end);
/// (row, key) pairs of an n-row attention: its multiply-accumulates are this
/// times 2 * queryWidth.
uint64_t attendedPairs(const AttentionShape &shape, int64_t n);

/// True if every x[i] is finite with |x[i]| <= bound (false for NaN).
bool withinBound(const float *x, int64_t n, float bound);

struct AttentionShape {
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0;
  bool causal = true;
  float ropeTheta = 0.0f; ///< 0: no rotary embedding
  float scale = 1.0f;
  float valueBound = 0.0f; ///< see valueBound(); set from the program length
  /// > 0: row i attends keys [i - window + 1, i] (causal) or those within
  /// window - 1 of i (bidirectional); 0: every key (causal: up to i).
  int64_t window = 0;
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
  /// Row `toRow` becomes row `fromRow` of `from` (same heads and width).
  void copyRow(const AttentionState &from, int64_t fromRow, int64_t toRow);
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
  /// Returns false (the panel is then unusable) when a value is outside
  /// shape.valueBound.
  bool build(const float *kRot, const float *v, int64_t n,
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
/// Writes the output row and the row's state. Returns false when a score is
/// non-finite or above kMaxScore (the row's state is then unspecified).
bool computeRow(const float *qRot, const KeyPanel &panel, int64_t keyCount,
                const AttentionShape &shape, AttentionState &state, int64_t row,
                float *out);

/// (computeRow and computeRowFromRows know no positions: they refuse windowed
/// shapes.)
/// computeRow from key and value row pointers instead of a KeyPanel:
/// kRotRows[j] is key j's rotated row and vRows[j] its value row, both
/// [Hkv * hd], for j < keyCount. Same bits as computeRow on a panel of these
/// rows. Returns false when a value is outside shape.valueBound or a score
/// breaks the contract (the row's state is then unspecified).
bool computeRowFromRows(const float *qRot, const float *const *kRotRows,
                        const float *const *vRows, int64_t keyCount,
                        const AttentionShape &shape, AttentionState &state,
                        int64_t row, float *out);

/// Rows `rows` (ascending, not necessarily consecutive) from scratch, like
/// computeRowFromRows on each, reading every key once per call: the keys any
/// row attends to are transposed once and the kernels block rows (each row
/// over its own key range). `qRot` holds their rotated
/// queries [rows.size()][qWidth]; row t's state goes to `state` row t (sized
/// by the caller) and its output to out + t * qWidth. Same bits as
/// computeRowFromRows; returns false when a score breaks the contract. Every
/// value must lie within shape.valueBound: unlike computeRowFromRows it does
/// not check them (an attention_update checked each value when it changed,
/// the from-scratch run all of them). With `pool`, kv heads run as parallel
/// tasks (the same bits).
bool computeRowsFromRows(const float *qRot, const std::vector<int64_t> &rows,
                         int64_t numKeys, const float *const *kRotRows,
                         const float *const *vRows, const AttentionShape &shape,
                         AttentionState &state, float *out,
                         ThreadPool *pool = nullptr);

/// Rotated key rows `keys` (each a row of kvWidth), transposed kTermBlock
/// at a time (the last block padded with its last key), for
/// computeRowFromRepeatedKeys: [block][width][kTermBlock].
void transposeDistinctKeys(const float *const *keys, int64_t numKeys,
                           int64_t width, std::vector<float> &keysT,
                           ThreadPool *pool = nullptr);

/// computeRowFromRows over a row's keys given once each, key d with its
/// value row values[d] and its count counts[d] >= 1 (the same rotated key
/// and value bits each time), in any order: the same bits, since the row's
/// sums are integers (a key that occurs m times adds m times its rounded
/// terms). `keysT` is transposeDistinctKeys of these keys, or of a longer
/// list that starts with them. Its scores, shift, top count and
/// denominators follow the from-scratch kernels; every value must lie
/// within shape.valueBound. Writes state row `row` and the output, of the
/// heads of kv heads [kvBegin, kvEnd) (clipped; several calls may split a
/// row between threads). Returns false when a score breaks the contract.
bool computeRowFromRepeatedKeys(const float *qRot, const float *const *values,
                                const int32_t *counts, int64_t numKeys,
                                const float *keysT, const AttentionShape &shape,
                                AttentionState &state, int64_t row, float *out,
                                int64_t kvBegin = 0, int64_t kvEnd = INT64_MAX);

/// Rows handled together by applyTermToBlock.
constexpr int kTermBlock = 8;

/// Adds (sign +1) or removes (-1) one key's term for up to kTermBlock rows.
/// `qT` holds their rotated query rows transposed, [qWidth][kTermBlock]; lane l
/// is row rows[l] and takes part only when `use[l]`. Scores run the same FMA
/// chain per lane as dot(). Rows whose shift would change, or whose score
/// breaks the contract, get ok[l] = false (their state is then unspecified;
/// recomputing the row reports a breach).
void applyTermToBlock(const float *qT, const int64_t *rows, const bool *use,
                      const float *kRotRow, const float *vRow,
                      const AttentionShape &shape, AttentionState &state,
                      int sign, bool *ok);

/// qT[c * kTermBlock + l] = rows[l][c] for c < width: the queries of a block
/// of rows, transposed for applyTermsToBlock.
void transposeBlockRows(const float *const *rows, int64_t width, float *qT);

/// One key's term: its rotated key row, its value row widened to double
/// [Hkv * hd], and whether it is added (+1) or removed (-1).
struct TermRef {
  const float *kRot = nullptr;
  const double *v = nullptr;
  int sign = 1;
};

/// The rotated keys of terms that many blocks share, transposed once so
/// that a vector holds many terms: kT[(kvHead * hd + c) * ldk + t] for
/// t < ldk (empty where the CPU's kernels gain nothing by it).
struct TermKeys {
  std::vector<float> kT;
  int64_t ldk = 0;
};

/// Fills `keys` with the transposed keys of terms [0, count), or leaves it
/// empty where they would not be used.
void transposeTermKeys(const TermRef *terms, int64_t count,
                       const AttentionShape &shape, TermKeys &keys);

/// A block's terms [at, at + count) are the terms of `keys` from `column`
/// on, the same keys in the same order.
struct SharedTerms {
  const TermKeys *keys = nullptr;
  int64_t at = 0, column = 0, count = 0;
};

/// applyTermToBlock for several terms at once: term t takes part in lane l
/// when use[t * kTermBlock + l]. Lanes that stay ok end with the same state as
/// applying the terms one by one; each row's accumulators are read and
/// written once. A lane's shift is checked with the added keys counted before
/// the removed ones, so it stops only if the shift moves after all terms.
/// The scores of the terms in `shared` (numShared ranges, in increasing
/// `at`, apart) may read their keys transposed.
void applyTermsToBlock(const float *qT, const int64_t *rows, const bool *use,
                       const TermRef *terms, int64_t numTerms,
                       const AttentionShape &shape, AttentionState &state,
                       bool *ok, const SharedTerms *shared = nullptr,
                       int numShared = 0);

/// Recomputes the output row from the row's state.
void finishRow(const AttentionShape &shape, const AttentionState &state,
               int64_t row, float *out);

/// From-scratch attention over n tokens: q [n, H*hd], k/v [n, Hkv*hd].
/// Fills `out` [n, H*hd] and `state`. Returns false when a score or value
/// breaks the contract. `checkpoint`, when set, runs on the calling thread
/// between eighths of the work (it may throw to abandon it).
bool attention(const float *q, const float *k, const float *v, int64_t n,
               const AttentionShape &shape, float *out, AttentionState &state,
               ThreadPool *pool = nullptr,
               const std::function<void()> &checkpoint = {});

/// Instruction set of the attention kernels: "avx2" (the baseline), or
/// "avx512", chosen once from the CPU; INCNN_ISA=avx2|avx512 overrides (an
/// unavailable choice warns and keeps the default). Every choice computes
/// the same bits.
const char *kernelIsa();
/// Switches the kernels (tests, benchmarks); false, and no change, when `isa`
/// is unknown or not supported here.
bool setKernelIsa(const char *isa);

} // namespace incnn::runtime::exact

#endif // INCNN_RUNTIME_EXACTATTENTION_H
