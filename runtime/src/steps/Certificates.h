//===- Certificates.h - VQ margin certificates ------------------*- C++ -*-===//
//
// A VQ op fed by attention through one linear layer (or directly) can skip
// rows whose attention output moved too little to flip a code: the cached
// margin between the nearest and second-nearest codewords, less the drift
// since the codes were computed, bounds every change of the VQ input, with
// float rounding accounted for. Used by the attention_update step (certify
// rows), the recompute_rows step of the linear layer (reference norms) and
// the vq_cutoff step (fresh budgets). The chains and the norm bounds come
// from the program's certificate table (CertificateChains.h).
//
// Where the compiler asks for it (CertificateChain::defer), a row whose
// codes a bound proves unchanged is not updated at all: its accumulators go
// stale, and the certificate keeps what the next bound needs (lower bounds
// of the row's softmax denominators and top counts) until the row is
// recomputed (AttentionDefer.cpp, docs/exactness.md).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_CERTIFICATES_H
#define INCNN_RUNTIME_STEPS_CERTIFICATES_H

#include "incnn/runtime/Program.h"

#include <cmath>
#include <cstdint>
#include <deque>
#include <vector>

namespace incnn::runtime {

/// Terms (a key added or removed) that deferred rows have not applied yet,
/// shared by the rows they reached. Ids grow with each term, so a row's ids
/// are ascending, in the order its terms came (within an edit: its added
/// terms, its removed ones, then the row's own edge terms).
class PendingTerms {
public:
  struct Entry {
    std::vector<float> kRot; ///< rotated key row
    std::vector<double> v;   ///< value row, widened
    int sign = 1;
    int64_t refs = 0; ///< rows that have not applied it
  };
  /// A new term, retained by no row yet.
  int64_t add(const std::vector<float> &kRot, const std::vector<double> &v,
              int sign);
  const Entry &operator[](int64_t id) const {
    return entries[size_t(id - base)];
  }
  void retain(int64_t id) { ++entries[size_t(id - base)].refs; }
  /// One row less holds `id`; a term no row holds frees its rows.
  void release(int64_t id);
  void clear();
  size_t liveEntries() const { return entries.size(); }

private:
  std::deque<Entry> entries;
  int64_t base = 0; ///< id of entries.front()
};

struct Certificate {
  size_t attention = 0, linear = SIZE_MAX, vq = 0;
  double normBound = 1.0; ///< upper bound of ||W||_2
  double frobenius = 0.0; ///< ||W||_F, for rounding bounds
  double biasNorm = 0.0;
  int64_t inWidth = 0;
  int64_t groups = 0, codes = 0, codeWidth = 0; ///< codebook [G, K, d]
  std::vector<double> budget;  ///< per row: drift the codes still tolerate
  std::vector<double> refNorm; ///< per row: ||attention output|| at reference
  /// Per row, stale rows only: its budget when it went stale (its output
  /// then is what its stale accumulators still give).
  std::vector<double> syncBudget;

  bool defer = false;   ///< the attention defers certified rows
  int64_t numHeads = 0; ///< of the attention
  /// Per row: the terms it has not applied (its accumulators lag behind its
  /// keys: the row is stale), in order.
  std::vector<std::vector<int64_t>> pending;
  PendingTerms terms;
  /// [row * numHeads + h], stale rows only: a lower bound of the row's
  /// softmax denominator L and of its count `top` (ExactAttention.h).
  std::vector<double> lowDenom;
  std::vector<int32_t> lowTop;
  /// [row * numHeads + h], where the chain defers: an upper bound of
  /// ||output_h|| of the row's exact state, kept when its output is
  /// finished; infinite when unknown. Read only while the row is not stale.
  std::vector<double> outNorm;
  /// Per kv head: the largest ||v_h|| of every value the attention has
  /// read since it was computed from scratch.
  std::vector<double> valueNorm;

  /// Directional certificates (a chain with a linear layer that does not
  /// defer): when the norm budget cannot absorb a move Δo, the exact change
  /// of each code's score, (W^T (c_k - c_j)) · Δo, is summed since the row's
  /// reference (its last projection) and checked against the margins the VQ
  /// measured there, code by code (docs/exactness.md).
  bool directional = false;
  std::vector<float> along;     ///< [G * K][inWidth]: W_g^T c_{g,k}, rounded
  std::vector<double> alongErr; ///< [G * K]: error of z_k per unit ||Δo||
  std::vector<double> alongSum; ///< [G * K]: error of a sum of z_k per edit
  double alongFloor = 0;        ///< what underflow can add to one z_k
  std::vector<double> codeGap;  ///< [G][K][K]: >= ||c_k - c_j||
  // Per state slot (ctx.slotOf(): stable while rows move, so an edit does
  // not copy every row's entries):
  std::vector<float> refDist;    ///< [G * K]: VQ distances at the reference
  std::vector<int32_t> refCode;  ///< [G]: the codes there
  std::vector<double> alongMove; ///< [G * K]: sum of z since then
  /// Sums of ||Δo|| of the moves the norm budget absorbed and of those
  /// certified by direction, and their count (-1: no reference).
  std::vector<double> normMoved, alongMoved;
  std::vector<int32_t> alongEdits;

  bool stale(int64_t row) const { return !pending[size_t(row)].empty(); }
  /// The row (in state slot `slot`) has a norm budget or a directional
  /// reference: certify may keep its codes.
  bool certifiable(int64_t row, int64_t slot) const {
    return std::isfinite(budget[size_t(row)]) ||
           (directional && size_t(slot) < alongEdits.size() &&
            alongEdits[size_t(slot)] >= 0);
  }
  /// Row `row` is exact again (caught up or recomputed).
  void settle(int64_t row);
  /// Every row is exact again.
  void settleAll();
};

class Certificates {
public:
  /// One certificate per chain of `program`'s certificate table (a verified
  /// program: its norm claims are proven).
  void build(const Program &program, bool enabled);
  Certificate *ofAttention(size_t instr);
  Certificate *ofLinear(size_t instr);
  Certificate *ofVQ(size_t instr);
  /// Every budget reset (from scratch) or sized for `n` rows.
  void prepare(int64_t n, bool fromScratch);
  /// Rows follow an edit: row i of the result is old row from[i].
  void remap(const std::vector<int64_t> &from);
  /// Room for state slots [0, capacity) (new ones have no reference).
  void growSlots(int64_t capacity);

  /// The budget of a row from its VQ input `x` and reference norm.
  double rowBudget(const Program &program, const Certificate &c, const float *x,
                   double aNorm) const;
  /// rowBudget from every codeword's squared distance [G, K] and the
  /// chosen codes [G] (kernels::vectorQuantize's, computed once by the VQ).
  double budgetOfDistances(const Certificate &c, const float *distances,
                           const float *codes, double aNorm) const;
  /// The VQ projected `row` afresh: its budget, and the reference of its
  /// directional certificate.
  void setReference(Certificate &c, int64_t row, int64_t slot,
                    const float *distances, const float *codes,
                    double aNorm) const;
  /// True (and the row's budget charged) when the move of an attention row
  /// from `oldOut` to `newOut` provably keeps its codes.
  bool certify(Certificate &c, int64_t row, int64_t slot, const float *newOut,
               const float *oldOut, int64_t width) const;
  /// One row for certifyRows: its row, state slot and outputs.
  struct CertifyRow {
    int64_t row, slot;
    const float *newOut, *oldOut;
  };
  /// certify for `count` <= kMaxCertifyRows rows at once (their directional
  /// checks share each load of the code directions); certified[i] for each.
  void certifyRows(Certificate &c, const CertifyRow *rows, int64_t count,
                   int64_t width, bool *certified) const;
  static constexpr int64_t kMaxCertifyRows = 8;
  /// A stale row caught up: its output went from `syncOut` (when it went
  /// stale) to `out`; its budget becomes the larger of what the charges left
  /// and its budget then less the measured move.
  void refresh(Certificate &c, int64_t row, const float *out,
               const float *syncOut, int64_t width) const;

  bool enabled() const { return enabled_; }
  std::vector<Certificate> &all() { return list; }
  const std::vector<Certificate> &all() const { return list; }

private:
  /// ||newOut - oldOut|| (an upper bound), and ||newOut||^2 in `normSq`.
  static double moveOf(const float *newOut, const float *oldOut, int64_t width,
                       double &normSq);
  /// The directional check of a move of `move` (an upper bound of ||Δo||)
  /// whose rounding bound at the new output is `rhoNew`, with z = along . Δo
  /// per code. When it holds, `room` bounds how far the VQ input may then
  /// move in any direction.
  static bool certifyAlong(Certificate &c, int64_t row, int64_t slot,
                           double move, double rhoNew, const double *z,
                           double &room);
  /// The linear layer's rounding bound at an input of norm `aNorm`.
  static double rhoOf(const Certificate &c, double aNorm);

  std::vector<Certificate> list;
  std::vector<int32_t> byAttention, byLinear, byVQ; ///< per instruction
  bool enabled_ = true;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_CERTIFICATES_H
