//===- Checkpoint.cpp - config.json and safetensors readers ---------------===//
#include "Checkpoint.h"

#include <nlohmann/json.hpp>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using json = nlohmann::json;

namespace incnn::checkpoint {

std::string VQSite::codebookName() const {
  return "incnn.vq." + std::to_string(layer) + "." + site + ".codebook";
}

const VQSite *ModelConfig::findVQ(int layer, const std::string &site) const {
  for (const VQSite &s : vq)
    if (s.layer == layer && s.site == site)
      return &s;
  return nullptr;
}

namespace {

/// Reads typed config keys, remembering the first error.
class ConfigReader {
public:
  explicit ConfigReader(const json &root) : root(root) {}

  int getInt(const char *key, int fallback, bool required, int minValue = 1) {
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) {
      if (required)
        fail(std::string("config.json: missing required key '") + key + "'");
      return fallback;
    }
    if (!it->is_number_integer()) {
      fail(std::string("config.json: '") + key + "' must be an integer");
      return fallback;
    }
    int64_t value = it->get<int64_t>();
    if (value < minValue || value > (int64_t(1) << 30)) {
      fail(std::string("config.json: '") + key +
           "' = " + std::to_string(value) + " is out of range");
      return fallback;
    }
    return static_cast<int>(value);
  }

  float getFloat(const char *key, float fallback) {
    auto it = root.find(key);
    if (it == root.end() || it->is_null())
      return fallback;
    if (!it->is_number()) {
      fail(std::string("config.json: '") + key + "' must be a number");
      return fallback;
    }
    double value = it->get<double>();
    if (!std::isfinite(value) || std::fabs(value) > double(FLT_MAX)) {
      fail(std::string("config.json: '") + key + "' = " + it->dump() +
           " does not fit a 32-bit float");
      return fallback;
    }
    return float(value);
  }

  bool getBool(const char *key, bool fallback) {
    auto it = root.find(key);
    if (it == root.end() || it->is_null())
      return fallback;
    if (!it->is_boolean()) {
      fail(std::string("config.json: '") + key + "' must be true or false");
      return fallback;
    }
    return it->get<bool>();
  }

  std::string getString(const char *key, const std::string &fallback) {
    auto it = root.find(key);
    if (it == root.end() || it->is_null())
      return fallback;
    if (!it->is_string()) {
      fail(std::string("config.json: '") + key + "' must be a string");
      return fallback;
    }
    return it->get<std::string>();
  }

  void fail(std::string message) {
    if (error.empty())
      error = std::move(message);
  }

  const json &root;
  std::string error;
};

/// Hugging Face activation names (ACT2FN) incnn computes exactly.
bool readActivation(ConfigReader &r, const char *key, std::string &out) {
  out = r.getString(key, "gelu");
  if (out == "gelu_pytorch_tanh")
    out = "gelu_new"; // the same function
  if (out == "gelu" || out == "gelu_new" || out == "relu" || out == "silu")
    return true;
  r.fail(std::string("config.json: ") + key +
         " must be gelu, gelu_new, gelu_pytorch_tanh, relu or silu, got '" +
         out + "'");
  return false;
}

/// BERT and ModernBERT (bidirectional encoders, Hugging Face names).
/// ModernBERT's rotary bases: global_rope_theta (160000) on global layers,
/// local_rope_theta (10000) on local ones, or newer configs' rope_parameters.
void readModernBertRope(ConfigReader &r, ModelConfig &c) {
  c.ropeTheta = r.getFloat("global_rope_theta", 160000.0f);
  c.localRopeTheta = r.getFloat("local_rope_theta", 10000.0f);
  auto params = r.root.find("rope_parameters");
  if (params == r.root.end() || params->is_null())
    return;
  if (!params->is_object()) {
    r.fail("config.json: rope_parameters must be an object");
    return;
  }
  auto theta = [&](const char *layerType, float &out) {
    auto it = params->find(layerType);
    if (it == params->end() || it->is_null())
      return;
    ConfigReader sub(*it);
    if (!it->is_object() || sub.getString("rope_type", "default") != "default")
      r.fail(std::string("config.json: rope_parameters.") + layerType +
             " must be an object with the default rope_type");
    else
      out = sub.getFloat("rope_theta", out);
    if (!sub.error.empty())
      r.fail(sub.error);
  };
  theta("full_attention", c.ropeTheta);
  theta("sliding_attention", c.localRopeTheta);
}

void readEncoder(ConfigReader &r, ModelConfig &c) {
  c.ffn = r.getInt("intermediate_size", 0, true);
  c.kvHeads = c.heads;
  c.causal = false;
  if (c.family == "bert") {
    c.position = "learned";
    if (r.getString("position_embedding_type", "absolute") != "absolute")
      r.fail("config.json: only absolute position embeddings "
             "(position_embedding_type) are supported for bert");
    c.typeVocab = r.getInt("type_vocab_size", 2, false);
    c.normEps = r.getFloat("layer_norm_eps", 1e-12f);
    readActivation(r, "hidden_act", c.activation);
    c.pool = "first"; // the pooler reads [CLS]
    return;
  }
  c.position = "rope";
  c.normEps = r.getFloat("norm_eps", 1e-5f);
  c.normBias = r.getBool("norm_bias", false);
  c.enableBias = r.getBool("attention_bias", false);
  c.mlpBias = r.getBool("mlp_bias", false);
  c.headBias = r.getBool("classifier_bias", false);
  readActivation(r, "hidden_activation", c.activation);
  readActivation(r, "classifier_activation", c.headActivation);
  readModernBertRope(r, c);
  if (r.root.contains("sliding_window"))
    r.fail("config.json: modernbert's window is local_attention (keys within "
           "local_attention / 2 of the row), not sliding_window");
  // Keys with |i - j| <= local_attention / 2: incnn's window is one more.
  c.slidingWindow = r.getInt("local_attention", 128, false, 2) / 2 + 1;
  c.globalEvery = r.getInt("global_attn_every_n_layers", 3, false);
  if (auto types = r.root.find("layer_types");
      types != r.root.end() && !types->is_null()) {
    bool periodic = types->is_array() && int(types->size()) == c.layers;
    for (int i = 0; periodic && i < c.layers; ++i)
      periodic = (*types)[size_t(i)] ==
                 (i % c.globalEvery ? "sliding_attention" : "full_attention");
    if (!periodic)
      r.fail("config.json: layer_types must make every "
             "global_attn_every_n_layers-th layer (0, N, 2N, ...) "
             "full_attention and the others sliding_attention");
  }
  std::string pooling = r.getString("classifier_pooling", "cls");
  if (pooling != "cls" && pooling != "mean")
    r.fail("config.json: classifier_pooling must be cls or mean, got '" +
           pooling + "'");
  c.pool = pooling == "cls" ? "first" : "mean";
}

std::string parseConfigJson(const json &root, ModelConfig &c) {
  if (!root.is_object())
    return "config.json: top level must be an object";
  ConfigReader r(root);
  c.family = r.getString("model_type", "");
  if (!r.error.empty())
    return r.error;
  if (c.family.empty())
    return "config.json: missing required key 'model_type'";
  static const std::map<std::string, std::string> prefixes = {
      {"opt", "OPTFor"},
      {"llama", "LlamaFor"},
      {"bert", "BertFor"},
      {"modernbert", "ModernBertFor"}};
  auto family = prefixes.find(c.family);
  if (family == prefixes.end())
    return "config.json: unsupported model_type '" + c.family +
           "' (supported: opt, llama, bert, modernbert)";
  bool isOpt = c.family == "opt";
  bool encoder = c.family == "bert" || c.family == "modernbert";

  auto arch = root.find("architectures");
  if (arch != root.end()) {
    if (!arch->is_array() || arch->size() != 1 || !(*arch)[0].is_string())
      return "config.json: 'architectures' must be a list of one string";
    c.architecture = (*arch)[0].get<std::string>();
  } else if (encoder) {
    return "config.json: an encoder needs 'architectures' (" + family->second +
           "SequenceClassification or " + family->second +
           "TokenClassification)";
  } else {
    c.architecture = family->second + "CausalLM";
  }
  const std::string &prefix = family->second;
  if (c.architecture == prefix + "CausalLM" && !encoder)
    c.classifier = false;
  else if (c.architecture == prefix + "SequenceClassification")
    c.classifier = true;
  else if (c.architecture == prefix + "TokenClassification" &&
           (encoder || c.family == "llama"))
    c.classifier = c.tokenClassifier = true;
  else
    return "config.json: unsupported architecture '" + c.architecture +
           "' for model_type '" + c.family +
           "' (supported: " + (encoder ? "" : prefix + "CausalLM, ") + prefix +
           "SequenceClassification" +
           (isOpt ? "" : ", " + prefix + "TokenClassification") + ")";

  c.vocabSize = r.getInt("vocab_size", 0, true);
  c.hidden = r.getInt("hidden_size", 0, true);
  c.layers = r.getInt("num_hidden_layers", 0, true);
  c.heads = r.getInt("num_attention_heads", 0, true);
  c.maxPositions = r.getInt("max_position_embeddings", 0, true);
  c.bosTokenId = r.getInt("bos_token_id", -1, false, -1);
  c.eosTokenId = r.getInt("eos_token_id", -1, false, -1);
  c.padTokenId = r.getInt("pad_token_id", -1, false, -1);
  if (encoder) {
    readEncoder(r, c);
  } else if (isOpt) {
    c.ffn = r.getInt("ffn_dim", 0, true);
    c.kvHeads = c.heads;
    if (!r.getBool("do_layer_norm_before", true))
      r.fail("config.json: only pre-LayerNorm OPT (do_layer_norm_before: "
             "true) is supported");
    int proj = r.getInt("word_embed_proj_dim", c.hidden, false);
    if (proj != c.hidden)
      r.fail("config.json: word_embed_proj_dim must equal hidden_size");
    c.activation = r.getString("activation_function", "relu");
    if (c.activation == "gelu_pytorch_tanh")
      c.activation = "gelu_new"; // the same function
    if (c.activation != "relu" && c.activation != "gelu" &&
        c.activation != "gelu_new" && c.activation != "geglu" &&
        c.activation != "swiglu")
      r.fail("config.json: activation_function must be relu, gelu, gelu_new, "
             "geglu or swiglu (fc1 then has 2 x ffn_dim outputs), got '" +
             c.activation + "'");
    c.enableBias = r.getBool("enable_bias", true);
    c.normEps = r.getFloat("layer_norm_eps", 1e-5f);
    c.tieEmbeddings = r.getBool("tie_word_embeddings", true);
  } else {
    c.ffn = r.getInt("intermediate_size", 0, true);
    c.kvHeads = r.getInt("num_key_value_heads", c.heads, false);
    c.normEps = r.getFloat("rms_norm_eps", 1e-6f);
    c.tieEmbeddings = r.getBool("tie_word_embeddings", false);
    c.enableBias = false;
    c.activation = r.getString("hidden_act", "silu");
    if (c.activation != "silu")
      r.fail("config.json: hidden_act must be silu, got '" + c.activation +
             "'");
  }
  if (!encoder) {
    c.ropeTheta = r.getFloat("rope_theta", 10000.0f);
    c.localRopeTheta = c.ropeTheta;
    c.position = r.getString("incnn_position", isOpt ? "learned" : "rope");
    std::string attention = r.getString("incnn_attention", "causal");
    if (attention != "causal" && attention != "bidirectional")
      r.fail("config.json: incnn_attention must be causal or bidirectional");
    c.causal = attention == "causal";
    c.slidingWindow = r.getBool("use_sliding_window", true)
                          ? r.getInt("sliding_window", 0, false)
                          : 0;
    c.globalEvery = r.getInt("global_attn_every_n_layers", 0, false);
    c.pool = r.getString("incnn_pool", "last");
    if (c.pool != "last" && c.pool != "mean")
      r.fail("config.json: incnn_pool must be last or mean");
  }
  if (!r.error.empty())
    return r.error;

  if (c.position != "learned" && c.position != "rope" && c.position != "none")
    return "config.json: incnn_position must be learned, rope or none, got '" +
           c.position + "'";
  if (c.position == "learned" && !isOpt && c.family != "bert")
    return "config.json: learned positions are only defined for opt and bert";
  if (!(c.normEps > 0.0f) || c.normEps > 1.0f)
    return "config.json: norm epsilon must be in (0, 1]";
  if (!(c.ropeTheta > 0.0f) || !(c.localRopeTheta > 0.0f))
    return "config.json: rope theta must be positive";
  if (c.hidden % c.heads != 0)
    return "config.json: hidden_size " + std::to_string(c.hidden) +
           " is not divisible by num_attention_heads " +
           std::to_string(c.heads);
  if (c.heads % c.kvHeads != 0)
    return "config.json: num_attention_heads must be a multiple of "
           "num_key_value_heads";
  if (c.position == "rope" && c.headDim() % 2 != 0)
    return "config.json: rotary positions need an even head dimension";
  if (c.bosTokenId >= c.vocabSize || c.eosTokenId >= c.vocabSize ||
      c.padTokenId >= c.vocabSize)
    return "config.json: a special token id is outside the vocabulary";

  if (c.classifier) {
    auto labels = root.find("id2label");
    if (labels == root.end() || !labels->is_object() || labels->empty())
      return "config.json: classifiers need a non-empty 'id2label' object";
    c.labels.assign(labels->size(), "");
    for (auto &[key, value] : labels->items()) {
      char *end = nullptr;
      long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 ||
          id >= static_cast<long>(c.labels.size()) || !value.is_string())
        return "config.json: id2label keys must be 0..N-1 with string names";
      c.labels[id] = value.get<std::string>();
    }
  }

  auto vq = root.find("incnn_vq");
  if (vq != root.end() && !vq->is_null()) {
    if (!vq->is_array())
      return "config.json: incnn_vq must be a list of VQ sites";
    for (const json &entry : *vq) {
      if (!entry.is_object())
        return "config.json: each incnn_vq entry must be an object";
      ConfigReader er(entry);
      VQSite site;
      site.layer = er.getInt("layer", 0, true, 0);
      site.site = er.getString("site", "");
      site.groups = er.getInt("groups", 1, true);
      site.codes = er.getInt("codes", 0, true);
      if (!er.error.empty())
        return "incnn_vq: " + er.error;
      if (site.layer >= c.layers)
        return "config.json: incnn_vq layer " + std::to_string(site.layer) +
               " does not exist";
      if (site.site != "attn_out" && site.site != "block_out")
        return "config.json: incnn_vq site must be attn_out or block_out, got "
               "'" +
               site.site + "'";
      if (c.hidden % site.groups != 0)
        return "config.json: incnn_vq groups must divide hidden_size";
      if (c.findVQ(site.layer, site.site))
        return "config.json: duplicate incnn_vq site";
      c.vq.push_back(site);
    }
  }
  return "";
}

bool readFile(const std::string &path, std::string &out) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  out = buffer.str();
  return static_cast<bool>(in) || in.eof();
}

size_t dtypeSize(const std::string &dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64")
    return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32")
    return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16")
    return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL")
    return 1;
  return 0;
}

float halfToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float value;
  if (exponent == 0)
    value = std::ldexp(static_cast<float>(mant), -24);
  else if (exponent == 31)
    value = mant ? std::numeric_limits<float>::quiet_NaN()
                 : std::numeric_limits<float>::infinity();
  else
    value = std::ldexp(static_cast<float>(mant | 0x400), int(exponent) - 25);
  return sign ? -value : value;
}

} // namespace

std::string parseConfig(const std::string &jsonText, ModelConfig &config) {
  json root = json::parse(jsonText, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded())
    return "config.json: not valid JSON";
  try {
    return parseConfigJson(root, config);
  } catch (const std::exception &e) {
    return std::string("config.json: ") + e.what();
  }
}

int64_t TensorInfo::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string SafetensorsFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    return "cannot open " + path + ": " + std::strerror(errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return path + ": not a regular file";
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return path + ": truncated safetensors file (" + std::to_string(size) +
           " bytes)";
  }
  void *addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED)
    return "cannot map " + path;
  mapping = std::shared_ptr<void>(addr, [size](void *p) { munmap(p, size); });
  std::string error = parse(static_cast<const uint8_t *>(addr), size);
  return error.empty() ? "" : path + ": " + error;
}

std::string SafetensorsFile::parse(const uint8_t *bytes, size_t size) {
  table.clear();
  if (size < 8)
    return "truncated safetensors file";
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = (headerLen << 8) | bytes[i];
  if (headerLen > size - 8)
    return "safetensors header length " + std::to_string(headerLen) +
           " exceeds the file size";
  const uint8_t *dataStart = bytes + 8 + headerLen;
  size_t dataSize = size - 8 - headerLen;
  json header = json::parse(bytes + 8, bytes + 8 + headerLen, nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return "safetensors header is not a JSON object";
  try {
    for (auto &[name, entry] : header.items()) {
      if (name == "__metadata__")
        continue;
      if (!entry.is_object() || !entry.contains("dtype") ||
          !entry.contains("shape") || !entry.contains("data_offsets"))
        return "tensor '" + name + "': needs dtype, shape and data_offsets";
      const json &dtype = entry["dtype"], &shape = entry["shape"],
                 &offsets = entry["data_offsets"];
      if (!dtype.is_string() || !shape.is_array() || !offsets.is_array() ||
          offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
          !offsets[1].is_number_unsigned())
        return "tensor '" + name + "': malformed entry";
      TensorInfo info;
      info.dtype = dtype.get<std::string>();
      size_t elementSize = dtypeSize(info.dtype);
      if (!elementSize)
        return "tensor '" + name + "': unknown dtype '" + info.dtype + "'";
      uint64_t count = 1;
      for (const json &d : shape) {
        if (!d.is_number_unsigned())
          return "tensor '" + name + "': shape must be non-negative integers";
        uint64_t dim = d.get<uint64_t>();
        if (dim > (uint64_t(1) << 40) ||
            (dim && count > (uint64_t(1) << 40) / dim))
          return "tensor '" + name + "': shape is too large";
        count *= dim;
        info.shape.push_back(static_cast<int64_t>(dim));
      }
      uint64_t begin = offsets[0].get<uint64_t>(),
               end = offsets[1].get<uint64_t>();
      if (begin > end || end > dataSize)
        return "tensor '" + name + "': data_offsets [" + std::to_string(begin) +
               ", " + std::to_string(end) + "] outside the data section (" +
               std::to_string(dataSize) + " bytes)";
      if (end - begin != count * elementSize)
        return "tensor '" + name + "': " + std::to_string(end - begin) +
               " bytes of data for " + std::to_string(count) + " " +
               info.dtype + " elements";
      info.data = dataStart + begin;
      info.bytes = end - begin;
      table.emplace(name, std::move(info));
    }
  } catch (const std::exception &e) {
    table.clear();
    return std::string("malformed safetensors header: ") + e.what();
  }
  return "";
}

const TensorInfo *SafetensorsFile::find(const std::string &name) const {
  auto it = table.find(name);
  return it == table.end() ? nullptr : &it->second;
}

std::string SafetensorsFile::readFloat32(const std::string &name,
                                         std::vector<float> &out) const {
  const TensorInfo *info = find(name);
  if (!info)
    return "missing tensor '" + name + "'";
  size_t count = static_cast<size_t>(info->numElements());
  out.resize(count);
  if (info->dtype == "F32") {
    std::memcpy(out.data(), info->data, count * 4);
  } else if (info->dtype == "F16" || info->dtype == "BF16") {
    for (size_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, info->data + 2 * i, 2);
      if (info->dtype == "F16") {
        out[i] = halfToFloat(h);
      } else {
        uint32_t bits = uint32_t(h) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
    }
  } else {
    return "tensor '" + name + "' has dtype " + info->dtype +
           "; expected F32, F16 or BF16";
  }
  return "";
}

std::string SafetensorsFile::checkFinite() const {
  std::vector<float> values;
  for (const auto &[name, info] : table) {
    if (!readFloat32(name, values).empty())
      continue; // other dtypes are refused when read
    for (size_t i = 0; i < values.size(); ++i)
      if (!std::isfinite(values[i]))
        return "tensor '" + name + "' element " + std::to_string(i) + " is " +
               (std::isnan(values[i]) ? "NaN" : "infinite") +
               ": weights must be finite";
  }
  return "";
}

void SafetensorsFile::addTensor(const std::string &name,
                                std::vector<int64_t> shape,
                                std::vector<float> data) {
  std::vector<float> &store = owned[name];
  store = std::move(data);
  TensorInfo info;
  info.dtype = "F32";
  info.shape = std::move(shape);
  info.data = reinterpret_cast<const uint8_t *>(store.data());
  info.bytes = store.size() * sizeof(float);
  table[name] = std::move(info);
}

std::string loadCheckpoint(const std::string &directory, Checkpoint &out) {
  out.directory = directory;
  struct stat st;
  if (stat(directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return directory + ": not a checkpoint directory";
  std::string text;
  if (!readFile(directory + "/config.json", text))
    return directory + "/config.json: cannot read";
  if (std::string error = parseConfig(text, out.config); !error.empty())
    return directory + "/" + error;
  if (std::string error = out.weights.open(directory + "/model.safetensors");
      !error.empty())
    return error;
  if (std::string error = out.weights.checkFinite(); !error.empty())
    return directory + "/model.safetensors: " + error;
  out.tokenizer.clear();
  std::string tokenizerPath = directory + "/tokenizer.model";
  if (stat(tokenizerPath.c_str(), &st) == 0 &&
      !readFile(tokenizerPath, out.tokenizer))
    return tokenizerPath + ": cannot read";
  return "";
}

} // namespace incnn::checkpoint
