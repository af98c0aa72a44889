//===- Program.cpp - Program verification, writing and loading ------------===//
//
// The file format is documented in docs/program-format.md. The loader treats
// every byte as untrusted: all sizes, offsets and JSON types are checked, and
// nothing here may crash or read out of bounds on any input.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Program.h"

#include "Checksum.h"
#include "ExactAttention.h"
#include "VerifySteps.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the program format stores little-endian data");

namespace incnn::runtime {

using json = nlohmann::json;

namespace {

constexpr char kMagic[8] = {'I', 'N', 'C', 'N', 'N', 'P', 'R', 'G'};
constexpr uint64_t kHeaderSize = kProgramHeaderSize;
constexpr uint64_t kAlign = 64;
/// Upper bound on a value's width; keeps a hostile file from asking for
/// absurd allocations at evaluation time.
constexpr int64_t kMaxWidth = int64_t(1) << 24;
/// Maximum JSON nesting accepted by the loader.
constexpr int kMaxJsonDepth = 16;

uint64_t alignUp(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

/// Error thrown inside the loader and turned into a Status at the boundary.
struct FormatError {
  std::string message;
};

[[noreturn]] void fail(std::string message) {
  throw FormatError{std::move(message)};
}

const json &field(const json &obj, const char *key) {
  if (!obj.is_object())
    fail(std::string("expected an object holding '") + key + "'");
  auto it = obj.find(key);
  if (it == obj.end())
    fail(std::string("missing field '") + key + "'");
  return *it;
}

int64_t asInt(const json &j, const char *what, int64_t lo, int64_t hi) {
  int64_t v;
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(std::string(what) + " out of range");
    v = int64_t(u);
  } else if (j.is_number_integer()) {
    v = j.get<int64_t>();
  } else {
    fail(std::string(what) + " must be an integer");
  }
  if (v < lo || v > hi)
    fail(std::string(what) + " out of range: " + std::to_string(v));
  return v;
}

int64_t getInt(const json &obj, const char *key, int64_t lo, int64_t hi) {
  return asInt(field(obj, key), key, lo, hi);
}

int64_t getIntOr(const json &obj, const char *key, int64_t lo, int64_t hi,
                 int64_t dflt) {
  if (!obj.contains(key))
    return dflt;
  return getInt(obj, key, lo, hi);
}

float getFloatOr(const json &obj, const char *key, float dflt) {
  if (!obj.contains(key))
    return dflt;
  const json &j = obj[key];
  if (!j.is_number())
    fail(std::string(key) + " must be a number");
  double d = j.get<double>();
  if (!std::isfinite(d) || std::fabs(d) > double(FLT_MAX))
    fail(std::string(key) + " is not a finite float");
  return float(d);
}

bool getBoolOr(const json &obj, const char *key, bool dflt) {
  if (!obj.contains(key))
    return dflt;
  const json &j = obj[key];
  if (!j.is_boolean())
    fail(std::string(key) + " must be a boolean");
  return j.get<bool>();
}

std::string getString(const json &obj, const char *key) {
  const json &j = field(obj, key);
  if (!j.is_string())
    fail(std::string(key) + " must be a string");
  return j.get<std::string>();
}

std::string getStringOr(const json &obj, const char *key) {
  if (!obj.contains(key))
    return {};
  return getString(obj, key);
}

const json &getArray(const json &obj, const char *key) {
  const json &j = field(obj, key);
  if (!j.is_array())
    fail(std::string(key) + " must be an array");
  return j;
}

std::vector<int32_t> getIdList(const json &obj, const char *key) {
  std::vector<int32_t> ids;
  if (!obj.contains(key))
    return ids;
  for (const json &e : getArray(obj, key))
    ids.push_back(int32_t(asInt(e, key, std::numeric_limits<int32_t>::min(),
                                std::numeric_limits<int32_t>::max())));
  return ids;
}

const char *taskName(TaskKind task) {
  return task == TaskKind::Classifier ? "classifier" : "causal_lm";
}

json instrToJson(const Instr &in) {
  json j;
  j["op"] = uint32_t(in.op);
  j["name"] = opCodeName(in.op);
  j["operands"] = in.operands;
  j["weights"] = in.weights;
  j["results"] = in.results;
  json a;
  a["epsilon"] = in.attrs.epsilon;
  a["position_offset"] = in.attrs.positionOffset;
  a["num_heads"] = in.attrs.numHeads;
  a["num_kv_heads"] = in.attrs.numKvHeads;
  a["causal"] = in.attrs.causal;
  a["rope_theta"] = in.attrs.ropeTheta;
  a["scale"] = in.attrs.scale;
  if (in.attrs.window > 0)
    a["window"] = in.attrs.window;
  a["pool"] = uint32_t(in.attrs.pool);
  j["attrs"] = std::move(a);
  return j;
}

json stepToJson(const Step &s) {
  json j;
  j["kind"] = uint32_t(s.kind);
  j["name"] = stepKindName(s.kind);
  if (s.instr >= 0)
    j["instr"] = s.instr;
  j["inputs"] = s.inputs;
  j["output"] = s.output;
  return j;
}

constexpr int64_t kMaxStepKind = std::max({
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler) Code,
#include "incnn/runtime/StepTable.def"
});

Step stepFromJson(const json &j) {
  Step s;
  s.kind = StepKind(getInt(j, "kind", 1, kMaxStepKind));
  s.instr = int32_t(getIntOr(j, "instr", -1, 1 << 30, -1));
  s.inputs = getIdList(j, "inputs");
  s.output = int32_t(getInt(j, "output", 0, 1 << 30));
  return s;
}

Instr instrFromJson(const json &j) {
  Instr in;
  in.op = OpCode(getInt(j, "op", 0, std::numeric_limits<uint32_t>::max()));
  in.operands = getIdList(j, "operands");
  in.weights = getIdList(j, "weights");
  in.results = getIdList(j, "results");
  if (j.contains("attrs")) {
    const json &a = j["attrs"];
    if (!a.is_object())
      fail("attrs must be an object");
    in.attrs.epsilon = getFloatOr(a, "epsilon", 0.0f);
    in.attrs.positionOffset = int32_t(getIntOr(
        a, "position_offset", -(int64_t(1) << 31), (int64_t(1) << 31) - 1, 0));
    in.attrs.numHeads = int32_t(getIntOr(a, "num_heads", 0, 1 << 20, 0));
    in.attrs.numKvHeads = int32_t(getIntOr(a, "num_kv_heads", 0, 1 << 20, 0));
    in.attrs.causal = getBoolOr(a, "causal", true);
    in.attrs.ropeTheta = getFloatOr(a, "rope_theta", 0.0f);
    in.attrs.scale = getFloatOr(a, "scale", 1.0f);
    in.attrs.window = getIntOr(a, "window", 0, int64_t(1) << 20, 0);
    in.attrs.pool = PoolKind(getIntOr(a, "pool", 0, 1, 0));
  }
  return in;
}

/// Parses a file image (already in memory, 64-byte aligned base) into
/// `program`. Weight pointers point into `base`.
void parseImage(const uint8_t *base, uint64_t size, Program &program) {
  if (size < kHeaderSize)
    fail("file too small for a program header (" + std::to_string(size) +
         " bytes)");
  if (std::memcmp(base, kMagic, 8) != 0)
    fail("not an incnn program (bad magic)");
  uint32_t version, reserved;
  std::memcpy(&version, base + 8, 4);
  std::memcpy(&reserved, base + 12, 4);
  if (version < kMinProgramVersion || version > kProgramVersion)
    fail("unsupported program version " + std::to_string(version) +
         " (this runtime reads versions " + std::to_string(kMinProgramVersion) +
         " to " + std::to_string(kProgramVersion) +
         "; recompile the model with this incnn-compile)");
  if (reserved != 0)
    fail("reserved header bytes 12..15 are not zero");
  uint64_t stored, computed = programChecksum(base, size);
  std::memcpy(&stored, base + kChecksumOffset, 8);
  if (stored != computed) {
    char msg[160];
    std::snprintf(msg, sizeof(msg),
                  "checksum mismatch (stored %016llx, computed %016llx): the "
                  "file is corrupt or truncated",
                  (unsigned long long)stored, (unsigned long long)computed);
    fail(msg);
  }
  uint64_t metaLen;
  std::memcpy(&metaLen, base + 16, 8);
  if (metaLen > size - kHeaderSize)
    fail("metadata length " + std::to_string(metaLen) +
         " exceeds the file size");
  uint64_t dataStart = alignUp(kHeaderSize + metaLen);
  const char *metaBegin = reinterpret_cast<const char *>(base + kHeaderSize);

  json meta;
  try {
    json::parser_callback_t limitDepth = [](int depth, json::parse_event_t,
                                            json &) -> bool {
      if (depth > kMaxJsonDepth)
        throw FormatError{"metadata JSON nested too deeply"};
      return true;
    };
    meta = json::parse(metaBegin, metaBegin + metaLen, limitDepth);
  } catch (const json::exception &e) {
    fail(std::string("bad metadata JSON: ") + e.what());
  }
  if (!meta.is_object())
    fail("metadata must be a JSON object");

  program.family = getStringOr(meta, "family");
  std::string task = getString(meta, "task");
  if (task == "causal_lm")
    program.task = TaskKind::CausalLM;
  else if (task == "classifier")
    program.task = TaskKind::Classifier;
  else
    fail("unknown task '" + task + "'");
  program.vocabSize = int32_t(getInt(meta, "vocab_size", 1, 1 << 30));
  program.maxPositions = int32_t(getInt(meta, "max_positions", 1, 1 << 30));
  program.positionScheme = getStringOr(meta, "position_scheme");
  if (meta.contains("labels"))
    for (const json &l : getArray(meta, "labels")) {
      if (!l.is_string())
        fail("labels must be strings");
      program.labels.push_back(l.get<std::string>());
    }
  program.bosTokenId = int32_t(getIntOr(meta, "bos_token_id", -1, 1 << 30, -1));
  program.eosTokenId = int32_t(getIntOr(meta, "eos_token_id", -1, 1 << 30, -1));
  program.padTokenId = int32_t(getIntOr(meta, "pad_token_id", -1, 1 << 30, -1));
  program.tokenValue = int32_t(getInt(meta, "token_value", 0, 1 << 30));
  program.outputValue = int32_t(getInt(meta, "output_value", 0, 1 << 30));

  for (const json &v : getArray(meta, "values")) {
    ValueInfo info;
    info.width = int32_t(getInt(v, "width", 1, kMaxWidth));
    info.perToken = getBoolOr(v, "per_token", true);
    info.keepAllRows = getBoolOr(v, "keep_all_rows", true);
    info.name = getStringOr(v, "name");
    program.values.push_back(std::move(info));
  }

  for (const json &w : getArray(meta, "weights")) {
    Weight weight;
    weight.name = getStringOr(w, "name");
    for (const json &d : getArray(w, "shape"))
      weight.shape.push_back(asInt(d, "shape", 1, int64_t(1) << 40));
    if (weight.shape.empty() || weight.shape.size() > 4)
      fail("weight '" + weight.name + "' must have rank 1 to 4");
    int64_t numel = weight.numElements();
    if (numel < 0 || uint64_t(numel) > size / sizeof(float))
      fail("weight '" + weight.name + "' is larger than the file");
    uint64_t offset = uint64_t(getInt(w, "offset", 0, int64_t(1) << 62));
    if (offset % kAlign != 0)
      fail("weight '" + weight.name + "' offset is not 64-byte aligned");
    uint64_t bytes = uint64_t(numel) * sizeof(float);
    if (dataStart > size || offset > size - dataStart ||
        bytes > size - dataStart - offset)
      fail("weight '" + weight.name + "' data lies outside the file");
    weight.data = reinterpret_cast<const float *>(base + dataStart + offset);
    program.weights.push_back(std::move(weight));
  }

  for (const json &i : getArray(meta, "instrs"))
    program.instrs.push_back(instrFromJson(i));
  for (const json &s : getArray(meta, "steps"))
    program.steps.push_back(stepFromJson(s));
  program.numRowSets = int32_t(getInt(meta, "row_sets", 0, 1 << 20));
  program.outputRows = int32_t(getInt(meta, "output_rows", 0, 1 << 20));

  if (meta.contains("tokenizer")) {
    const json &t = meta["tokenizer"];
    uint64_t offset = uint64_t(getInt(t, "offset", 0, int64_t(1) << 62));
    uint64_t bytes = uint64_t(getInt(t, "size", 0, int64_t(1) << 62));
    if (dataStart > size || offset > size - dataStart ||
        bytes > size - dataStart - offset)
      fail("tokenizer data lies outside the file");
    program.tokenizer.assign(
        reinterpret_cast<const char *>(base + dataStart + offset), bytes);
  }
}

Status loadImpl(const uint8_t *base, uint64_t size,
                std::shared_ptr<void> backing, Program &program) {
  Program result;
  try {
    parseImage(base, size, result);
  } catch (const FormatError &e) {
    return Status::failure("invalid program file: " + e.message);
  } catch (const std::exception &e) {
    return Status::failure(std::string("invalid program file: ") + e.what());
  }
  result.backing = std::move(backing);
  Status st = verifyProgram(result);
  if (!st.ok())
    return Status::failure("invalid program: " + st.error);
  program = std::move(result);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Verification
//===----------------------------------------------------------------------===//

class Verifier {
public:
  explicit Verifier(const Program &p) : p(p) {}
  Status run();

private:
  const Program &p;
  std::vector<bool> defined;
  std::string where;

  [[noreturn]] void error(const std::string &msg) { fail(where + msg); }
  const ValueInfo &use(int32_t id);
  const ValueInfo &def(int32_t id);
  const Weight &weight(int32_t id);
  void expectCounts(const Instr &in, size_t operands, size_t resultsN,
                    size_t minWeights, size_t maxWeights);
  void expectShape(const Weight &w, std::vector<int64_t> shape,
                   const char *what);
  void expectSame(const ValueInfo &a, const ValueInfo &b, const char *what);
  void verifyInstr(const Instr &in);
};

const ValueInfo &Verifier::use(int32_t id) {
  if (id < 0 || size_t(id) >= p.values.size())
    error("operand value id " + std::to_string(id) + " out of range");
  if (!defined[id])
    error("value " + std::to_string(id) + " used before it is defined");
  return p.values[id];
}

const ValueInfo &Verifier::def(int32_t id) {
  if (id < 0 || size_t(id) >= p.values.size())
    error("result value id " + std::to_string(id) + " out of range");
  if (defined[id])
    error("value " + std::to_string(id) + " defined twice");
  defined[id] = true;
  return p.values[id];
}

const Weight &Verifier::weight(int32_t id) {
  if (id < 0 || size_t(id) >= p.weights.size())
    error("weight id " + std::to_string(id) + " out of range");
  return p.weights[id];
}

void Verifier::expectCounts(const Instr &in, size_t operands, size_t resultsN,
                            size_t minWeights, size_t maxWeights) {
  if (in.operands.size() != operands)
    error("expected " + std::to_string(operands) + " operands, got " +
          std::to_string(in.operands.size()));
  if (in.results.size() != resultsN)
    error("expected " + std::to_string(resultsN) + " results, got " +
          std::to_string(in.results.size()));
  if (in.weights.size() < minWeights || in.weights.size() > maxWeights)
    error("wrong number of weights (" + std::to_string(in.weights.size()) +
          ")");
}

static std::string shapeStr(const std::vector<int64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

void Verifier::expectShape(const Weight &w, std::vector<int64_t> shape,
                           const char *what) {
  if (w.shape != shape)
    error(std::string(what) + " '" + w.name + "' has shape " +
          shapeStr(w.shape) + ", expected " + shapeStr(shape));
}

void Verifier::expectSame(const ValueInfo &a, const ValueInfo &b,
                          const char *what) {
  if (a.width != b.width || a.perToken != b.perToken)
    error(std::string(what) + ": width/kind mismatch (" +
          std::to_string(a.width) + " vs " + std::to_string(b.width) + ")");
}

void Verifier::verifyInstr(const Instr &in) {
  // Resolve operands first (uses must precede the definitions).
  std::vector<ValueInfo> ops;
  for (int32_t id : in.operands)
    ops.push_back(use(id));
  for (int32_t id : in.weights)
    weight(id);
  auto W = [&](size_t i) -> const Weight & { return p.weights[in.weights[i]]; };

  switch (opFamily(in.op)) {
  case OpFamily::Unary:
    expectCounts(in, 1, 1, 0, 0);
    expectSame(ops[0], def(in.results[0]), "activation");
    return;
  case OpFamily::Binary:
    expectCounts(in, 2, 1, 0, 0);
    expectSame(ops[0], ops[1], "elementwise operands");
    expectSame(ops[0], def(in.results[0]), "elementwise result");
    return;
  case OpFamily::Gated: {
    expectCounts(in, 1, 1, 0, 0);
    const ValueInfo &r = def(in.results[0]);
    if (ops[0].perToken != r.perToken || ops[0].width != 2 * r.width)
      error("a gated activation halves its operand's width (" +
            std::to_string(ops[0].width) + " -> " + std::to_string(r.width) +
            ")");
    return;
  }
  case OpFamily::Special:
    break;
  }
  switch (in.op) {
  case OpCode::Embed: {
    expectCounts(in, 1, 1, 1, 1);
    const ValueInfo &r = def(in.results[0]);
    if (in.operands[0] != p.tokenValue)
      error("embed operand must be the token input");
    if (!r.perToken)
      error("embed result must be per token");
    if (W(0).shape.size() != 2 || W(0).shape[0] < p.vocabSize ||
        W(0).shape[1] != r.width)
      error("embedding table '" + W(0).name + "' has shape " +
            shapeStr(W(0).shape) + ", expected [>=" +
            std::to_string(p.vocabSize) + "," + std::to_string(r.width) + "]");
    return;
  }
  case OpCode::AddLearnedPositions: {
    expectCounts(in, 1, 1, 1, 1);
    const ValueInfo &r = def(in.results[0]);
    expectSame(ops[0], r, "positions");
    if (!r.perToken)
      error("positions need a per-token operand");
    if (in.attrs.positionOffset < 0)
      error("negative position offset");
    if (W(0).shape.size() != 2 || W(0).shape[1] != r.width ||
        W(0).shape[0] < int64_t(p.maxPositions) + in.attrs.positionOffset)
      error("position table '" + W(0).name + "' has shape " +
            shapeStr(W(0).shape) + ", needs [>=" +
            std::to_string(int64_t(p.maxPositions) + in.attrs.positionOffset) +
            "," + std::to_string(r.width) + "]");
    return;
  }
  case OpCode::LayerNorm:
  case OpCode::RmsNorm: {
    bool ln = in.op == OpCode::LayerNorm;
    expectCounts(in, 1, 1, ln ? 2 : 1, ln ? 2 : 1);
    const ValueInfo &r = def(in.results[0]);
    expectSame(ops[0], r, "norm");
    for (size_t i = 0; i < in.weights.size(); ++i)
      expectShape(W(i), {r.width}, "norm parameter");
    if (!(in.attrs.epsilon >= 0.0f) || !std::isfinite(in.attrs.epsilon))
      error("norm epsilon must be finite and >= 0");
    return;
  }
  case OpCode::Linear: {
    expectCounts(in, 1, 1, 1, 2);
    const ValueInfo &r = def(in.results[0]);
    if (ops[0].perToken != r.perToken)
      error("linear result kind differs from its operand");
    expectShape(W(0), {r.width, ops[0].width}, "linear weight");
    if (in.weights.size() == 2)
      expectShape(W(1), {r.width}, "linear bias");
    return;
  }
  case OpCode::Attention: {
    expectCounts(in, 3, 1, 0, 0);
    const ValueInfo &r = def(in.results[0]);
    const InstrAttrs &a = in.attrs;
    for (const ValueInfo &v : ops)
      if (!v.perToken)
        error("attention operands must be per token");
    if (a.numHeads <= 0 || a.numKvHeads <= 0 || a.numHeads % a.numKvHeads)
      error("numHeads must be a positive multiple of numKvHeads");
    if (ops[0].width % a.numHeads)
      error("q width " + std::to_string(ops[0].width) +
            " is not a multiple of numHeads");
    int64_t hd = ops[0].width / a.numHeads;
    if (ops[1].width != a.numKvHeads * hd || ops[2].width != a.numKvHeads * hd)
      error("k/v width must be numKvHeads * headDim = " +
            std::to_string(a.numKvHeads * hd));
    if (!r.perToken || r.width != ops[0].width)
      error("attention result must be per token with the q width");
    if (!(a.ropeTheta >= 0.0f) || !std::isfinite(a.ropeTheta))
      error("ropeTheta must be finite and >= 0");
    if (a.ropeTheta > 0.0f && hd % 2)
      error("rotary embedding needs an even head dimension");
    if (!std::isfinite(a.scale))
      error("attention scale must be finite");
    return;
  }
  case OpCode::VectorQuantize: {
    expectCounts(in, 1, 2, 1, 1);
    const ValueInfo &q = def(in.results[0]);
    const ValueInfo &codes = def(in.results[1]);
    expectSame(ops[0], q, "quantized result");
    const Weight &cb = W(0);
    if (cb.shape.size() != 3 || cb.shape[0] * cb.shape[2] != q.width)
      error("codebook '" + cb.name + "' has shape " + shapeStr(cb.shape) +
            ", expected [G,K,width/G] with width " + std::to_string(q.width));
    if (codes.perToken != q.perToken || codes.width != cb.shape[0])
      error("codes result must have width G = " + std::to_string(cb.shape[0]));
    return;
  }
  case OpCode::Pool: {
    expectCounts(in, 1, 1, 0, 0);
    const ValueInfo &r = def(in.results[0]);
    if (!ops[0].perToken || r.perToken || r.width != ops[0].width)
      error("pool maps a per-token value to a vector of the same width");
    if (in.attrs.pool != PoolKind::Last && in.attrs.pool != PoolKind::Mean)
      error("unknown pool kind");
    return;
  }
  default: // the elementwise families, above
    break;
  }
  error("unknown opcode " + std::to_string(uint32_t(in.op)));
}

Status Verifier::run() {
  try {
    if (p.vocabSize <= 0)
      fail("vocabSize must be positive");
    if (p.maxPositions <= 0)
      fail("maxPositions must be positive");
    if (p.maxPositions > exact::kMaxKeys)
      fail("maxPositions " + std::to_string(p.maxPositions) +
           " exceeds the runtime's limit of " +
           std::to_string(exact::kMaxKeys) +
           " tokens (the exact attention accumulators' bound)");
    if (!p.positionScheme.empty() && p.positionScheme != "learned" &&
        p.positionScheme != "rope" && p.positionScheme != "none")
      fail("unknown position scheme '" + p.positionScheme + "'");
    for (size_t i = 0; i < p.values.size(); ++i)
      if (p.values[i].width <= 0 || p.values[i].width > kMaxWidth)
        fail("value " + std::to_string(i) + " has bad width " +
             std::to_string(p.values[i].width));
    for (const Weight &w : p.weights) {
      if (w.shape.empty())
        fail("weight '" + w.name + "' has no shape");
      for (int64_t d : w.shape)
        if (d <= 0)
          fail("weight '" + w.name + "' has a non-positive dimension");
      int64_t numel = w.numElements();
      if (numel < 0 || uint64_t(numel) > (uint64_t(1) << 40))
        fail("weight '" + w.name + "' is too large");
      if (!w.owned.empty() ? int64_t(w.owned.size()) != numel : !w.data)
        fail("weight '" + w.name + "' has no data of the right size");
      const float *data = w.ptr();
      if (!exact::withinBound(data, numel, FLT_MAX))
        for (int64_t i = 0; i < numel; ++i)
          if (!std::isfinite(data[i]))
            fail("weight '" + w.name + "' element " + std::to_string(i) +
                 " is " + (std::isnan(data[i]) ? "NaN" : "infinite") +
                 ": weights must be finite");
    }
    if (p.tokenValue < 0 || size_t(p.tokenValue) >= p.values.size())
      fail("token value id out of range");
    const ValueInfo &tok = p.values[p.tokenValue];
    if (tok.width != 1 || !tok.perToken)
      fail("the token value must be per token with width 1");
    defined.assign(p.values.size(), false);
    defined[p.tokenValue] = true;
    for (size_t i = 0; i < p.instrs.size(); ++i) {
      where = "instruction " + std::to_string(i) + " (" +
              opCodeName(p.instrs[i].op) + "): ";
      verifyInstr(p.instrs[i]);
    }
    where.clear();
    if (p.outputValue < 0 || size_t(p.outputValue) >= p.values.size() ||
        !defined[p.outputValue])
      fail("output value is not defined by any instruction");
    const ValueInfo &out = p.values[p.outputValue];
    if (out.perToken)
      fail("the output value must be a vector (pool first)");
    if (p.task == TaskKind::CausalLM && out.width != p.vocabSize)
      fail("a causal LM's output width must equal vocabSize");
    if (p.task != TaskKind::CausalLM && p.task != TaskKind::Classifier)
      fail("unknown task kind");
    if (!p.labels.empty() && int64_t(p.labels.size()) != out.width)
      fail("label count " + std::to_string(p.labels.size()) +
           " differs from the output width " + std::to_string(out.width));
  } catch (const FormatError &e) {
    return Status::failure(e.message);
  } catch (const std::exception &e) {
    return Status::failure(e.what());
  }
  return Status::success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Public API
//===----------------------------------------------------------------------===//

const char *opCodeName(OpCode op) {
  switch (op) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  case OpCode::Name:                                                           \
    return Str;
#include "incnn/runtime/OpTable.def"
  }
  return "unknown";
}

OpFamily opFamily(OpCode op) {
  switch (op) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  case OpCode::Name:                                                           \
    return OpFamily::Special;
#define INCNN_UNARY_OP(Name, Code, Str, Kernel)                                \
  case OpCode::Name:                                                           \
    return OpFamily::Unary;
#define INCNN_BINARY_OP(Name, Code, Str, Kernel)                               \
  case OpCode::Name:                                                           \
    return OpFamily::Binary;
#define INCNN_GATED_OP(Name, Code, Str, Activation)                            \
  case OpCode::Name:                                                           \
    return OpFamily::Gated;
#include "incnn/runtime/OpTable.def"
  }
  return OpFamily::Special;
}

std::optional<OpCode> opCodeOfMnemonic(std::string_view mnemonic) {
#define INCNN_OP(Name, Code, Str, Mnemonic)                                    \
  if (mnemonic == Mnemonic)                                                    \
    return OpCode::Name;
#include "incnn/runtime/OpTable.def"
  return std::nullopt;
}

int64_t Weight::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<int64_t>::max() / d))
      return -1;
    n *= d;
  }
  return n;
}

Status verifyProgram(const Program &program) {
  if (Status st = Verifier(program).run(); !st.ok())
    return st;
  return verifySteps(program);
}

std::string printProgram(const Program &p) {
  std::string out;
  auto value = [&](int32_t id) {
    const std::string &name = p.values[size_t(id)].name;
    return "%" + std::to_string(id) + (name.empty() ? "" : "'" + name + "'");
  };
  auto rows = [](int32_t r) { return "%r" + std::to_string(r); };
  out += std::string("program ") +
         (p.task == TaskKind::Classifier ? "classifier" : "causal_lm") +
         ", max_positions " + std::to_string(p.maxPositions) + ", " +
         std::to_string(p.instrs.size()) + " instructions, " +
         std::to_string(p.steps.size()) + " steps, " +
         std::to_string(p.numRowSets) + " row sets\n";
  out += "instructions:\n";
  for (size_t i = 0; i < p.instrs.size(); ++i) {
    const Instr &in = p.instrs[i];
    out += "  @" + std::to_string(i) + " ";
    for (size_t r = 0; r < in.results.size(); ++r)
      out += (r ? ", " : "") + value(in.results[r]);
    out += std::string(" = ") + opCodeName(in.op);
    for (size_t o = 0; o < in.operands.size(); ++o)
      out += (o ? ", " : " ") + value(in.operands[o]);
    if (in.op == OpCode::Attention)
      out += std::string(in.attrs.causal ? " causal" : " bidirectional") +
             (in.attrs.window > 0 ? " window " + std::to_string(in.attrs.window)
                                  : "");
    out += "\n";
  }
  out += "steps:\n";
  for (const Step &s : p.steps) {
    out += "  " + rows(s.output) + " = " + stepKindName(s.kind);
    if (s.instr >= 0) {
      const Instr &in = p.instrs[size_t(s.instr)];
      out += " @" + std::to_string(s.instr) + " " + opCodeName(in.op) + " " +
             value(in.results[0]);
    }
    static const char *attentionInputs[] = {" query ", " keys "};
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      if (s.kind == StepKind::AttentionUpdate)
        out += attentionInputs[i];
      else if (s.kind == StepKind::Union)
        out += i ? ", " : " ";
      else
        out += " rows ";
      out += rows(s.inputs[i]);
    }
    out += "\n";
  }
  out +=
      "output: " + value(p.outputValue) + " rows " + rows(p.outputRows) + "\n";
  out += "cache: " + std::to_string(cacheBytesPerToken(p)) +
         " bytes per token, keeps";
  for (size_t v = 0; v < p.values.size(); ++v)
    if (p.values[v].perToken && p.values[v].keepAllRows &&
        int32_t(v) != p.tokenValue)
      out += " " + value(int32_t(v));
  out += "\n";
  return out;
}

int64_t cacheBytesPerToken(const Program &program) {
  int64_t bytes = 0;
  for (size_t i = 0; i < program.values.size(); ++i)
    if (program.values[i].perToken && program.values[i].keepAllRows &&
        int32_t(i) != program.tokenValue)
      bytes += 4 * int64_t(program.values[i].width);
  for (const Instr &in : program.instrs)
    if (in.op == OpCode::Attention)
      bytes += 16 * int64_t(in.attrs.numHeads) +
               8 * int64_t(program.values[size_t(in.operands[0])].width);
  return bytes;
}

const char *stepKindName(StepKind kind) {
  switch (kind) {
#define INCNN_STEP(Name, Code, Str, Inputs, Output, Handler)                   \
  case StepKind::Name:                                                         \
    return Str;
#include "incnn/runtime/StepTable.def"
  }
  return "unknown";
}

Status writeProgram(const Program &program, const std::string &path) {
  Status st = verifyProgram(program);
  if (!st.ok())
    return Status::failure("refusing to write an invalid program: " + st.error);
  try {
    json meta;
    meta["format"] = "incnn-program";
    meta["family"] = program.family;
    meta["task"] = taskName(program.task);
    meta["vocab_size"] = program.vocabSize;
    meta["max_positions"] = program.maxPositions;
    meta["position_scheme"] = program.positionScheme;
    meta["labels"] = program.labels;
    meta["bos_token_id"] = program.bosTokenId;
    meta["eos_token_id"] = program.eosTokenId;
    meta["pad_token_id"] = program.padTokenId;
    meta["token_value"] = program.tokenValue;
    meta["output_value"] = program.outputValue;
    json values = json::array();
    for (const ValueInfo &v : program.values)
      values.push_back({{"name", v.name},
                        {"width", v.width},
                        {"per_token", v.perToken},
                        {"keep_all_rows", v.keepAllRows}});
    meta["values"] = std::move(values);
    // Data offsets are relative to the data section, which starts at the
    // first 64-byte boundary after the metadata.
    uint64_t offset = 0;
    json weights = json::array();
    for (const Weight &w : program.weights) {
      weights.push_back(
          {{"name", w.name}, {"shape", w.shape}, {"offset", offset}});
      offset = alignUp(offset + uint64_t(w.numElements()) * sizeof(float));
    }
    meta["weights"] = std::move(weights);
    json instrs = json::array();
    for (const Instr &in : program.instrs)
      instrs.push_back(instrToJson(in));
    meta["instrs"] = std::move(instrs);
    json steps = json::array();
    for (const Step &st : program.steps)
      steps.push_back(stepToJson(st));
    meta["steps"] = std::move(steps);
    meta["row_sets"] = program.numRowSets;
    meta["output_rows"] = program.outputRows;
    if (!program.tokenizer.empty())
      meta["tokenizer"] = {{"offset", offset},
                           {"size", program.tokenizer.size()}};
    std::string text = meta.dump();

    std::fstream os(path, std::ios::binary | std::ios::trunc | std::ios::in |
                              std::ios::out);
    if (!os)
      return Status::failure("cannot open '" + path +
                             "' for writing: " + std::strerror(errno));
    char header[kHeaderSize] = {};
    std::memcpy(header, kMagic, 8);
    uint32_t version = kProgramVersion;
    std::memcpy(header + 8, &version, 4);
    uint64_t metaLen = text.size();
    std::memcpy(header + 16, &metaLen, 8);
    // Everything but the checksum field goes through the checksum.
    Checksum sum;
    auto emit = [&](const void *data, uint64_t bytes) {
      os.write(static_cast<const char *>(data), std::streamsize(bytes));
      sum.update(data, bytes);
    };
    emit(header, kChecksumOffset);
    os.write(header + kChecksumOffset, 8);
    emit(header + kChecksumOffset + 8, kHeaderSize - kChecksumOffset - 8);
    emit(text.data(), text.size());
    static const char zeros[kAlign] = {};
    uint64_t pos = kHeaderSize + metaLen;
    auto pad = [&] {
      uint64_t target = alignUp(pos);
      emit(zeros, target - pos);
      pos = target;
    };
    pad();
    for (const Weight &w : program.weights) {
      uint64_t bytes = uint64_t(w.numElements()) * sizeof(float);
      emit(w.ptr(), bytes);
      pos += bytes;
      pad();
    }
    emit(program.tokenizer.data(), program.tokenizer.size());
    uint64_t checksum = sum.finish();
    os.seekp(std::streamoff(kChecksumOffset));
    os.write(reinterpret_cast<const char *>(&checksum), 8);
    os.close();
    if (!os)
      return Status::failure("error writing '" + path + "'");
  } catch (const std::exception &e) {
    return Status::failure(std::string("error writing program: ") + e.what());
  }
  return Status::success();
}

Status loadProgram(const std::string &path, Program &program) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::failure("cannot open '" + path +
                           "': " + std::strerror(errno));
  struct stat sb;
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    return Status::failure("'" + path + "' is not a regular file");
  }
  uint64_t size = uint64_t(sb.st_size);
  if (size < kHeaderSize) {
    ::close(fd);
    return Status::failure("invalid program file: '" + path +
                           "' is too small (" + std::to_string(size) +
                           " bytes)");
  }
  void *addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED)
    return Status::failure("cannot map '" + path +
                           "': " + std::strerror(errno));
  std::shared_ptr<void> backing(addr, [size](void *p) { ::munmap(p, size); });
  Status st = loadImpl(static_cast<const uint8_t *>(addr), size,
                       std::move(backing), program);
  if (!st.ok())
    return Status::failure(path + ": " + st.error);
  return st;
}

Status loadProgramFromBuffer(const void *data, size_t size, Program &program) {
  if (!data && size)
    return Status::failure("null buffer");
  // Copy into a 64-byte aligned buffer so weights are aligned like in a map.
  size_t allocSize = alignUp(std::max<size_t>(size, 1));
  void *copy = std::aligned_alloc(kAlign, allocSize);
  if (!copy)
    return Status::failure("out of memory copying the program");
  if (size)
    std::memcpy(copy, data, size);
  std::shared_ptr<void> backing(copy, [](void *p) { std::free(p); });
  return loadImpl(static_cast<const uint8_t *>(copy), size, std::move(backing),
                  program);
}

} // namespace incnn::runtime
