//===- CertificateTable.cpp - the program's certificate chains ------------===//
//
// The compiler states which VQ chains carry margin certificates and computes
// each linear weight's spectral norm with Eigen; the runtime checks the
// chains and proves the bounds at load (runtime/src/SpectralBound.cpp)
// instead of settling for min(||W||_F, sqrt(||W||_1 ||W||_inf)).
//
//===----------------------------------------------------------------------===//
#include "CertificateTable.h"

// GCC 12 reports a false "may be used uninitialized" inside Eigen 3.4's
// triangular products once BDCSVD is inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <Eigen/SVD>
#pragma GCC diagnostic pop

#include <algorithm>
#include <vector>

namespace rt = incnn::runtime;

double incnn::spectralNormClaim(const rt::Weight &w) {
  using RowMajorF =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMajorF> wm(w.ptr(), w.shape[0], w.shape[1]);
  Eigen::MatrixXd m = wm.cast<double>();
  Eigen::BDCSVD<Eigen::MatrixXd> svd(m); // singular values only
  if (svd.singularValues().size() == 0)
    return 0.0;
  return svd.singularValues()(0) * (1.0 + kNormClaimSlack);
}

void incnn::addCertificateChains(rt::Program &program,
                                 const std::vector<int32_t> &deferred) {
  std::vector<bool> cutoff(program.instrs.size(), false);
  for (const rt::Step &s : program.steps)
    if (s.kind == rt::StepKind::VQCutoff)
      cutoff[size_t(s.instr)] = true;
  program.certificateChains.clear();
  for (rt::CertificateChain chain : rt::findCertificateChains(program)) {
    if (!cutoff[size_t(chain.vq)])
      continue;
    if (chain.linear >= 0) {
      const rt::Instr &lin = program.instrs[size_t(chain.linear)];
      chain.normBound =
          spectralNormClaim(program.weights[size_t(lin.weights[0])]);
    }
    chain.defer = std::find(deferred.begin(), deferred.end(),
                            chain.attention) != deferred.end();
    program.certificateChains.push_back(chain);
  }
}
