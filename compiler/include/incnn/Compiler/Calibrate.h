//===- Calibrate.h - post-training VQ calibration ----------------*- C++
//-*-===//
//
// Fits VQ codebooks to a dense checkpoint without retraining: for each site
// in order, runs the model (with the codebooks fitted so far) on calibration
// windows, collects the activations the site quantizes and runs k-means.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_COMPILER_CALIBRATE_H
#define INCNN_COMPILER_CALIBRATE_H

#include "../../../checkpoint/Checkpoint.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mlir {
class MLIRContext;
} // namespace mlir

namespace incnn {

struct CalibrationOptions {
  std::vector<checkpoint::VQSite> sites;
  std::vector<std::vector<int32_t>> windows; ///< token windows to run
  int64_t maxRows = 20000;                   ///< activation rows per site
  int iterations = 15;                       ///< Lloyd iterations
  uint32_t seed = 0;
  std::function<void(const std::string &)> progress;
};

/// Adds the fitted sites to `checkpoint` (config and codebook tensors).
/// Returns an error message, or "".
std::string calibrateVQ(mlir::MLIRContext &context,
                        checkpoint::Checkpoint &checkpoint,
                        const CalibrationOptions &options);

/// Parses "L:SITE:G:K,..." (e.g. "0:attn_out:1:64"). Returns an error or "".
std::string parseVQSites(const std::string &text,
                         std::vector<checkpoint::VQSite> &sites);

} // namespace incnn

#endif // INCNN_COMPILER_CALIBRATE_H
