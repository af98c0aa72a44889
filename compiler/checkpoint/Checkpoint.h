//===- Checkpoint.h - reading Hugging Face style checkpoints -----*- C++
//-*-===//
//
// Reads `config.json` + `model.safetensors` (+ `tokenizer.model`) without any
// MLIR dependency, validating everything: the importer builds vqt IR from the
// result. Built with exceptions (nlohmann::json); nothing here throws.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_COMPILER_CHECKPOINT_CHECKPOINT_H
#define INCNN_COMPILER_CHECKPOINT_CHECKPOINT_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace incnn::checkpoint {

/// One VQ site (see docs/checkpoint-format.md).
struct VQSite {
  int layer = 0;
  std::string site; ///< "attn_out" or "block_out"
  int groups = 1;
  int codes = 0;
  /// Name of the codebook tensor, `incnn.vq.<layer>.<site>.codebook`.
  std::string codebookName() const;
};

/// A validated `config.json`.
struct ModelConfig {
  std::string family;           ///< "opt", "llama", "bert" or "modernbert"
  std::string architecture;     ///< e.g. "OPTForCausalLM"
  bool classifier = false;      ///< labels: a sequence or token classifier
  bool tokenClassifier = false; ///< one row of label logits per token
  int vocabSize = 0, hidden = 0, layers = 0, heads = 0, kvHeads = 0;
  int ffn = 0, maxPositions = 0;
  std::string activation; ///< "relu", "gelu" (erf), "gelu_new", "silu", ...
  bool enableBias = true; ///< linear biases (ModernBERT: of the attention)
  /// ModernBERT: biases of the MLP, of the prediction head's dense layer and
  /// of its norms (the classifier always has one).
  bool mlpBias = true, headBias = true, normBias = true;
  std::string headActivation = "gelu"; ///< ModernBERT's prediction head
  int typeVocab = 0;                   ///< BERT: token types (type 0 used)
  float normEps = 1e-5f;
  float ropeTheta = 10000.0f;      ///< of global layers
  float localRopeTheta = 10000.0f; ///< of sliding-window layers
  bool tieEmbeddings = true;
  std::string position; ///< "learned", "rope" or "none"
  bool causal = true;
  /// > 0: sliding-window attention (`sliding_window`), except in the global
  /// layers: every `global_attn_every_n_layers`-th, from layer 0.
  int slidingWindow = 0, globalEvery = 0;
  /// Sequence classifiers: "last", "first" ([CLS]) or "mean".
  std::string pool = "last";
  std::vector<std::string> labels;
  int bosTokenId = -1, eosTokenId = -1, padTokenId = -1;
  std::vector<VQSite> vq;

  int headDim() const { return hidden / heads; }
  /// Layer `layer`'s attention window, 0 for global attention.
  int windowOf(int layer) const {
    bool global = globalEvery > 0 && layer % globalEvery == 0;
    return global ? 0 : slidingWindow;
  }
  /// The VQ site at (layer, site), or nullptr.
  const VQSite *findVQ(int layer, const std::string &site) const;
};

/// Parses and validates config.json text. Returns an error message, or "".
std::string parseConfig(const std::string &jsonText, ModelConfig &config);

/// A tensor inside a safetensors file (points into the mapping).
struct TensorInfo {
  std::string dtype; ///< "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  size_t bytes = 0;
  int64_t numElements() const;
};

/// A memory-mapped safetensors file.
class SafetensorsFile {
public:
  /// Maps and parses `path`. Returns an error message, or "".
  std::string open(const std::string &path);
  /// Parses bytes already in memory (not copied; must outlive this object).
  std::string parse(const uint8_t *bytes, size_t size);

  const TensorInfo *find(const std::string &name) const;
  const std::map<std::string, TensorInfo> &tensors() const { return table; }
  /// Copies a float tensor (F32/F16/BF16) into f32. Returns an error or "".
  std::string readFloat32(const std::string &name,
                          std::vector<float> &out) const;
  /// An error naming the first NaN or infinite element of any tensor.
  std::string checkFinite() const;
  /// Adds (or replaces) an F32 tensor held in memory, e.g. a codebook fitted
  /// by calibration.
  void addTensor(const std::string &name, std::vector<int64_t> shape,
                 std::vector<float> data);

private:
  std::shared_ptr<void> mapping;
  std::map<std::string, TensorInfo> table;
  std::map<std::string, std::vector<float>> owned;
};

/// A whole checkpoint directory.
struct Checkpoint {
  std::string directory;
  ModelConfig config;
  SafetensorsFile weights;
  std::string tokenizer; ///< bytes of tokenizer.model, or empty
};

/// Loads a checkpoint directory. Returns an error message, or "".
std::string loadCheckpoint(const std::string &directory, Checkpoint &out);

} // namespace incnn::checkpoint

#endif // INCNN_COMPILER_CHECKPOINT_CHECKPOINT_H
