//===- ProgramBuilder.h - Build programs in memory --------------*- C++ -*-===//
//
// Helpers to assemble Programs in memory: a low-level builder, and a
// decoder-only transformer generator (OPT- or Llama-shaped, optional VQ
// sites) with random weights, used by tests, benchmarks and fuzz seeds.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_TEST_PROGRAMBUILDER_H
#define INCNN_RUNTIME_TEST_PROGRAMBUILDER_H

#include "incnn/runtime/Program.h"

#include "VerifySteps.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace incnn::runtime {

class ProgramBuilder {
public:
  explicit ProgramBuilder(Program &p) : p(p) {}

  int32_t value(int32_t width, bool perToken = true, std::string name = "") {
    p.values.push_back({width, perToken, std::move(name)});
    return int32_t(p.values.size() - 1);
  }

  int32_t weight(std::string name, std::vector<int64_t> shape,
                 std::vector<float> data) {
    Weight w;
    w.name = std::move(name);
    w.shape = std::move(shape);
    w.owned = std::move(data);
    p.weights.push_back(std::move(w));
    return int32_t(p.weights.size() - 1);
  }

  /// A weight filled with uniform values in [-scale, scale] (+ `shift`).
  int32_t randomWeight(std::string name, std::vector<int64_t> shape,
                       float scale, std::mt19937 &rng, float shift = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    std::uniform_real_distribution<float> dist(-scale, scale);
    std::vector<float> data(static_cast<size_t>(n));
    for (float &x : data)
      x = dist(rng) + shift;
    return weight(std::move(name), std::move(shape), std::move(data));
  }

  Instr &instr(OpCode op, std::vector<int32_t> operands,
               std::vector<int32_t> weights, std::vector<int32_t> results) {
    Instr in;
    in.op = op;
    in.operands = std::move(operands);
    in.weights = std::move(weights);
    in.results = std::move(results);
    p.instrs.push_back(std::move(in));
    return p.instrs.back();
  }

  /// Adds an instruction with one result of `width` and returns its id.
  int32_t op(OpCode op, std::vector<int32_t> operands,
             std::vector<int32_t> weights, int32_t width, bool perToken = true,
             InstrAttrs attrs = {}) {
    int32_t r = value(width, perToken);
    instr(op, std::move(operands), std::move(weights), {r}).attrs = attrs;
    return r;
  }

private:
  Program &p;
};

/// A claimed upper bound of ||W||_2, as incnn-compile computes it: the
/// largest singular value (Eigen's SVD, in double) plus 1e-6 relative
/// (ProgramBuilder.cpp: Eigen compiled once, not in every test).
double spectralNormClaim(const Weight &w);

/// The certificate table the compiler writes: every chain
/// findCertificateChains admits whose quantizer has a vq_cutoff step, each
/// linear weight's norm claimed by spectralNormClaim, deferring certified
/// attention rows (the compiler's default).
inline void addCertificateChains(Program &p) {
  std::vector<bool> cutoff(p.instrs.size(), false);
  for (const Step &s : p.steps)
    if (s.kind == StepKind::VQCutoff)
      cutoff[size_t(s.instr)] = true;
  p.certificateChains.clear();
  for (CertificateChain c : findCertificateChains(p)) {
    if (!cutoff[size_t(c.vq)])
      continue;
    if (c.linear >= 0)
      c.normBound = spectralNormClaim(
          p.weights[size_t(p.instrs[size_t(c.linear)].weights[0])]);
    c.defer = true;
    p.certificateChains.push_back(c);
  }
}

/// Appends the change-propagation steps of an in-memory program, the way the
/// compiler's vqt-incrementalize pass derives them from the vqt graph (test
/// programs have no vqt graph; test/tools checks the compiler's own steps),
/// and the certificate table (addCertificateChains).
inline void addChangeSteps(Program &p) {
  p.steps.clear();
  int32_t next = 0;
  auto emit = [&](StepKind kind, int32_t instr, std::vector<int32_t> inputs) {
    p.steps.push_back(Step{kind, instr, std::move(inputs), next});
    return next++;
  };
  std::vector<int32_t> dirty(p.values.size(), -1);
  dirty[size_t(p.tokenValue)] = emit(StepKind::EditedRows, -1, {});
  int32_t shifted = -1;
  auto shiftedRows = [&] {
    if (shifted < 0)
      shifted = emit(StepKind::ShiftedRows, -1, {});
    return shifted;
  };
  auto unionOf = [&](std::vector<int32_t> sets) {
    std::sort(sets.begin(), sets.end());
    sets.erase(std::unique(sets.begin(), sets.end()), sets.end());
    return sets.size() == 1 ? sets[0] : emit(StepKind::Union, -1, sets);
  };
  for (size_t i = 0; i < p.instrs.size(); ++i) {
    const Instr &in = p.instrs[i];
    auto dirtyOf = [&](size_t k) { return dirty[size_t(in.operands[k])]; };
    int32_t out = -1;
    switch (in.op) {
    case OpCode::Attention: {
      std::vector<int32_t> q = {dirtyOf(0)}, kv = {dirtyOf(1), dirtyOf(2)};
      if (in.attrs.ropeTheta != 0.0f) {
        q.push_back(shiftedRows());
        kv.push_back(shiftedRows());
      }
      out = emit(StepKind::AttentionUpdate, int32_t(i),
                 {unionOf(q), unionOf(kv)});
      break;
    }
    case OpCode::VectorQuantize:
      out = emit(StepKind::VQCutoff, int32_t(i), {dirtyOf(0)});
      break;
    case OpCode::Pool:
      out = emit(StepKind::PoolUpdate, int32_t(i), {dirtyOf(0)});
      break;
    default: {
      std::vector<int32_t> rows;
      for (size_t k = 0; k < in.operands.size(); ++k)
        rows.push_back(dirtyOf(k));
      if (in.op == OpCode::AddLearnedPositions)
        rows.push_back(shiftedRows());
      bool perToken = p.values[size_t(in.results[0])].perToken;
      out = emit(perToken ? StepKind::RecomputeRows : StepKind::VectorUpdate,
                 int32_t(i), {unionOf(rows)});
      break;
    }
    }
    for (int32_t r : in.results)
      dirty[size_t(r)] = out;
  }
  p.numRowSets = next;
  p.outputRows = dirty[size_t(p.outputValue)];
  addCertificateChains(p);
}

/// Sets the cache plan: every row of every per-token value (`minimal`
/// false), or only what the steps need (true; as delta-plan-cache plans).
inline void planCache(Program &p, bool minimal) {
  std::vector<std::string> required = requiredCache(p);
  for (size_t v = 0; v < p.values.size(); ++v)
    p.values[v].keepAllRows =
        !minimal || !p.values[v].perToken || !required[v].empty();
  for (size_t v = 0; v < p.values.size(); ++v) // as delta-plan-cache marks
    p.values[v].tableRows = minimal && tableRowsOf(p, int32_t(v));
}

struct DecoderConfig {
  std::string family = "opt"; ///< "opt" (LayerNorm, bias, ReLU/GELU) or "llama"
  TaskKind task = TaskKind::CausalLM;
  int32_t layers = 2, dim = 32, heads = 4, kvHeads = 4, ffn = 64;
  int32_t vocab = 50, maxPositions = 64, numLabels = 3;
  std::string position = "learned"; ///< "learned", "rope" or "none"
  bool causal = true;
  int64_t window = 0; ///< > 0: sliding-window attention
  int32_t globalEvery =
      0; ///< with a window: layers l % globalEvery == 0 global
  /// opt only: the MLP's activation, unary or gated (OpTable.def).
  OpCode activation = OpCode::Relu;
  PoolKind pool = PoolKind::Last;
  /// VQ sites: {layer, isBlockOut, groups, codes}.
  struct Vq {
    int32_t layer;
    bool blockOut;
    int32_t groups, codes;
  };
  std::vector<Vq> vq;
  uint32_t seed = 1;
};

/// Builds a decoder-only transformer program with random weights.
inline Program buildDecoder(const DecoderConfig &c) {
  Program p;
  ProgramBuilder b(p);
  std::mt19937 rng(c.seed);
  const bool opt = c.family == "opt";
  p.family = c.family;
  p.task = c.task;
  p.vocabSize = c.vocab;
  p.maxPositions = c.maxPositions;
  p.positionScheme = c.position;
  const int64_t d = c.dim, hd = d / c.heads;
  const float ws = 1.0f / std::sqrt(float(d));
  p.tokenValue = b.value(1, true, "tokens");
  int32_t emb = b.randomWeight("embed_tokens", {c.vocab, d}, 1.0f, rng);
  int32_t x = b.op(OpCode::Embed, {p.tokenValue}, {emb}, d);
  if (c.position == "learned") {
    InstrAttrs a;
    a.positionOffset = 2;
    int32_t pos =
        b.randomWeight("embed_positions", {c.maxPositions + 2, d}, 0.5f, rng);
    x = b.op(OpCode::AddLearnedPositions, {x}, {pos}, d, true, a);
  }
  auto norm = [&](int32_t in, const std::string &name) {
    InstrAttrs a;
    a.epsilon = opt ? 1e-5f : 1e-6f;
    int32_t g = b.randomWeight(name + ".weight", {d}, 0.2f, rng, 1.0f);
    if (!opt)
      return b.op(OpCode::RmsNorm, {in}, {g}, int32_t(d), true, a);
    int32_t be = b.randomWeight(name + ".bias", {d}, 0.1f, rng);
    return b.op(OpCode::LayerNorm, {in}, {g, be}, int32_t(d), true, a);
  };
  auto linear = [&](int32_t in, int64_t inW, int64_t outW,
                    const std::string &name, bool perToken = true) {
    std::vector<int32_t> w = {b.randomWeight(
        name + ".weight", {outW, inW}, 1.0f / std::sqrt(float(inW)), rng)};
    if (opt)
      w.push_back(b.randomWeight(name + ".bias", {outW}, 0.1f, rng));
    return b.op(OpCode::Linear, {in}, w, int32_t(outW), perToken);
  };
  auto vq = [&](int32_t in, int32_t layer, bool blockOut) {
    for (const DecoderConfig::Vq &s : c.vq) {
      if (s.layer != layer || s.blockOut != blockOut)
        continue;
      int32_t cb = b.randomWeight("vq." + std::to_string(layer) +
                                      (blockOut ? ".block_out" : ".attn_out"),
                                  {s.groups, s.codes, d / s.groups}, 1.0f, rng);
      int32_t q = b.value(int32_t(d));
      int32_t codes = b.value(s.groups);
      b.instr(OpCode::VectorQuantize, {in}, {cb}, {q, codes});
      return q;
    }
    return in;
  };
  for (int32_t l = 0; l < c.layers; ++l) {
    std::string pre = "layers." + std::to_string(l) + ".";
    int32_t h = norm(x, pre + "attn_norm");
    int32_t q = linear(h, d, d, pre + "q_proj");
    int32_t k = linear(h, d, c.kvHeads * hd, pre + "k_proj");
    int32_t v = linear(h, d, c.kvHeads * hd, pre + "v_proj");
    InstrAttrs a;
    a.numHeads = c.heads;
    a.numKvHeads = c.kvHeads;
    a.causal = c.causal;
    a.window = c.globalEvery > 0 && l % c.globalEvery == 0 ? 0 : c.window;
    a.ropeTheta = c.position == "rope" ? 10000.0f : 0.0f;
    a.scale = 1.0f / std::sqrt(float(hd));
    int32_t att = b.op(OpCode::Attention, {q, k, v}, {}, int32_t(d), true, a);
    int32_t o = vq(linear(att, d, d, pre + "o_proj"), l, false);
    x = b.op(OpCode::Add, {x, o}, {}, int32_t(d));
    h = norm(x, pre + "ffn_norm");
    int32_t f;
    if (opt) {
      bool gated = opFamily(c.activation) == OpFamily::Gated;
      f = linear(h, d, gated ? 2 * c.ffn : c.ffn, pre + "fc1");
      f = b.op(c.activation, {f}, {}, c.ffn);
    } else {
      int32_t gate = linear(h, d, c.ffn, pre + "gate_proj");
      int32_t up = linear(h, d, c.ffn, pre + "up_proj");
      gate = b.op(OpCode::Silu, {gate}, {}, c.ffn);
      f = b.op(OpCode::Mul, {gate, up}, {}, c.ffn);
    }
    f = linear(f, c.ffn, d, pre + (opt ? "fc2" : "down_proj"));
    x = vq(b.op(OpCode::Add, {x, f}, {}, int32_t(d)), l, true);
  }
  x = norm(x, "final_norm");
  InstrAttrs pa;
  pa.pool = c.task == TaskKind::Classifier ? c.pool : PoolKind::Last;
  int32_t pooled = b.op(OpCode::Pool, {x}, {}, int32_t(d), false, pa);
  if (c.task == TaskKind::CausalLM) {
    // Tied LM head: reuse the embedding table as W [vocab, d].
    p.outputValue = b.op(OpCode::Linear, {pooled}, {emb}, c.vocab, false);
  } else {
    int32_t score = b.randomWeight("score.weight", {c.numLabels, d}, ws, rng);
    p.outputValue = b.op(OpCode::Linear, {pooled}, {score}, c.numLabels, false);
    for (int32_t i = 0; i < c.numLabels; ++i)
      p.labels.push_back("label" + std::to_string(i));
  }
  addChangeSteps(p);
  return p;
}

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_TEST_PROGRAMBUILDER_H
