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
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_CERTIFICATES_H
#define INCNN_RUNTIME_STEPS_CERTIFICATES_H

#include "incnn/runtime/Program.h"

#include <cstdint>
#include <vector>

namespace incnn::runtime {

struct Certificate {
  size_t attention = 0, linear = SIZE_MAX, vq = 0;
  double normBound = 1.0; ///< upper bound of ||W||_2
  double frobenius = 0.0; ///< ||W||_F, for rounding bounds
  double biasNorm = 0.0;
  int64_t inWidth = 0;
  std::vector<double> budget;  ///< per row: drift the codes still tolerate
  std::vector<double> refNorm; ///< per row: ||attention output|| at reference
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

  /// The budget of a row from its VQ input `x` and reference norm.
  double rowBudget(const Program &program, const Certificate &c, const float *x,
                   double aNorm) const;
  /// True (and the row's budget charged) when the move of an attention row
  /// from `oldOut` to `newOut` provably keeps its codes.
  bool certify(Certificate &c, int64_t row, const float *newOut,
               const float *oldOut, int64_t width) const;

  bool enabled() const { return enabled_; }
  std::vector<Certificate> &all() { return list; }
  const std::vector<Certificate> &all() const { return list; }

private:
  std::vector<Certificate> list;
  std::vector<int32_t> byAttention, byLinear, byVQ; ///< per instruction
  bool enabled_ = true;
};

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_CERTIFICATES_H
