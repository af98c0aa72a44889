//===- ExactKernelsAvx512.cpp - exact attention kernels, AVX-512 ---------===//
//
// Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl; selected at run
// time. Uses no std templates or shared inline functions (see the header;
// Simd.h has internal linkage).
//
//===----------------------------------------------------------------------===//
#include "Simd.h"
#include "attention/ExactKernels.h"

namespace incnn::runtime::exact::detail {
namespace {

/// Simd.h's AVX-512 lanes and this ISA's blocking (see ExactKernelsAvx2.cpp).
struct T : simd::Avx512 {
  static constexpr int kR = 8, kNV = 2, kRA = 4, kNC = 4, kNV1 = 8;
};

#include "attention/ExactKernels.inc"

} // namespace

const KernelTable kAvx512Kernels = {"avx512", &runJob, &accumulateTermRows};

} // namespace incnn::runtime::exact::detail
