//===- attention_bench.cpp - from-scratch exact attention timings ---------===//
//
//   incnn-attention-bench [--heads H] [--head-dim hd] [--threads T]
//                         [--isa avx2|avx512] [--reps R] [--row-reps R]
//                         [--rows]
//                         [--scattered R] [--terms T] n...
//
// Times exact::attention (causal, no rotary) on random inputs; --rows also
// times computeRowFromRows for the last row, --scattered computeRowsFromRows
// for R rows spread evenly over the document (as code flips are), in runs of
// 64 as the attention update takes them; --terms applyTermsToBlock with T
// changed keys (as T/2 code flips give) to every block of rows, as the delta
// update does. Each timing is the best of --reps runs (from scratch,
// default 3) or --row-reps runs (the others, default 50). Rates are (row,
// key) pairs per ns; --terms prints ns per (row, term).
//
//===----------------------------------------------------------------------===//
#include "BenchFlags.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

using namespace incnn::runtime;

int main(int argc, char **argv) {
  int64_t H = 4, hd = 32, threads = 1, reps = 3, rowReps = 50;
  bool rows = false;
  int64_t scattered = 0, numTerms = 0;
  bench::BenchFlags flags;
  flags.values = {{"--heads", &H},          {"--head-dim", &hd},
                  {"--threads", &threads},  {"--reps", &reps},
                  {"--row-reps", &rowReps}, {"--scattered", &scattered},
                  {"--terms", &numTerms}};
  flags.switches = {{"--rows", &rows}};
  if (!flags.parse(argc, argv))
    return 1;
  std::vector<int64_t> lengths = flags.positional;
  if (lengths.empty())
    lengths = {2048, 8192, 13000, 16384};
  ThreadPool pool{int(threads)};
  ThreadPool *p = threads > 1 ? &pool : nullptr;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t n : lengths) {
    const int64_t w = H * hd;
    std::vector<float> q(size_t(n * w)), k(q.size()), v(q.size()),
        out(q.size());
    for (auto *x : {&q, &k, &v})
      for (float &e : *x)
        e = dist(rng);
    exact::AttentionShape shape;
    shape.numHeads = shape.numKvHeads = H;
    shape.headDim = hd;
    shape.causal = true;
    shape.scale = 1.0f / std::sqrt(float(hd));
    shape.valueBound = exact::valueBound(n);
    exact::AttentionState state;
    double best = 1e30;
    for (int64_t r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (!exact::attention(q.data(), k.data(), v.data(), n, shape, out.data(),
                            state, p)) {
        std::fprintf(stderr, "breach\n");
        return 1;
      }
      best = std::min(best, std::chrono::duration<double>(
                                std::chrono::steady_clock::now() - t0)
                                .count());
    }
    std::printf("exact isa=%s threads=%lld H=%lld hd=%lld n=%lld: %.1f ms "
                "(%.2f pairs/ns)\n",
                exact::kernelIsa(), (long long)threads, (long long)H,
                (long long)hd, (long long)n, best * 1e3,
                double(exact::attendedPairs(shape, n)) / (best * 1e9));
    std::vector<const float *> kr(static_cast<size_t>(n)),
        vr(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      kr[j] = k.data() + j * w;
      vr[j] = v.data() + j * w;
    }
    if (scattered > 0) {
      std::vector<int64_t> picked;
      for (int64_t t = 0; t < std::min(scattered, n); ++t)
        picked.push_back((2 * t + 1) * n / (2 * std::min(scattered, n)));
      uint64_t pairs = 0;
      for (int64_t i : picked)
        pairs += uint64_t(i + 1);
      std::vector<float> got(picked.size() * size_t(w));
      double bestRun = 1e30;
      bool same = true;
      for (int64_t r = 0; r < rowReps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        for (size_t b = 0; b < picked.size(); b += 64) {
          std::vector<int64_t> run(
              picked.begin() + int64_t(b),
              picked.begin() + int64_t(std::min(picked.size(), b + 64)));
          std::vector<float> qs;
          for (int64_t i : run)
            qs.insert(qs.end(), q.begin() + i * w, q.begin() + (i + 1) * w);
          exact::AttentionState computed;
          computed.resize(int64_t(run.size()), H, hd);
          if (!exact::computeRowsFromRows(qs.data(), run, n, kr.data(),
                                          vr.data(), shape, computed,
                                          got.data() + b * w, p)) {
            std::fprintf(stderr, "breach\n");
            return 1;
          }
        }
        bestRun = std::min(bestRun, std::chrono::duration<double>(
                                        std::chrono::steady_clock::now() - t0)
                                        .count());
      }
      for (size_t t = 0; t < picked.size(); ++t)
        same =
            same && std::memcmp(got.data() + t * w, out.data() + picked[t] * w,
                                sizeof(float) * size_t(w)) == 0;
      std::printf("  computeRowsFromRows (%zu scattered rows): %.3f ms (%.2f "
                  "pairs/ns), same bits: %s\n",
                  picked.size(), bestRun * 1e3, double(pairs) / (bestRun * 1e9),
                  same ? "yes" : "NO");
    }
    if (numTerms > 0) {
      // Keys drawn like the document's, added then removed (the state ends
      // as it started), every block of 8 rows with every term.
      constexpr int L = exact::kTermBlock;
      std::vector<float> keys(size_t(numTerms * w));
      std::vector<double> values(keys.size());
      for (size_t i = 0; i < keys.size(); ++i) {
        keys[i] = dist(rng);
        values[i] = double(dist(rng));
      }
      std::vector<exact::TermRef> terms(size_t(2 * numTerms));
      for (int64_t t = 0; t < 2 * numTerms; ++t)
        terms[size_t(t)] = {keys.data() + (t % numTerms) * w,
                            values.data() + (t % numTerms) * w,
                            t < numTerms ? 1 : -1};
      size_t useCount = size_t(2 * numTerms * L);
      std::unique_ptr<bool[]> useFlags(new bool[useCount]);
      std::fill(useFlags.get(), useFlags.get() + useCount, true);
      std::vector<float> qT(size_t(w * L));
      double bestTerms = 1e30;
      int64_t blocks = n / L, stopped = 0;
      for (int64_t r = 0; r < rowReps; ++r) {
        stopped = 0;
        auto t0 = std::chrono::steady_clock::now();
        exact::TermKeys shared; // once per update, as the delta update does
        exact::transposeTermKeys(terms.data(), 2 * numTerms, shape, shared);
        exact::SharedTerms all{&shared, 0, 0, 2 * numTerms};
        for (int64_t b = 0; b < blocks; ++b) {
          const float *qs[L];
          int64_t stateRows[L];
          bool ok[L];
          for (int l = 0; l < L; ++l) {
            stateRows[l] = b * L + l;
            qs[l] = q.data() + stateRows[l] * w;
            ok[l] = true;
          }
          exact::transposeBlockRows(qs, w, qT.data());
          exact::applyTermsToBlock(qT.data(), stateRows, useFlags.get(),
                                   terms.data(), 2 * numTerms, shape, state, ok,
                                   &all, 1);
          for (int l = 0; l < L; ++l)
            stopped += !ok[l];
        }
        bestTerms = std::min(
            bestTerms,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                .count());
      }
      std::printf("  applyTermsToBlock (%lld terms, %lld rows): %.3f ms, "
                  "%.2f ns per (row, term); rows whose shift moved: %lld\n",
                  (long long)(2 * numTerms), (long long)(blocks * L),
                  bestTerms * 1e3,
                  bestTerms * 1e9 / double(blocks * L * 2 * numTerms),
                  (long long)stopped);
    }
    if (rows) {
      std::vector<float> row(static_cast<size_t>(w));
      double bestRow = 1e30;
      for (int64_t r = 0; r < rowReps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        exact::computeRowFromRows(q.data() + (n - 1) * w, kr.data(), vr.data(),
                                  n, shape, state, n - 1, row.data());
        bestRow = std::min(bestRow, std::chrono::duration<double>(
                                        std::chrono::steady_clock::now() - t0)
                                        .count());
      }
      std::printf("  computeRowFromRows (last row, %lld keys): %.3f ms, same "
                  "bits: %s\n",
                  (long long)n, bestRow * 1e3,
                  std::memcmp(row.data(), out.data() + (n - 1) * w,
                              sizeof(float) * size_t(w)) == 0
                      ? "yes"
                      : "NO");
    }
  }
  return 0;
}
