//===- CertificateTable.h - the program's certificate chains ----*- C++ -*-===//
#ifndef INCNN_COMPILER_TARGET_CERTIFICATETABLE_H
#define INCNN_COMPILER_TARGET_CERTIFICATETABLE_H

#include "incnn/runtime/Program.h"

#include <vector>

namespace incnn {

/// Relative slack of a claimed norm bound over the SVD's largest singular
/// value: far above the SVD's error (~n u) and the runtime's proof margin
/// (~n^2 u, 7e-11 at n = 768), far below what it costs in certified rows.
inline constexpr double kNormClaimSlack = 1e-6;

/// An upper bound of ||W||_2: W's largest singular value (Eigen's BDCSVD,
/// in double) times 1 + kNormClaimSlack. The runtime proves it at load.
double spectralNormClaim(const runtime::Weight &w);

/// Fills `program.certificateChains` (a verified program): every
/// attention -> [linear ->] VQ chain the runtime admits whose quantizer has a
/// vq_cutoff step (a quantizer recomputed without cutoff never consults
/// certificate budgets), each linear weight's norm claimed by
/// spectralNormClaim. A chain defers certified rows when its attention is in
/// `deferred` (the attention_update steps marked `defer`).
void addCertificateChains(runtime::Program &program,
                          const std::vector<int32_t> &deferred);

} // namespace incnn

#endif // INCNN_COMPILER_TARGET_CERTIFICATETABLE_H
