//===- ProgramBuilder.cpp - Build programs in memory ----------------------===//
#include "ProgramBuilder.h"

#include <Eigen/Core>
#include <Eigen/SVD>

namespace incnn::runtime {

double spectralNormClaim(const Weight &w) {
  Eigen::MatrixXd m(w.shape[0], w.shape[1]);
  for (int64_t r = 0; r < w.shape[0]; ++r)
    for (int64_t k = 0; k < w.shape[1]; ++k)
      m(r, k) = double(w.ptr()[r * w.shape[1] + k]);
  Eigen::BDCSVD<Eigen::MatrixXd> svd(m); // singular values only
  return svd.singularValues()(0) * (1.0 + 1e-6);
}

} // namespace incnn::runtime
