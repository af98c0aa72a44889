//===- TestUtil.h - Reference implementations for runtime tests -*- C++ -*-===//
//
// Naive double-precision references for every kernel and a reference
// interpreter for whole programs.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_TEST_TESTUTIL_H
#define INCNN_RUNTIME_TEST_TESTUTIL_H

#include "incnn/runtime/Program.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace incnn::runtime::test {

using Vec = std::vector<double>;

inline std::vector<float> randomFloats(size_t n, std::mt19937 &rng,
                                       float scale = 1.0f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float &x : v)
    x = d(rng);
  return v;
}

inline bool bitsEqual(const float *a, const float *b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

inline double maxRelError(const std::vector<float> &got, const Vec &want) {
  double scale = 1e-3;
  for (double w : want)
    scale = std::max(scale, std::fabs(w));
  double err = 0;
  for (size_t i = 0; i < got.size(); ++i)
    err = std::max(err, std::fabs(double(got[i]) - want[i]) / scale);
  return err;
}

// Kernels -------------------------------------------------------------------

inline Vec refLinear(const float *x, int64_t n, int64_t in, const float *w,
                     int64_t out, const float *b) {
  Vec y(static_cast<size_t>(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? b[o] : 0.0;
      for (int64_t k = 0; k < in; ++k)
        s += double(x[i * in + k]) * w[o * in + k];
      y[i * out + o] = s;
    }
  return y;
}

inline Vec refNorm(const Vec &x, int64_t n, int64_t width, const float *gamma,
                   const float *beta, double eps, bool rms) {
  Vec y(x.size());
  for (int64_t i = 0; i < n; ++i) {
    const double *r = &x[i * width];
    double mean = 0, var = 0;
    if (!rms) {
      for (int64_t j = 0; j < width; ++j)
        mean += r[j];
      mean /= width;
    }
    for (int64_t j = 0; j < width; ++j)
      var += (r[j] - mean) * (r[j] - mean);
    var /= width;
    for (int64_t j = 0; j < width; ++j)
      y[i * width + j] = (r[j] - mean) / std::sqrt(var + eps) * gamma[j] +
                         (beta ? beta[j] : 0.0);
  }
  return y;
}

inline void refRotate(double *x, int64_t hd, int64_t pos, double theta) {
  int64_t half = hd / 2;
  for (int64_t i = 0; i < half; ++i) {
    double a = pos * std::pow(theta, -2.0 * i / hd);
    double x1 = x[i], x2 = x[i + half];
    x[i] = x1 * std::cos(a) - x2 * std::sin(a);
    x[i + half] = x2 * std::cos(a) + x1 * std::sin(a);
  }
}

inline Vec refAttention(const Vec &q, const Vec &k, const Vec &v, int64_t n,
                        int64_t H, int64_t Hkv, bool causal, double theta,
                        double scale, int64_t window = 0) {
  int64_t qw = int64_t(q.size()) / n, hd = qw / H, kvw = Hkv * hd;
  Vec out(q.size());
  for (int64_t h = 0; h < H; ++h) {
    int64_t hk = h / (H / Hkv);
    for (int64_t i = 0; i < n; ++i) {
      Vec qi(q.begin() + i * qw + h * hd, q.begin() + i * qw + h * hd + hd);
      if (theta > 0)
        refRotate(qi.data(), hd, i, theta);
      // Keys [lo, L): all (causal: up to i), or those within the window.
      int64_t lo = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
      int64_t L = causal ? i + 1 : window > 0 ? std::min(n, i + window) : n;
      Vec s(static_cast<size_t>(L), 0.0);
      double m = -1e300;
      for (int64_t j = lo; j < L; ++j) {
        Vec kj(k.begin() + j * kvw + hk * hd,
               k.begin() + j * kvw + hk * hd + hd);
        if (theta > 0)
          refRotate(kj.data(), hd, j, theta);
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d)
          dot += qi[d] * kj[d];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      double sum = 0;
      for (int64_t j = lo; j < L; ++j)
        sum += (s[j] = std::exp(s[j] - m));
      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0;
        for (int64_t j = lo; j < L; ++j)
          acc += s[j] * v[j * kvw + hk * hd + d];
        out[i * qw + h * hd + d] = acc / sum;
      }
    }
  }
  return out;
}

/// Nearest codeword by double-precision squared distance (ties: lowest).
inline int64_t refNearest(const double *x, const float *cb, int64_t K,
                          int64_t d) {
  int64_t best = 0;
  double bestD = 1e300;
  for (int64_t c = 0; c < K; ++c) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j)
      s += (x[j] - cb[c * d + j]) * (x[j] - cb[c * d + j]);
    if (s < bestD) {
      bestD = s;
      best = c;
    }
  }
  return best;
}

// Whole programs
// ---------------------------------------------------------------

inline double refGelu(double x) {
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}
inline double refSilu(double x) { return x / (1 + std::exp(-x)); }

/// Evaluates `p` on `tokens` in double precision, op by op.
inline Vec referenceEvaluate(const Program &p,
                             const std::vector<int32_t> &tokens) {
  const int64_t n = int64_t(tokens.size());
  std::vector<Vec> vals(p.values.size());
  vals[p.tokenValue].assign(tokens.begin(), tokens.end());
  auto rows = [&](int32_t id) { return p.values[id].perToken ? n : 1; };
  for (const Instr &in : p.instrs) {
    auto W = [&](size_t i) { return p.weights[in.weights[i]].ptr(); };
    const int32_t res = in.results[0];
    const int64_t width = p.values[res].width;
    const Vec *a = in.operands.empty() ? nullptr : &vals[in.operands[0]];
    Vec y(static_cast<size_t>(rows(res) * width));
    switch (in.op) {
    case OpCode::Embed:
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < width; ++j)
          y[i * width + j] = W(0)[tokens[i] * width + j];
      break;
    case OpCode::AddLearnedPositions:
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < width; ++j)
          y[i * width + j] = (*a)[i * width + j] +
                             W(0)[(i + in.attrs.positionOffset) * width + j];
      break;
    case OpCode::LayerNorm:
    case OpCode::RmsNorm:
      y = refNorm(*a, rows(res), width, W(0),
                  in.op == OpCode::LayerNorm ? W(1) : nullptr, in.attrs.epsilon,
                  in.op == OpCode::RmsNorm);
      break;
    case OpCode::Linear: {
      int64_t inW = p.values[in.operands[0]].width;
      const float *b = in.weights.size() > 1 ? W(1) : nullptr;
      for (int64_t i = 0; i < rows(res); ++i)
        for (int64_t o = 0; o < width; ++o) {
          double s = b ? b[o] : 0.0;
          for (int64_t k = 0; k < inW; ++k)
            s += (*a)[i * inW + k] * W(0)[o * inW + k];
          y[i * width + o] = s;
        }
      break;
    }
    case OpCode::Relu:
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = std::max(0.0, (*a)[i]);
      break;
    case OpCode::Gelu:
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = refGelu((*a)[i]);
      break;
    case OpCode::Silu:
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = refSilu((*a)[i]);
      break;
    case OpCode::GeGlu:
    case OpCode::SwiGlu: // rows [u | g] of width 2 * width
      for (int64_t i = 0; i < rows(res); ++i)
        for (int64_t j = 0; j < width; ++j) {
          double u = (*a)[(2 * i) * width + j],
                 g = (*a)[(2 * i + 1) * width + j];
          y[i * width + j] =
              (in.op == OpCode::GeGlu ? refGelu(u) : refSilu(u)) * g;
        }
      break;
    case OpCode::GeluTanh: // Hugging Face gelu_new
      for (size_t i = 0; i < y.size(); ++i) {
        double x = (*a)[i];
        y[i] =
            0.5 * x *
            (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
      }
      break;
    case OpCode::Tanh: // BERT's pooler
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = std::tanh((*a)[i]);
      break;
    case OpCode::Add:
    case OpCode::Mul: {
      const Vec &b = vals[in.operands[1]];
      for (size_t i = 0; i < y.size(); ++i)
        y[i] = in.op == OpCode::Add ? (*a)[i] + b[i] : (*a)[i] * b[i];
      break;
    }
    case OpCode::Attention:
      y = refAttention(*a, vals[in.operands[1]], vals[in.operands[2]], n,
                       in.attrs.numHeads, in.attrs.numKvHeads, in.attrs.causal,
                       in.attrs.ropeTheta, in.attrs.scale, in.attrs.window);
      break;
    case OpCode::VectorQuantize: {
      const Weight &cb = p.weights[in.weights[0]];
      int64_t G = cb.shape[0], K = cb.shape[1], d = cb.shape[2];
      Vec codes(static_cast<size_t>(rows(res) * G));
      for (int64_t i = 0; i < rows(res); ++i)
        for (int64_t g = 0; g < G; ++g) {
          int64_t c =
              refNearest(&(*a)[i * width + g * d], cb.ptr() + g * K * d, K, d);
          codes[i * G + g] = double(c);
          for (int64_t j = 0; j < d; ++j)
            y[i * width + g * d + j] = cb.ptr()[(g * K + c) * d + j];
        }
      vals[in.results[1]] = codes;
      break;
    }
    case OpCode::Pool:
      for (int64_t j = 0; j < width; ++j) {
        if (in.attrs.pool == PoolKind::Last) {
          y[j] = (*a)[(n - 1) * width + j];
        } else {
          double s = 0;
          for (int64_t i = 0; i < n; ++i)
            s += (*a)[i * width + j];
          y[j] = s / n;
        }
      }
      break;
    }
    vals[res] = std::move(y);
  }
  return vals[p.outputValue];
}

} // namespace incnn::runtime::test

#endif // INCNN_RUNTIME_TEST_TESTUTIL_H
