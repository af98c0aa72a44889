//===- forward_bench.cpp - From-scratch forward-pass benchmark ------------===//
//
// Builds an OPT-125M-shaped program in memory (random weights) and prints the
// median from-scratch forward time per sequence length:
//
//   incnn-forward-bench [--layers 12] [--dim 768] [--heads 12] [--ffn 3072]
//                       [--vocab 50272] [--tokens 512,1024] [--reps 5]
//                       [--threads 0]
//
//===----------------------------------------------------------------------===//

#include "ProgramBuilder.h"
#include "incnn/runtime/Runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sstream>

using namespace incnn::runtime;

/// CPU seconds used by the whole process (all threads).
static double cpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

static void usage() {
  std::fprintf(stderr,
               "usage: incnn-forward-bench [--layers N] [--dim D] [--heads H] "
               "[--ffn F] [--vocab V] [--tokens N,N,...] [--reps R] "
               "[--threads T]\n");
}

int main(int argc, char **argv) {
  DecoderConfig c;
  c.family = "opt";
  c.layers = 12;
  c.dim = 768;
  c.heads = 12;
  c.kvHeads = 12;
  c.ffn = 3072;
  c.vocab = 50272;
  std::vector<int> lengths = {512, 1024};
  int reps = 5, threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const char *v = argv[++i];
    int x = std::atoi(v);
    if (a == "--layers")
      c.layers = x;
    else if (a == "--dim")
      c.dim = x;
    else if (a == "--heads")
      c.heads = c.kvHeads = x;
    else if (a == "--ffn")
      c.ffn = x;
    else if (a == "--vocab")
      c.vocab = x;
    else if (a == "--reps")
      reps = std::max(1, x);
    else if (a == "--threads")
      threads = x;
    else if (a == "--tokens") {
      lengths.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ','))
        lengths.push_back(std::atoi(item.c_str()));
    } else {
      usage();
      return 2;
    }
  }
  int maxLen = *std::max_element(lengths.begin(), lengths.end());
  c.maxPositions = std::max(2048, maxLen);
  if (c.layers < 0 || c.dim <= 0 || c.heads <= 0 || c.dim % c.heads ||
      maxLen <= 0) {
    usage();
    return 2;
  }
  Program program = buildDecoder(c);
  Status st = verifyProgram(program);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.error.c_str());
    return 1;
  }
  EvaluatorOptions opts;
  opts.numThreads = threads;
  Evaluator ev(program, opts);
  std::printf("OPT-shaped decoder: layers %d, d %d, heads %d, ffn %d, vocab "
              "%d, threads %d\n",
              c.layers, c.dim, c.heads, c.ffn, c.vocab, threads);
  for (int n : lengths) {
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      tokens[i] = int32_t((i * 7919) % c.vocab);
    st = ev.evaluate(tokens); // warm-up (also packs weights)
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.error.c_str());
      return 1;
    }
    std::vector<double> times;
    double cpu0 = cpuSeconds();
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      st = ev.evaluate(tokens);
      auto t1 = std::chrono::steady_clock::now();
      times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    double cpu = (cpuSeconds() - cpu0) / reps;
    std::sort(times.begin(), times.end());
    double med = times[times.size() / 2];
    double gmac = double(countMacs(program, n)) * 1e-9;
    // CPU time per run shows kernel efficiency even on a busy machine.
    std::printf("tokens %5d: median %.3f s (min %.3f s), %.1f GMAC, %.1f "
                "GFLOP/s; %.3f CPU-s per run, %.1f GFLOP per CPU-s\n",
                n, med, times.front(), gmac, 2.0 * gmac / med, cpu,
                2.0 * gmac / cpu);
  }
  return 0;
}
