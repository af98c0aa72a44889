//===- ExactKernels.h - ISA-specific exact attention kernels -----*- C++
//-*-===//
//
// The hot loops of ExactAttention.cpp (rows from scratch) and
// ExactAttentionTerms.cpp (delta terms), compiled once per instruction set
// (ExactKernelsAvx2.cpp: the baseline; ExactKernelsAvx512.cpp) from one
// template source (ExactKernels.inc). Every ISA runs the same IEEE operations
// per (row, key) lane and sums exactly, so results are identical bits.
//
// Plain data only: the AVX-512 unit must not instantiate anything (std
// templates, inline functions) that another unit could link against.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_ATTENTION_EXACTKERNELS_H
#define INCNN_RUNTIME_ATTENTION_EXACTKERNELS_H

#include <cstdint>

namespace incnn::runtime::exact::detail {

/// A row's softmax shift is M = kShiftBucket * ceil(max_j s_j / kShiftBucket)
/// (exact in float), and `top` counts its keys with s_j > M - kShiftBucket:
/// a bucket this wide keeps M, and so every integer sum, while the top score
/// moves within it (a narrower one recomputed thousands of rows whenever an
/// attention-sink key's score crossed an integer).
constexpr float kShiftBucket = 4.0f;
/// A key's weight is round(exp(s_j - M) * kTermScale), at most 2^26.
constexpr float kTermScale = 67108864.0f; // 2^26
/// fma(p, v, kRoundMagic) rounds p * v (|p v| < 2^51) to the nearest
/// integer, which its bits less kRoundMagicBits are: how every integer term
/// is read.
constexpr double kRoundMagic = 6755399441055744.0; // 1.5 * 2^52
constexpr uint64_t kRoundMagicBits = 0x4338000000000000ULL;

/// Keys are read in blocks of up to this many past the last one used; key
/// panels are zero padded to a multiple of it.
constexpr int64_t kKeyPad = 128;

/// Row stride of a transposed key panel for n keys: padded, and 64 bytes
/// past a multiple of 4 KiB apart so that its rows do not share cache sets.
constexpr int64_t paddedKeys(int64_t n) {
  return (n + kKeyPad - 1) / kKeyPad * kKeyPad + 16;
}

/// Rows [0, numRows) of one query head, from scratch. Row r attends keys
/// [max(0, beginBase + r * beginStep), min(keyLimit, countBase + r *
/// countStep)), or [rowBegin[r], rowEnd[r]) where those are set (rows that
/// are not consecutive).
struct HeadJob {
  const float *q = nullptr; ///< row r's head slice at q + r * qStride
  int64_t qStride = 0, numRows = 0, countBase = 0, countStep = 0;
  int64_t beginBase = 0, beginStep = 0, keyLimit = INT64_MAX;
  const int64_t *rowBegin = nullptr, *rowEnd = nullptr;
  const float *kt = nullptr; ///< [hd][ktStride] rotated keys, zero padded
  int64_t ktStride = 0;
  const double *values = nullptr;      ///< [keys][hd], or null: vRows
  const float *const *vRows = nullptr; ///< value row j at vRows[j] + vOffset
  int64_t vOffset = 0;
  int64_t hd = 0;
  float scale = 1.0f;
  /// Row r's state: shift/top/denom at [r * slotStride], numer at
  /// [r * slotStride * hd].
  float *shift = nullptr;
  int32_t *top = nullptr;
  int64_t *denom = nullptr, *numer = nullptr;
  int64_t slotStride = 0;
};

/// Rows one accumulateTermRows call takes at most.
constexpr int64_t kMaxTermRows = 8;
/// Vectors one dotRows call takes at most.
constexpr int64_t kMaxDotVectors = 8;

struct KernelTable {
  const char *name;
  /// False on a score outside the contract (state of the rows unspecified).
  bool (*run)(const HeadJob &job);
  /// rows[r][c] += sum over t < count of round(p[r][t * pStride] * v[t][c]),
  /// for r < numRows <= kMaxTermRows and c < hd: `count` keys' integer terms
  /// for several rows, each value column loaded once for a group of rows. A
  /// term's sign is its weight's; a weight of 0 adds exactly 0.
  void (*accumulateTermRows)(const double *const *p, int64_t pStride,
                             const double *const *v, int64_t count, int64_t hd,
                             int64_t *const *rows, int64_t numRows);
  /// numer[c] = sum over t < numKeys of counts[t] * round(p[t] *
  /// v[t][offset + c]) for c < hd (counts[t] > 0): the integer terms
  /// of keys that repeat, each weighed once (computeRowFromRepeatedKeys).
  void (*repeatedKeyTerms)(const double *p, const int32_t *counts,
                           const float *const *v, int64_t offset,
                           int64_t numKeys, int64_t hd, int64_t *numer);
  /// out[h * hd + c] = float(double(numer[h * hd + c]) / denom[h]) for
  /// h < heads (0 where denom[h] is 0), as one reciprocal per head: a row's
  /// output from its integer sums.
  void (*finishHeads)(const int64_t *numer, const int64_t *denom, int64_t heads,
                      int64_t hd, float *out);
  /// One head of a delta-term block (8 lanes): for the terms t = order[i],
  /// i < count, p[i * 8 + l] = signs[t] * double(w[t * wStride + l]) *
  /// kTermScale in the lanes l of reach[t] (bit l), 0 in the others, and
  /// denom[l] = the sum over those terms of signs[t] * round(|p[i * 8 + l]|)
  /// (each below 2^51).
  void (*weighTerms)(const float *w, int64_t wStride, const uint32_t *reach,
                     const int32_t *signs, const int64_t *order, int64_t count,
                     double *p, int64_t *denom);
  /// y[i] = exp(x[i]) for x[i] <= 0, i < n: Simd.h's cephesExp, NonPositive
  /// form, the same IEEE operations as the attention kernels' lanes.
  void (*expNonPositive)(const float *x, int64_t n, float *y);
  /// out[j * rows + r] = sum over i < m of a[r * m + i] * x[j][i], for
  /// r < rows and j < numX <= kMaxDotVectors, in float (FMA, partial sums
  /// added in double), in any order: each row of `a` loaded once for every
  /// x (a directional certificate's codes, Certificates.cpp).
  void (*dotRows)(const float *a, int64_t rows, int64_t m,
                  const float *const *x, int64_t numX, double *out);
  /// For `linear` (Kernels.cpp): C[mr, 32] (+)= A[mr, kc] B[kc, 32] (+ the
  /// 32 biases), mr <= 6, over two adjacent weight panels (B at bp and
  /// bp + panelStride, 16 floats per k; A packed k-major, 6 floats per k).
  /// Every element is one FMA chain over k in order, then the bias, as the
  /// 16-column kernel computes it. It prefetches `nextLines` lines (k
  /// steps) of the two panels at `next`, spread over its k loop. Null where
  /// the 16-column kernel is the widest.
  void (*linearPanelPair)(int64_t kc, int64_t mr, const float *ap,
                          const float *bp, int64_t panelStride, float *c,
                          int64_t ldc, bool accumulate, const float *bias,
                          const float *next, int64_t nextLines);
  /// scores[t * stride + l] = the FMA chain over c < hd of qT[c * 8 + l] *
  /// kT[c * ldk + t], in increasing c as dot(), for t < numTerms (a multiple
  /// of kLaneTerms) and the 8 rows l of a delta-term block: lanes are terms,
  /// whose keys the caller transposed once for every block. Null where a
  /// vector of terms is no wider than the block's vector of rows.
  void (*blockTermScores)(const float *qT, const float *kT, int64_t ldk,
                          int64_t numTerms, int64_t hd, float *scores,
                          int64_t stride);
};

/// Terms in one vector of blockTermScores (the AVX-512 float lanes).
constexpr int64_t kLaneTerms = 16;

void linearPanelPairAvx512(int64_t kc, int64_t mr, const float *ap,
                           const float *bp, int64_t panelStride, float *c,
                           int64_t ldc, bool accumulate, const float *bias,
                           const float *next, int64_t nextLines);

void blockTermScoresAvx512(const float *qT, const float *kT, int64_t ldk,
                           int64_t numTerms, int64_t hd, float *scores,
                           int64_t stride);

extern const KernelTable kBaseKernels;
extern const KernelTable kAvx512Kernels; ///< built with INCNN_EXACT_AVX512

/// The table this CPU runs (AVX-512 where built and supported; INCNN_ISA
/// overrides), chosen once.
const KernelTable &kernels();

} // namespace incnn::runtime::exact::detail

#endif // INCNN_RUNTIME_ATTENTION_EXACTKERNELS_H
