//===- ExactKernelsAvx2.cpp - exact attention kernels, baseline ISA ------===//
//
// AVX2+FMA when the build targets it, otherwise one-lane scalar code running
// the same IEEE operations (Simd.h's traits).
//
//===----------------------------------------------------------------------===//
#include "Simd.h"
#include "attention/ExactKernels.h"

namespace incnn::runtime::exact::detail {
namespace {

/// The lanes of Simd.h and this ISA's blocking: kR rows per group and kNV
/// key vectors per block (kNV1 for one row), kRA rows and kNC column vectors
/// per accumulation block.
#ifdef INCNN_SIMD_AVX2
struct T : simd::Avx2 {
  static constexpr int kR = 8, kNV = 1, kRA = 2, kNC = 4, kNV1 = 8;
};
#else
struct T : simd::Scalar {
  static constexpr int kR = 4, kNV = 2, kRA = 2, kNC = 4, kNV1 = 8;
};
#endif

#include "attention/ExactKernels.inc"

} // namespace

#ifdef INCNN_SIMD_AVX2
const KernelTable kBaseKernels = {"avx2", &runJob, &accumulateTermRows};
#else
const KernelTable kBaseKernels = {"scalar", &runJob, &accumulateTermRows};
#endif

} // namespace incnn::runtime::exact::detail
