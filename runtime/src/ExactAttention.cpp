//===- ExactAttention.cpp - attention with exact, updatable sums ----------===//
#include "ExactAttention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace incnn::runtime::exact {

namespace {

constexpr float kTermScale = 16777216.0f; // 2^24

/// Rounds |x| < 2^51 to the nearest integer (ties to even), exactly, with
/// plain double arithmetic so scalar and vectorized code agree.
inline int64_t roundToInt(double x) {
  double shifted = x + 6755399441055744.0; // 1.5 * 2^52
  int64_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return bits - int64_t(0x4338000000000000LL);
}

/// exp(x) for x <= 0 by range reduction and a degree-6 polynomial: the same
/// IEEE operations for every element, whether or not the loop is vectorized.
void expNonPositive(const float *x, int64_t n, float *y) {
  for (int64_t i = 0; i < n; ++i) {
    float v = std::max(x[i], -87.0f);
    float k = std::floor(v * 1.44269504088896341f + 0.5f);
    float r = v - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (int32_t(k) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    y[i] = x[i] < -87.0f ? 0.0f : p * scale;
  }
}

} // namespace

void AttentionState::resize(int64_t rows, int64_t heads, int64_t hd) {
  numRows = rows;
  numHeads = heads;
  headDim = hd;
  shift.assign(size_t(rows * heads), 0.0f);
  top.assign(size_t(rows * heads), 0);
  denom.assign(size_t(rows * heads), 0);
  numer.assign(size_t(rows * heads * hd), 0);
}

void AttentionState::remap(const std::vector<int64_t> &from) {
  AttentionState next;
  next.resize(int64_t(from.size()), numHeads, headDim);
  int64_t H = numHeads, hd = headDim;
  for (size_t i = 0; i < from.size(); ++i) {
    int64_t r = from[i];
    if (r < 0)
      continue;
    std::copy_n(&shift[size_t(r * H)], H, &next.shift[i * H]);
    std::copy_n(&top[size_t(r * H)], H, &next.top[i * H]);
    std::copy_n(&denom[size_t(r * H)], H, &next.denom[i * H]);
    std::copy_n(&numer[size_t(r * H * hd)], H * hd, &next.numer[i * H * hd]);
  }
  *this = std::move(next);
}

float dot(const float *a, const float *b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l)
      acc[l] = std::fma(a[i + l], b[i + l], acc[l]);
  for (int l = 0; i < n; ++i, ++l)
    acc[l] = std::fma(a[i], b[i], acc[l]);
  float s01 = acc[0] + acc[1], s23 = acc[2] + acc[3];
  float s45 = acc[4] + acc[5], s67 = acc[6] + acc[7];
  return (s01 + s23) + (s45 + s67);
}

void rotateRow(float *row, int64_t heads, int64_t hd, float theta,
               int64_t position) {
  if (theta == 0.0f)
    return;
  int64_t half = hd / 2;
  for (int64_t t = 0; t < half; ++t) {
    double angle =
        double(position) * std::pow(double(theta), -double(2 * t) / double(hd));
    float c = float(std::cos(angle)), s = float(std::sin(angle));
    for (int64_t h = 0; h < heads; ++h) {
      float *x = row + h * hd;
      float x1 = x[t], x2 = x[t + half];
      float a = x1 * c, b = x2 * s, d = x2 * c, e = x1 * s;
      x[t] = a - b;
      x[t + half] = d + e;
    }
  }
}

void rotateRows(const float *x, int64_t n, int64_t heads, int64_t hd,
                float theta, float *out, ThreadPool *pool) {
  int64_t width = heads * hd;
  std::memcpy(out, x, sizeof(float) * size_t(n * width));
  if (theta == 0.0f)
    return;
  parallelFor(pool, n, [&](int64_t i) {
    rotateRow(out + i * width, heads, hd, theta, i);
  });
}

void computeRow(const float *qRot, const float *kRot, const float *v,
                int64_t keyCount, const AttentionShape &shape,
                AttentionState &state, int64_t row, float *out) {
  int64_t H = shape.numHeads, hd = shape.headDim, kvw = shape.kvWidth();
  std::vector<float> scores(size_t(std::max<int64_t>(keyCount, 1)));
  std::vector<float> weights(scores.size());
  for (int64_t h = 0; h < H; ++h) {
    const float *q = qRot + h * hd;
    int64_t kvOff = shape.kvHeadOf(h) * hd;
    float maxScore = -INFINITY;
    for (int64_t j = 0; j < keyCount; ++j) {
      scores[j] = dot(q, kRot + j * kvw + kvOff, hd) * shape.scale;
      maxScore = std::max(maxScore, scores[j]);
    }
    float shift = std::ceil(maxScore);
    int32_t top = 0;
    for (int64_t j = 0; j < keyCount; ++j) {
      top += scores[j] > shift - 1.0f;
      scores[j] -= shift;
    }
    expNonPositive(scores.data(), keyCount, weights.data());
    int64_t denom = 0;
    int64_t *numer = &state.numer[size_t((row * H + h) * hd)];
    std::fill_n(numer, hd, 0);
    for (int64_t j = 0; j < keyCount; ++j) {
      float p = weights[j] * kTermScale;
      denom += roundToInt(double(p));
      const float *vj = v + j * kvw + kvOff;
      for (int64_t c = 0; c < hd; ++c)
        numer[c] += roundToInt(double(p) * double(vj[c]));
    }
    state.shift[size_t(row * H + h)] = shift;
    state.top[size_t(row * H + h)] = top;
    state.denom[size_t(row * H + h)] = denom;
  }
  finishRow(shape, state, row, out);
}

bool applyTerm(const float *qRot, const float *kRotRow, const float *vRow,
               const AttentionShape &shape, AttentionState &state, int64_t row,
               int sign) {
  int64_t H = shape.numHeads, hd = shape.headDim;
  for (int64_t h = 0; h < H; ++h) {
    int64_t kvOff = shape.kvHeadOf(h) * hd;
    float score = dot(qRot + h * hd, kRotRow + kvOff, hd) * shape.scale;
    size_t slot = size_t(row * H + h);
    float shift = state.shift[slot];
    if (score > shift)
      return false; // the canonical shift would rise
    if (score > shift - 1.0f) {
      state.top[slot] += sign;
      if (state.top[slot] <= 0)
        return false; // the maximum may have dropped a bucket
    }
    float x = score - shift, weight;
    expNonPositive(&x, 1, &weight);
    float p = weight * kTermScale;
    state.denom[slot] += sign * roundToInt(double(p));
    int64_t *numer = &state.numer[slot * size_t(hd)];
    const float *vj = vRow + kvOff;
    for (int64_t c = 0; c < hd; ++c)
      numer[c] += sign * roundToInt(double(p) * double(vj[c]));
  }
  return true;
}

void finishRow(const AttentionShape &shape, const AttentionState &state,
               int64_t row, float *out) {
  int64_t H = shape.numHeads, hd = shape.headDim;
  for (int64_t h = 0; h < H; ++h) {
    size_t slot = size_t(row * H + h);
    double denom = double(state.denom[slot]);
    const int64_t *numer = &state.numer[slot * size_t(hd)];
    for (int64_t c = 0; c < hd; ++c)
      out[h * hd + c] = denom > 0 ? float(double(numer[c]) / denom) : 0.0f;
  }
}

void attention(const float *q, const float *k, const float *v, int64_t n,
               const AttentionShape &shape, float *out, AttentionState &state,
               ThreadPool *pool) {
  int64_t qw = shape.queryWidth(), kvw = shape.kvWidth();
  std::vector<float> qRot(size_t(n * qw)), kRot(size_t(n * kvw));
  rotateRows(q, n, shape.numHeads, shape.headDim, shape.ropeTheta, qRot.data(),
             pool);
  rotateRows(k, n, shape.numKvHeads, shape.headDim, shape.ropeTheta,
             kRot.data(), pool);
  state.resize(n, shape.numHeads, shape.headDim);
  // Causal rows have growing cost: interleave them across tasks.
  parallelFor(pool, n, [&](int64_t t) {
    int64_t i = (t % 2 == 0) ? t / 2 : n - 1 - t / 2;
    computeRow(qRot.data() + i * qw, kRot.data(), v, shape.causal ? i + 1 : n,
               shape, state, i, out + i * qw);
  });
}

} // namespace incnn::runtime::exact
