//===- incremental_bench.cpp - per-edit cost vs from scratch --------------===//
//
// Builds an OPT-125M-shaped decoder (random weights) with VQ after each
// attention block, fits the codebooks by k-means to the model's own
// activations, then measures single-token replace / insert / delete edits at
// uniform positions: median wall time and MACs of the incremental update
// against a from-scratch run of the same tokens, as ratios, and under each
// kind where its time went (the attention updates' parts, the other steps).
// Every --check-every'th edit is checked bit for bit against from scratch.
//
//   incnn-incremental-bench [--tokens 512,1024] [--layers 12] [--dim 768]
//       [--heads 12] [--ffn 3072] [--codes 64] [--groups 1] [--edits 20]
//       [--position learned|none|rope] [--threads 0]
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Session.h"

#include "Kernels.h"
#include "ProgramBuilder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace incnn::runtime;

namespace {

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// The nearest-rank 90th percentile.
double p90(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, (v.size() * 9 + 9) / 10 - 1)];
}

/// Summed wall time of a kind of edit, by where it went: the attention
/// updates' parts over all layers, the other steps by kind, and the rest.
struct TimeByStep {
  double total = 0, plan = 0, deltaTerms = 0, fullRows = 0;
  std::map<std::string, double> byKind;

  void add(const Program &program, const EditStats &s) {
    total += s.micros;
    double inSteps = 0;
    for (size_t i = 0; i < std::min(program.steps.size(), s.stepMicros.size());
         ++i) {
      inSteps += s.stepMicros[i];
      if (program.steps[i].kind != StepKind::AttentionUpdate)
        byKind[stepKindName(program.steps[i].kind)] += s.stepMicros[i];
    }
    for (const AttentionMicros &a : s.attentionMicros) {
      plan += a.plan;
      deltaTerms += a.deltaTerms;
      fullRows += a.fullRows;
    }
    byKind["outside the steps"] += s.micros - inSteps;
  }

  void print() const {
    auto pct = [&](double us) { return total > 0 ? 100 * us / total : 0.0; };
    std::printf("  attention: plan %.1f%%, delta terms %.1f%%, full rows "
                "%.1f%%",
                pct(plan), pct(deltaTerms), pct(fullRows));
    for (const auto &[kind, us] : byKind)
      if (pct(us) >= 0.5)
        std::printf("; %s %.1f%%", kind.c_str(), pct(us));
    std::printf("\n");
  }
};

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

/// Lloyd's k-means on the rows of x [n, width], per group, written into
/// codebook [G, K, width/G].
void fitCodebook(const std::vector<float> &x, int64_t n, int64_t width,
                 int64_t G, int64_t K, std::mt19937 &rng, float *codebook) {
  int64_t dg = width / G;
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int64_t g = 0; g < G; ++g) {
    float *cb = codebook + g * K * dg;
    for (int64_t k = 0; k < K; ++k)
      std::memcpy(cb + k * dg, &x[size_t(pick(rng) * width + g * dg)],
                  sizeof(float) * size_t(dg));
    std::vector<int64_t> assign(static_cast<size_t>(n));
    for (int iter = 0; iter < 8; ++iter) {
      for (int64_t i = 0; i < n; ++i)
        assign[size_t(i)] =
            kernels::nearestCode(&x[size_t(i * width + g * dg)], cb, K, dg);
      std::vector<double> sum(size_t(K * dg), 0.0);
      std::vector<int64_t> count(size_t(K), 0);
      for (int64_t i = 0; i < n; ++i) {
        int64_t k = assign[size_t(i)];
        ++count[size_t(k)];
        for (int64_t c = 0; c < dg; ++c)
          sum[size_t(k * dg + c)] += x[size_t(i * width + g * dg + c)];
      }
      for (int64_t k = 0; k < K; ++k) {
        if (count[size_t(k)] == 0) { // restart a dead code
          std::memcpy(cb + k * dg, &x[size_t(pick(rng) * width + g * dg)],
                      sizeof(float) * size_t(dg));
          continue;
        }
        for (int64_t c = 0; c < dg; ++c)
          cb[k * dg + c] = float(sum[size_t(k * dg + c)] / count[size_t(k)]);
      }
    }
  }
}

std::vector<int64_t> parseList(const char *s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    out.push_back(std::atoll(item.c_str()));
  return out;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<int64_t> sizes = {512, 1024};
  DecoderConfig config;
  config.family = "opt";
  config.layers = 12;
  config.dim = 768;
  config.heads = 12;
  config.kvHeads = 12;
  config.ffn = 3072;
  config.vocab = 50272;
  config.maxPositions = 2048;
  config.task = TaskKind::Classifier;
  int64_t codes = 64, groups = 1;
  int edits = 20, threads = 0, checkEvery = 1;
  int64_t fitTokens = 512;
  std::string csvPath;
  bool defer = false; // incnn-compile's default
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tokens")
      sizes = parseList(next());
    else if (a == "--layers")
      config.layers = std::atoi(next());
    else if (a == "--dim")
      config.dim = std::atoi(next());
    else if (a == "--heads")
      config.heads = config.kvHeads = std::atoi(next());
    else if (a == "--ffn")
      config.ffn = std::atoi(next());
    else if (a == "--codes")
      codes = std::atoll(next());
    else if (a == "--groups")
      groups = std::atoll(next());
    else if (a == "--edits")
      edits = std::atoi(next());
    else if (a == "--position")
      config.position = next();
    else if (a == "--threads")
      threads = std::atoi(next());
    else if (a == "--check-every")
      checkEvery = std::max(1, std::atoi(next()));
    else if (a == "--fit-tokens")
      fitTokens = std::atoll(next());
    else if (a == "--csv")
      csvPath = next();
    else if (a == "--defer")
      defer = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--tokens N,...] [--layers L] [--dim D] "
                   "[--heads H] [--ffn F] [--codes K] [--groups G] "
                   "[--edits E] [--position learned|none|rope] "
                   "[--threads T] [--check-every K] [--fit-tokens N] "
                   "[--csv FILE] [--defer]\n",
                   argv[0]);
      return 2;
    }
  }
  for (int32_t l = 0; l < config.layers; ++l)
    config.vq.push_back({l, false, int32_t(groups), int32_t(codes)});

  std::printf("model: %d layers, d=%d, %d heads, ffn %d, VQ after attention "
              "(%lld group(s) x %lld codes), positions %s\n",
              config.layers, config.dim, config.heads, config.ffn,
              (long long)groups, (long long)codes, config.position.c_str());
  std::fflush(stdout);
  std::mt19937 rng(42);
  for (int64_t n : sizes) {
    config.maxPositions = int32_t(std::max<int64_t>(n + 8, 64));
    Program program = buildDecoder(config);
    for (CertificateChain &c : program.certificateChains)
      c.defer = defer;        // certified rows deferred, or updated
    planCache(program, true); // minimal cache plan
    std::uniform_int_distribution<int32_t> tok(0, config.vocab - 1);
    std::vector<int32_t> tokens(static_cast<size_t>(n));
    for (int32_t &t : tokens)
      t = tok(rng);

    // Fit each codebook to the activations it sees, layer by layer, on the
    // first fitTokens tokens.
    auto fitStart = std::chrono::steady_clock::now();
    std::vector<int32_t> fitText(
        tokens.begin(), tokens.begin() + std::min<int64_t>(n, fitTokens));
    for (Instr &in : program.instrs) {
      if (in.op != OpCode::VectorQuantize)
        continue;
      Evaluator fit(program, {threads});
      if (!fit.evaluate(fitText).ok())
        return 1;
      Weight &cb = program.weights[size_t(in.weights[0])];
      fitCodebook(fit.value(in.operands[0]), int64_t(fitText.size()),
                  config.dim, cb.shape[0], cb.shape[1], rng, cb.owned.data());
    }
    std::printf("\n== %lld tokens (codebooks fitted in %.1f s)\n", (long long)n,
                seconds(fitStart));

    Evaluator oracle(program, {threads});
    Session session(program, {threads});
    if (!oracle.prepare().ok())
      return 1;
    std::vector<double> scratch;
    for (int r = 0; r < 3; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (!oracle.evaluate(tokens).ok())
        return 1;
      scratch.push_back(seconds(t0));
    }
    double scratchTime = median(scratch);
    if (!session.reset(tokens).ok())
      return 1;
    std::printf("from scratch: %.1f ms (median of 3), %.2f GMAC; session "
                "cache %.1f MB (%.1f KB/token)\n",
                scratchTime * 1e3, double(session.stats().macsFull) * 1e-9,
                double(session.cacheBytes()) / 1e6,
                double(session.cacheBytes()) / 1e3 / double(n));
    std::printf("%-8s %10s %8s %10s %10s %10s %12s %12s %8s\n", "edit",
                "median ms", "p90 ms", "time x", "MAC x", "rows/layer",
                "flips/layer", "moved/layer", "exact");
    bool allExact = true;
    for (const char *kind : {"replace", "insert", "delete"}) {
      // moved: rows whose attention took delta terms and whose move the
      // margin certificate could not absorb (their projection and VQ rerun).
      std::vector<double> times, macRatios, rows, flips, moved;
      TimeByStep timeByStep;
      bool exact = true;
      for (int e = 0; e < edits; ++e) {
        int64_t len = int64_t(session.tokens().size());
        std::uniform_int_distribution<int64_t> at(0, len - 1);
        TokenEdit edit;
        if (kind[0] == 'r')
          edit = TokenEdit::replace(at(rng), {tok(rng)});
        else if (kind[0] == 'i')
          edit = TokenEdit::insert(at(rng), {tok(rng)});
        else
          edit = TokenEdit::erase(at(rng), 1);
        if (!session.apply(edit).ok())
          return 1;
        const EditStats &s = session.stats();
        times.push_back(s.micros * 1e-6);
        timeByStep.add(program, s);
        macRatios.push_back(double(s.macsFull) /
                            double(std::max<uint64_t>(s.macs, 1)));
        double r = 0, f = 0;
        for (int64_t x : s.dirtyRows)
          r += double(x);
        for (int64_t x : s.codeFlips)
          f += double(x);
        rows.push_back(r / double(s.dirtyRows.size()));
        double updated = 0;
        for (int64_t x : s.updatedRows)
          updated += double(x);
        moved.push_back((updated - double(s.certifiedRows)) /
                        double(s.updatedRows.size()));
        flips.push_back(f / double(s.codeFlips.size()));
        if (e % checkEvery == 0) {
          if (!oracle.evaluate(session.tokens()).ok())
            return 1;
          exact = exact && session.output() == oracle.output();
        }
        // Keep the length stable: undo inserts/deletes in the tokens only.
        if (kind[0] == 'i')
          session.apply(TokenEdit::erase(edit.at, 1));
        else if (kind[0] == 'd')
          session.apply(TokenEdit::insert(edit.at, {tok(rng)}));
      }
      allExact = allExact && exact;
      double t = median(times);
      std::printf("%-8s %10.2f %8.2f %10.1f %10.1f %10.1f %12.2f %12.1f %8s\n",
                  kind, t * 1e3, p90(times) * 1e3, scratchTime / t,
                  median(macRatios), median(rows), median(flips), median(moved),
                  exact ? "yes" : "NO");
      timeByStep.print();
      if (!csvPath.empty()) {
        FILE *csv = std::fopen(csvPath.c_str(), "a");
        if (csv) {
          std::fprintf(csv, "%lld,%s,%.4f,%.4f,%.2f,%.2f,%.2f,%.2f,%d\n",
                       (long long)n, kind, t * 1e3, scratchTime * 1e3,
                       scratchTime / t, median(macRatios), median(rows),
                       median(flips), exact ? 1 : 0);
          std::fclose(csv);
        }
      }
      std::fflush(stdout);
    }
    if (!allExact) {
      std::printf("MISMATCH: an incremental output differed from scratch\n");
      return 1;
    }
  }
  return 0;
}
