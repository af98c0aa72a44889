//===- linear_bench.cpp - linear layers with few rows ---------------------===//
//
//   incnn-linear-bench [--layers L] [--dim D] [--ffn F] [--threads T]
//                      [--isa avx2|avx512] [--reps R] rows...
//
// Times the FFN linear layers (D -> F -> D) of L layers with random weights
// on a few rows at a time, as an incremental update recomputes the rows whose
// codes flipped: the weights (L * 2 * D * F floats) no longer fit in cache,
// so each call streams its layer's weights once. Prints the best of R
// repetitions as time, weight bandwidth and MAC rate.
//
//===----------------------------------------------------------------------===//
#include "BenchFlags.h"
#include "Kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

using namespace incnn::runtime;

int main(int argc, char **argv) {
  int64_t layers = 12, dim = 768, ffn = 3072, threads = 1, reps = 15;
  bench::BenchFlags flags;
  flags.values = {{"--layers", &layers},
                  {"--dim", &dim},
                  {"--ffn", &ffn},
                  {"--threads", &threads},
                  {"--reps", &reps}};
  if (!flags.parse(argc, argv))
    return 1;
  std::vector<int64_t> rowCounts = flags.positional;
  if (layers < 1 || dim < 1 || ffn < 1 || threads < 1 || reps < 1) {
    std::fprintf(stderr, "--layers, --dim, --ffn, --threads and --reps must "
                         "be positive\n");
    return 1;
  }
  if (rowCounts.empty())
    rowCounts = {6, 12, 33, 96};
  ThreadPool pool{int(threads)};
  ThreadPool *p = threads > 1 ? &pool : nullptr;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> up(size_t(ffn * dim)), down(size_t(dim * ffn)),
      bias(size_t(std::max(dim, ffn)));
  for (float &x : up)
    x = u(rng);
  for (float &x : down)
    x = u(rng);
  std::vector<kernels::PackedLinear> ups(static_cast<size_t>(layers)),
      downs(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    kernels::packLinear(up.data(), ffn, dim, bias.data(), ups[size_t(l)], p);
    kernels::packLinear(down.data(), dim, ffn, bias.data(), downs[size_t(l)],
                        p);
  }
  double bytes = double(layers) * 2.0 * double(dim * ffn) * 4.0;
  std::printf("linear isa=%s threads=%lld: %lld layers of %lld -> %lld -> "
              "%lld, %.0f MB of weights\n",
              exact::kernelIsa(), (long long)threads, (long long)layers,
              (long long)dim, (long long)ffn, (long long)dim, bytes / 1e6);
  for (int64_t m : rowCounts) {
    if (m < 1)
      continue;
    std::vector<float> x(size_t(m * ffn)), y(size_t(m * ffn));
    for (float &v : x)
      v = u(rng);
    double best = 1e30;
    for (int64_t r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t l = 0; l < layers; ++l) {
        kernels::linear(x.data(), m, dim, ups[size_t(l)], y.data(), ffn, p);
        kernels::linear(y.data(), m, ffn, downs[size_t(l)], x.data(), dim, p);
      }
      best = std::min(best, std::chrono::duration<double>(
                                std::chrono::steady_clock::now() - t0)
                                .count());
    }
    std::printf("rows %4lld: %8.2f ms, weights %6.1f GB/s, %7.1f GMAC/s\n",
                (long long)m, best * 1e3, bytes / best / 1e9,
                bytes / 4.0 * double(m) / best / 1e9);
  }
  return 0;
}
