//===- Quantize.h - VQ of a set of rows, shared by two steps -----*- C++
//-*-===//
//
// The codebook search of a VectorQuantize instruction over some rows, used
// by vq_cutoff (which then compares codes) and by recompute_rows of a VQ
// compiled without cutoff.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_STEPS_QUANTIZE_H
#define INCNN_RUNTIME_STEPS_QUANTIZE_H

#include "StepContext.h"

namespace incnn::runtime {

struct QuantizedRows {
  std::vector<float> scratch;   ///< the input rows, when not stored contiguous
  const float *input = nullptr; ///< [rows, width]
  std::vector<float> quantized; ///< [rows, width]
  std::vector<float> codes;     ///< [rows, groups]
  /// With `withDistances`: every codeword's squared distance [rows, groups,
  /// K] (what a certificate budget needs).
  std::vector<float> distances;
  int64_t width = 0, groups = 0;
};

/// Quantizes rows `rows` of instruction `index`'s input (refusing
/// non-finite inputs) and counts the MACs.
QuantizedRows quantizeRows(StepContext &ctx, size_t index, const Rows &rows,
                           bool withDistances = false);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_STEPS_QUANTIZE_H
