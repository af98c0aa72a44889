//===- CertificateChains.h - the certificate table's rules ------*- C++ -*-===//
//
// The compiler states in the program which attention -> [linear ->] VQ
// chains carry margin certificates, and claims an upper bound of each linear
// weight's spectral norm (docs/program-format.md). The loader checks the
// chains against the structural rule below and proves every claim it uses
// (SpectralBound.cpp); a session builds its Certificates from the table.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_CERTIFICATECHAINS_H
#define INCNN_RUNTIME_CERTIFICATECHAINS_H

#include "incnn/runtime/Program.h"

#include <cstdint>

namespace incnn::runtime {

/// Norms of a chain's linear layer, in double from its fp32 weights.
struct LinearNorms {
  double frobenius = 0.0; ///< ||W||_F
  /// min(||W||_F, sqrt(||W||_1 ||W||_inf)) * 1.0001: the runtime's own
  /// O(n^2) upper bound of ||W||_2, used when the program claims none.
  double elementwise = 0.0;
  double biasNorm = 0.0; ///< ||b||_2, 0 without a bias
};

LinearNorms linearNorms(const Program &program, const Instr &linear);

/// A claim on a weight with a side longer than this is not verified (the
/// proof costs O(rows * cols * min(rows, cols))): the session uses the
/// elementwise bound instead.
inline constexpr int64_t kMaxVerifiedNormSide = 4096;

/// True when a session uses the chain's claimed bound (so the loader must
/// prove it): a claim tighter than the elementwise bound on a weight small
/// enough to verify.
bool usesClaimedBound(const Program &program, const CertificateChain &chain,
                      const LinearNorms &norms);

/// The ||W||_2 bound a session uses for a chain of a verified program: the
/// claim when usesClaimedBound, else the elementwise bound (1 without a
/// linear instruction).
double chainNormBound(const Program &program, const CertificateChain &chain,
                      const LinearNorms &norms);

/// True when ||W||_2 <= s is proven for the row-major rows x cols matrix W,
/// by a float64 Cholesky factorization with every rounding error bounded
/// (SpectralBound.cpp). False when it is not proven (s too small, or too
/// close to ||W||_2 for float64 to tell).
bool spectralNormAtMost(const float *w, int64_t rows, int64_t cols, double s);

/// Checks the certificate table of a program whose instructions and steps
/// verified: each chain is the one the structure admits for its VQ
/// instruction (findCertificateChains' rule), no VQ instruction is in two
/// chains, and every claim a session would use is proven.
Status verifyCertificateChains(const Program &program);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_CERTIFICATECHAINS_H
