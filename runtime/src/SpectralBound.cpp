//===- SpectralBound.cpp - proving ||W||_2 <= s in float64 ----------------===//
//
// The compiler claims an upper bound s of a linear weight's spectral norm
// (from an SVD, 1e-6 above sigma_max); the loader proves it instead of
// trusting it. ||W||_2 <= s iff s^2 I - G is positive semidefinite, where
// G = W^T W or W W^T (the same nonzero eigenvalues; we take the n x n one,
// n = min(rows, cols), each entry a sum of m = max(rows, cols) products).
// With u = 2^-53 and gamma(k) = k u / (1 - k u):
//
// 1. Forming. H^ = fl(t I - G) for a t < s^2 chosen below. Each entry is a
//    sum of m + 1 terms (t and the products -w_ki w_kj, exact in double: 24
//    by 24 mantissa bits), added in any order (Eigen blocks the sum), so
//    |H^ - H| <= gamma(m+1) (t I + |W|^T |W|) entrywise and
//    ||H^ - H||_2 <= gamma(m+1) (t + ||W||_F^2), as || |W|^T |W| ||_2 =
//    || |W| ||_2^2 <= ||W||_F^2.
// 2. Factoring. If the Cholesky factorization of H^ runs to completion
//    (Eigen's LLT: every pivot > 0, and we check that every entry of the
//    factor is finite, which rules out an overflow on the way), then
//    R^T R = H^ + E with |E| <= gamma(n+1) |R^T| |R| (Demmel; Higham,
//    Accuracy and Stability of Numerical Algorithms, Thm 10.3, for any
//    order of the inner products, so also Eigen's blocked one). With r_i the
//    columns of R, ||r_i||^2 = h^_ii + e_ii <= h^_ii / (1 - gamma(n+1)), so
//    ||E||_2 <= gamma(n+1) sum_i ||r_i||^2 <= gamma(n+1) / (1 - gamma(n+1))
//    tr(H^), and lambda_min(H^) >= -||E||_2 as R^T R is semidefinite. We use
//    gamma(2n+2) (a division may be done through a reciprocal: two
//    roundings) and add Rump's term for gradual underflow, 4 n (2(n+2) +
//    max h^_ii) 2^-1074 (Rump, Verification of positive definiteness, BIT
//    46, 2006).
// 3. Hence lambda_max(G) <= t + ||E||_2 + ||H^ - H||_2 <= t + delta, where
//    delta bounds both terms with s^2 in place of t and ||W||_F^2 rounded
//    up. We double delta (its own rounding), make it at least 4 u s^2 and
//    take t = s^2 - 4 delta, which leaves more than the rounding of s^2 and
//    of the subtraction: lambda_max(G) <= s^2, i.e. ||W||_2 <= s.
//
// delta is about n^2 u relative to s^2 (7e-11 at n = 768), far inside the
// compiler's 1e-6 slack: an honest claim passes, and a claim below sigma_max
// always fails (H would have a negative eigenvalue of size >= 4 delta).
//
// Cost: the rank-n update (n^2 m / 2 multiply-adds) and the factorization
// (n^3 / 6); measured in docs/program-format.md.
//
//===----------------------------------------------------------------------===//
#include "CertificateChains.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>

namespace incnn::runtime {

namespace {

double gamma(double k) {
  const double u = std::ldexp(1.0, -53);
  return k * u / (1.0 - k * u);
}

using RowMajorF =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

} // namespace

bool spectralNormAtMost(const float *w, int64_t rows, int64_t cols, double s) {
  if (!(s > 0.0) || !std::isfinite(s) || rows <= 0 || cols <= 0)
    return false;
  const double u = std::ldexp(1.0, -53);
  // The n x n Gram matrix's factor: B^T B with B m x n.
  Eigen::Map<const RowMajorF> wm(w, rows, cols);
  Eigen::MatrixXd b = rows >= cols
                          ? Eigen::MatrixXd(wm.cast<double>())
                          : Eigen::MatrixXd(wm.transpose().cast<double>());
  const double n = double(b.cols()), m = double(b.rows());
  // Far past kMaxVerifiedNormSide: the bounds below need k u << 1.
  if (n * m * u > 1e-3)
    return false;

  // ||W||_F^2 rounded up: n m exact squares summed with rounding.
  double fro2 = b.squaredNorm() * (1.0 + 2.0 * gamma(n * m));
  double s2 = s * s;
  double sUp = s2 * (1.0 + 4.0 * u); // >= s^2 >= t
  double form = gamma(m + 1) * (sUp + fro2);
  double maxDiag = sUp + form; // >= every h^_ii
  double g = gamma(2 * n + 2);
  double chol = g / (1.0 - g) * n * maxDiag +
                std::ldexp(4.0 * n * (2.0 * (n + 2) + maxDiag), -1074);
  double delta = std::max(2.0 * (form + chol), 4.0 * u * sUp);
  double t = s2 - 4.0 * delta;
  if (!(t > 0.0) || !std::isfinite(delta))
    return false;

  Eigen::MatrixXd h = Eigen::MatrixXd::Identity(b.cols(), b.cols()) * t;
  h.selfadjointView<Eigen::Lower>().rankUpdate(b.transpose(), -1.0);
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>, Eigen::Lower> llt(h); // in place
  if (llt.info() != Eigen::Success)
    return false;
  for (Eigen::Index j = 0; j < h.cols(); ++j)
    for (Eigen::Index i = j; i < h.rows(); ++i)
      if (!std::isfinite(h(i, j)))
        return false;
  return true;
}

} // namespace incnn::runtime
