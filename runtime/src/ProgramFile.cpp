//===- ProgramFile.cpp - writing and loading program files ---------------===//
//
// The file format is documented in docs/program-format.md. The loader treats
// every byte as untrusted: all sizes, offsets and JSON types are checked, and
// nothing here may crash or read out of bounds on any input.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Program.h"

#include "Checksum.h"

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
/// The first version with a certificate table.
constexpr uint32_t kCertificateTableVersion = 5;
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
    in.attrs.pool = PoolKind(getIntOr(a, "pool", 0, 2, 0));
  }
  return in;
}

json chainToJson(const CertificateChain &c) {
  json j;
  j["attention"] = c.attention;
  if (c.linear >= 0)
    j["linear"] = c.linear;
  j["vq"] = c.vq;
  if (c.normBound != 0.0)
    j["norm_bound"] = c.normBound;
  if (c.defer)
    j["defer"] = true;
  return j;
}

CertificateChain chainFromJson(const json &j) {
  CertificateChain c;
  c.attention = int32_t(getInt(j, "attention", 0, 1 << 30));
  c.linear = int32_t(getIntOr(j, "linear", -1, 1 << 30, -1));
  c.vq = int32_t(getInt(j, "vq", 0, 1 << 30));
  if (j.contains("norm_bound")) {
    const json &b = j["norm_bound"];
    if (!b.is_number())
      fail("norm_bound must be a number");
    c.normBound = b.get<double>();
  }
  if (j.contains("defer")) {
    if (!j["defer"].is_boolean())
      fail("defer must be a boolean");
    c.defer = j["defer"].get<bool>();
  }
  return c;
}

/// Parses a file image (already in memory, 64-byte aligned base) into
/// `program`. Weight pointers point into `base`. Returns the file's version.
uint32_t parseImage(const uint8_t *base, uint64_t size, Program &program) {
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
  if (!taskOfName(task, program.task))
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
    info.width = int32_t(getInt(v, "width", 1, kMaxValueWidth));
    info.perToken = getBoolOr(v, "per_token", true);
    info.keepAllRows = getBoolOr(v, "keep_all_rows", true);
    info.tableRows = getBoolOr(v, "table_rows", false);
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
  if (version >= kCertificateTableVersion && meta.contains("certificates"))
    for (const json &c : getArray(meta, "certificates"))
      program.certificateChains.push_back(chainFromJson(c));

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
  return version;
}

Status loadImpl(const uint8_t *base, uint64_t size,
                std::shared_ptr<void> backing, Program &program) {
  Program result;
  uint32_t version = 0;
  try {
    version = parseImage(base, size, result);
  } catch (const FormatError &e) {
    return Status::invalidArgument("invalid program file: " + e.message);
  } catch (const std::exception &e) {
    return Status::invalidArgument(std::string("invalid program file: ") +
                                   e.what());
  }
  result.backing = std::move(backing);
  Status st = verifyProgram(result);
  if (!st.ok())
    return Status::invalidArgument("invalid program: " + st.error);
  // Files before version 5 have no certificate table: they keep the chains
  // the runtime found itself, with its own norm bounds (no claims).
  if (version < kCertificateTableVersion)
    result.certificateChains = findCertificateChains(result);
  program = std::move(result);
  return Status::success();
}

} // namespace

Status writeProgram(const Program &program, const std::string &path) {
  Status st = verifyProgram(program);
  if (!st.ok())
    return Status::invalidArgument("refusing to write an invalid program: " +
                                   st.error);
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
                        {"keep_all_rows", v.keepAllRows},
                        {"table_rows", v.tableRows}});
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
    json chains = json::array();
    for (const CertificateChain &c : program.certificateChains)
      chains.push_back(chainToJson(c));
    meta["certificates"] = std::move(chains);
    if (!program.tokenizer.empty())
      meta["tokenizer"] = {{"offset", offset},
                           {"size", program.tokenizer.size()}};
    std::string text = meta.dump();

    std::fstream os(path, std::ios::binary | std::ios::trunc | std::ios::in |
                              std::ios::out);
    if (!os)
      return Status::ioError("cannot open '" + path +
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
      return Status::ioError("error writing '" + path + "'");
  } catch (const std::exception &e) {
    return Status::ioError(std::string("error writing program: ") + e.what());
  }
  return Status::success();
}

Status loadProgram(const std::string &path, Program &program) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::ioError("cannot open '" + path +
                           "': " + std::strerror(errno));
  struct stat sb;
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    return Status::invalidArgument("'" + path + "' is not a regular file");
  }
  uint64_t size = uint64_t(sb.st_size);
  if (size < kHeaderSize) {
    ::close(fd);
    return Status::invalidArgument("invalid program file: '" + path +
                                   "' is too small (" + std::to_string(size) +
                                   " bytes)");
  }
  void *addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED)
    return Status::ioError("cannot map '" + path +
                           "': " + std::strerror(errno));
  std::shared_ptr<void> backing(addr, [size](void *p) { ::munmap(p, size); });
  Status st = loadImpl(static_cast<const uint8_t *>(addr), size,
                       std::move(backing), program);
  if (!st.ok())
    return st.within(path + ": ");
  return st;
}

Status loadProgramFromBuffer(const void *data, size_t size, Program &program) {
  if (!data && size)
    return Status::invalidArgument("null buffer");
  // Copy into a 64-byte aligned buffer so weights are aligned like in a map.
  size_t allocSize = alignUp(std::max<size_t>(size, 1));
  void *copy = std::aligned_alloc(kAlign, allocSize);
  if (!copy)
    return Status::exhausted("out of memory copying the program");
  if (size)
    std::memcpy(copy, data, size);
  std::shared_ptr<void> backing(copy, [](void *p) { std::free(p); });
  return loadImpl(static_cast<const uint8_t *>(copy), size, std::move(backing),
                  program);
}

} // namespace incnn::runtime
