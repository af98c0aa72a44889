//===- Import.cpp - checkpoint -> vqt IR ----------------------------------===//
//
// Builds the graph of docs/checkpoint-format.md in the vqt dialect: the
// decoders (opt, llama) and the encoders (bert, modernbert) as Hugging Face's
// eager modeling code computes them.
//
//===----------------------------------------------------------------------===//
#include "incnn/Compiler/Import.h"

#include "../../checkpoint/Checkpoint.h"
#include "incnn/Dialect/VQT/VQTOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

#include <sstream>

using namespace mlir;
using incnn::checkpoint::Checkpoint;
using incnn::checkpoint::ModelConfig;

namespace {

std::string shapeString(ArrayRef<int64_t> shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

class GraphBuilder {
public:
  GraphBuilder(MLIRContext &context, const Checkpoint &checkpoint)
      : ckpt(checkpoint), config(checkpoint.config), builder(&context),
        loc(UnknownLoc::get(&context)) {}

  OwningOpRef<ModuleOp> build(std::string &errorOut);

private:
  /// A weight reference; records an error if it is missing or misshapen.
  /// With `part` = (i, n): rows [i, i + 1) / n of the tensor's first
  /// dimension (a fused projection of n parts).
  Value param(const std::string &name, ArrayRef<int64_t> shape,
              std::pair<int64_t, int64_t> part = {0, 1}) {
    const incnn::checkpoint::TensorInfo *info = ckpt.weights.find(name);
    SmallVector<int64_t> whole(shape);
    whole[0] *= part.second;
    if (!info) {
      fail("model.safetensors: missing tensor '" + name + "' (expected shape " +
           shapeString(whole) + ")");
    } else if (ArrayRef<int64_t>(info->shape) != ArrayRef<int64_t>(whole)) {
      fail("model.safetensors: tensor '" + name + "' has shape " +
           shapeString(info->shape) + ", expected " + shapeString(whole));
    } else if (info->dtype != "F32" && info->dtype != "F16" &&
               info->dtype != "BF16") {
      fail("model.safetensors: tensor '" + name + "' has dtype " + info->dtype +
           "; expected F32, F16 or BF16");
    }
    auto type = RankedTensorType::get(shape, builder.getF32Type());
    IntegerAttr rows = part.second > 1
                           ? builder.getI64IntegerAttr(part.first * shape[0])
                           : IntegerAttr();
    return builder.create<incnn::vqt::ParamOp>(loc, type, name, rows);
  }

  bool has(const std::string &name) const {
    return ckpt.weights.find(name) != nullptr;
  }

  void fail(std::string message) {
    if (error.empty())
      error = std::move(message);
  }

  Type rows(int64_t width) {
    return incnn::vqt::getRowsType(builder.getContext(), width);
  }

  /// `prefix`.weight (and .bias); `part` as for param().
  Value linear(Value x, const std::string &prefix, int64_t in, int64_t out,
               bool bias, std::pair<int64_t, int64_t> part = {0, 1}) {
    Value w = param(prefix + ".weight", {out, in}, part);
    Value b = bias ? param(prefix + ".bias", {out}, part) : Value();
    Type type = isa<RankedTensorType>(x.getType()) &&
                        cast<RankedTensorType>(x.getType()).getRank() == 1
                    ? Type(RankedTensorType::get({out}, builder.getF32Type()))
                    : rows(out);
    return builder.create<incnn::vqt::LinearOp>(loc, type, x, w, b);
  }

  Value layerNorm(Value x, const std::string &prefix, bool bias) {
    int64_t d = config.hidden;
    Value gamma = param(prefix + ".weight", {d});
    Value beta = bias ? param(prefix + ".bias", {d}) : Value();
    return builder.create<incnn::vqt::LayerNormOp>(
        loc, x.getType(), x, gamma, beta,
        builder.getF32FloatAttr(config.normEps));
  }

  /// The decoders' norm: LayerNorm (opt) or RMSNorm (llama).
  Value norm(Value x, const std::string &prefix) {
    if (config.family == "opt")
      return layerNorm(x, prefix, true);
    Value gamma = param(prefix + ".weight", {int64_t(config.hidden)});
    return builder.create<incnn::vqt::RmsNormOp>(
        loc, x.getType(), x, gamma, builder.getF32FloatAttr(config.normEps));
  }

  /// An activation by its config name (validated by the checkpoint reader).
  Value activate(Value x, const std::string &name) {
    if (name == "relu")
      return builder.create<incnn::vqt::ReluOp>(loc, x);
    if (name == "gelu_new")
      return builder.create<incnn::vqt::GeluTanhOp>(loc, x);
    if (name == "silu")
      return builder.create<incnn::vqt::SiluOp>(loc, x);
    return builder.create<incnn::vqt::GeluOp>(loc, x);
  }

  Value maybeVQ(Value x, int layer, const std::string &site) {
    const incnn::checkpoint::VQSite *vq = config.findVQ(layer, site);
    if (!vq)
      return x;
    int64_t g = vq->groups, k = vq->codes, d = config.hidden;
    Value codebook = param(vq->codebookName(), {g, k, d / g});
    auto codesType =
        RankedTensorType::get({ShapedType::kDynamic, g}, builder.getI32Type());
    Location siteLoc = NameLoc::get(builder.getStringAttr(
        "layer " + std::to_string(layer) + " " + site + " VQ"));
    auto op = builder.create<incnn::vqt::VectorQuantizeOp>(
        siteLoc, x.getType(), codesType, x, codebook);
    return op.getResult();
  }

  /// Multi-head attention of projected rows, masked and rotated as layer
  /// `layer` of this model is.
  Value attend(Value q, Value k, Value v, int layer);
  Value attention(Value x, const std::string &prefix, int layer);
  Value mlp(Value x, const std::string &prefix);
  Value decoderLayers(Value x);
  Value bertLayers(Value x);
  Value modernBertLayers(Value x);
  /// The embeddings of `tokens`, by family.
  Value embeddings(Value tokens);
  /// The task's head: logits from the final hidden rows.
  Value head(Value x);

  const Checkpoint &ckpt;
  const ModelConfig &config;
  OpBuilder builder;
  Location loc;
  std::string error;
};

Value GraphBuilder::attend(Value q, Value k, Value v, int layer) {
  int window = config.windowOf(layer);
  float ropeTheta = window > 0 ? config.localRopeTheta : config.ropeTheta;
  FloatAttr theta = config.position == "rope"
                        ? builder.getF32FloatAttr(ropeTheta)
                        : FloatAttr();
  auto mask = config.causal ? incnn::vqt::MaskKind::causal
                            : incnn::vqt::MaskKind::bidirectional;
  Location attnLoc = NameLoc::get(
      builder.getStringAttr("layer " + std::to_string(layer) + " attention"));
  IntegerAttr windowAttr =
      window > 0 ? builder.getI64IntegerAttr(window) : IntegerAttr();
  return builder.create<incnn::vqt::AttentionOp>(
      attnLoc, q.getType(), q, k, v, mask, config.heads, config.kvHeads, theta,
      FloatAttr(), windowAttr);
}

Value GraphBuilder::attention(Value x, const std::string &prefix, int layer) {
  bool opt = config.family == "opt";
  int64_t d = config.hidden, hd = config.headDim();
  int64_t kvWidth = int64_t(config.kvHeads) * hd;
  std::string attn = prefix + ".self_attn.";
  Value q = linear(x, attn + "q_proj", d, d, config.enableBias);
  Value k = linear(x, attn + "k_proj", d, kvWidth, config.enableBias);
  Value v = linear(x, attn + "v_proj", d, kvWidth, config.enableBias);
  Value o = attend(q, k, v, layer);
  Value out =
      linear(o, attn + (opt ? "out_proj" : "o_proj"), d, d, config.enableBias);
  return maybeVQ(out, layer, "attn_out");
}

Value GraphBuilder::mlp(Value x, const std::string &prefix) {
  int64_t d = config.hidden, f = config.ffn;
  if (config.family == "opt") {
    bool gated = config.activation == "geglu" || config.activation == "swiglu";
    Value h =
        linear(x, prefix + ".fc1", d, gated ? 2 * f : f, config.enableBias);
    if (config.activation == "geglu")
      h = builder.create<incnn::vqt::GeGluOp>(loc, rows(f), h);
    else if (config.activation == "swiglu")
      h = builder.create<incnn::vqt::SwiGluOp>(loc, rows(f), h);
    else
      h = activate(h, config.activation);
    return linear(h, prefix + ".fc2", f, d, config.enableBias);
  }
  Value gate = linear(x, prefix + ".mlp.gate_proj", d, f, false);
  Value up = linear(x, prefix + ".mlp.up_proj", d, f, false);
  Value act = builder.create<incnn::vqt::SiluOp>(loc, gate);
  Value h = builder.create<incnn::vqt::MulOp>(loc, act, up);
  return linear(h, prefix + ".mlp.down_proj", f, d, false);
}

Value GraphBuilder::decoderLayers(Value x) {
  bool opt = config.family == "opt";
  std::string base = opt ? "model.decoder." : "model.";
  for (int layer = 0; layer < config.layers && error.empty(); ++layer) {
    std::string prefix = base + "layers." + std::to_string(layer);
    Value a =
        norm(x, prefix + (opt ? ".self_attn_layer_norm" : ".input_layernorm"));
    Value h =
        builder.create<incnn::vqt::AddOp>(loc, x, attention(a, prefix, layer));
    Value m = norm(
        h, prefix + (opt ? ".final_layer_norm" : ".post_attention_layernorm"));
    x = builder.create<incnn::vqt::AddOp>(loc, h, mlp(m, prefix));
    x = maybeVQ(x, layer, "block_out");
  }
  return norm(x, opt ? "model.decoder.final_layer_norm" : "model.norm");
}

// BertLayer: post-LayerNorm, LN(dense(attention) + x), then
// LN(dense(act(intermediate(h))) + h).
Value GraphBuilder::bertLayers(Value x) {
  int64_t d = config.hidden, f = config.ffn;
  for (int layer = 0; layer < config.layers && error.empty(); ++layer) {
    std::string prefix = "bert.encoder.layer." + std::to_string(layer) + ".";
    std::string self = prefix + "attention.self.";
    Value q = linear(x, self + "query", d, d, true);
    Value k = linear(x, self + "key", d, d, true);
    Value v = linear(x, self + "value", d, d, true);
    Value a = linear(attend(q, k, v, layer), prefix + "attention.output.dense",
                     d, d, true);
    a = maybeVQ(a, layer, "attn_out");
    Value h = layerNorm(builder.create<incnn::vqt::AddOp>(loc, a, x),
                        prefix + "attention.output.LayerNorm", true);
    Value m = activate(linear(h, prefix + "intermediate.dense", d, f, true),
                       config.activation);
    m = linear(m, prefix + "output.dense", f, d, true);
    x = layerNorm(builder.create<incnn::vqt::AddOp>(loc, m, h),
                  prefix + "output.LayerNorm", true);
    x = maybeVQ(x, layer, "block_out");
  }
  return x;
}

// ModernBertEncoderLayer: x + attn(attn_norm(x)) (layer 0's norm is the
// identity), then + mlp(mlp_norm(x)); Wqkv's rows are [q; k; v] and the MLP
// is act(input) * gate with [input | gate] = Wi(x).
Value GraphBuilder::modernBertLayers(Value x) {
  int64_t d = config.hidden, f = config.ffn;
  if (config.activation != "gelu" && config.activation != "silu")
    fail("config.json: modernbert's gated MLP needs hidden_activation gelu "
         "(GeGLU) or silu (SwiGLU), got '" +
         config.activation + "'");
  for (int layer = 0; layer < config.layers && error.empty(); ++layer) {
    std::string prefix = "model.layers." + std::to_string(layer) + ".";
    Value a =
        layer == 0 ? x : layerNorm(x, prefix + "attn_norm", config.normBias);
    std::string qkv = prefix + "attn.Wqkv";
    Value q = linear(a, qkv, d, d, config.enableBias, {0, 3});
    Value k = linear(a, qkv, d, d, config.enableBias, {1, 3});
    Value v = linear(a, qkv, d, d, config.enableBias, {2, 3});
    Value o = linear(attend(q, k, v, layer), prefix + "attn.Wo", d, d,
                     config.enableBias);
    Value h = builder.create<incnn::vqt::AddOp>(loc, x,
                                                maybeVQ(o, layer, "attn_out"));
    Value m = linear(layerNorm(h, prefix + "mlp_norm", config.normBias),
                     prefix + "mlp.Wi", d, 2 * f, config.mlpBias);
    m = config.activation == "silu"
            ? Value(builder.create<incnn::vqt::SwiGluOp>(loc, rows(f), m))
            : Value(builder.create<incnn::vqt::GeGluOp>(loc, rows(f), m));
    m = linear(m, prefix + "mlp.Wo", f, d, config.mlpBias);
    x = maybeVQ(builder.create<incnn::vqt::AddOp>(loc, h, m), layer,
                "block_out");
  }
  return layerNorm(x, "model.final_norm", config.normBias);
}

Value GraphBuilder::embeddings(Value tokens) {
  int64_t d = config.hidden, vocab = config.vocabSize;
  if (config.family == "bert") {
    // (word + token type 0) + position, then LayerNorm.
    Value x = builder.create<incnn::vqt::EmbedOp>(
        loc, rows(d), tokens,
        param("bert.embeddings.word_embeddings.weight", {vocab, d}),
        param("bert.embeddings.token_type_embeddings.weight",
              {int64_t(config.typeVocab), d}));
    x = builder.create<incnn::vqt::AddPositionsOp>(
        loc, x,
        param("bert.embeddings.position_embeddings.weight",
              {int64_t(config.maxPositions), d}),
        builder.getI64IntegerAttr(0));
    return layerNorm(x, "bert.embeddings.LayerNorm", true);
  }
  if (config.family == "modernbert") {
    Value x = builder.create<incnn::vqt::EmbedOp>(
        loc, rows(d), tokens,
        param("model.embeddings.tok_embeddings.weight", {vocab, d}), Value());
    return layerNorm(x, "model.embeddings.norm", config.normBias);
  }
  bool opt = config.family == "opt";
  std::string base = opt ? "model.decoder." : "model.";
  Value x = builder.create<incnn::vqt::EmbedOp>(
      loc, rows(d), tokens, param(base + "embed_tokens.weight", {vocab, d}),
      Value());
  if (config.position == "learned") {
    Value table = param(base + "embed_positions.weight",
                        {int64_t(config.maxPositions) + 2, d});
    x = builder.create<incnn::vqt::AddPositionsOp>(
        loc, x, table, builder.getI64IntegerAttr(2));
  }
  return x;
}

Value GraphBuilder::head(Value x) {
  int64_t d = config.hidden, vocab = config.vocabSize;
  int64_t labels = int64_t(config.labels.size());
  if (!config.tokenClassifier) {
    auto kind = config.pool == "mean"    ? incnn::vqt::PoolKind::mean
                : config.pool == "first" ? incnn::vqt::PoolKind::first
                                         : incnn::vqt::PoolKind::last;
    if (!config.classifier)
      kind = incnn::vqt::PoolKind::last;
    auto vecType = RankedTensorType::get({d}, builder.getF32Type());
    x = builder.create<incnn::vqt::PoolOp>(loc, vecType, kind, x);
  }
  if (config.family == "bert") {
    if (!config.tokenClassifier) // the pooler
      x = builder.create<incnn::vqt::TanhOp>(
          loc, linear(x, "bert.pooler.dense", d, d, true));
    return linear(x, "classifier", d, labels, true);
  }
  if (config.family == "modernbert") { // ModernBertPredictionHead
    x = activate(linear(x, "head.dense", d, d, config.headBias),
                 config.headActivation);
    x = layerNorm(x, "head.norm", config.normBias);
    return linear(x, "classifier", d, labels, true);
  }
  if (config.classifier) // LlamaForTokenClassification's score has a bias
    return linear(x, "score", d, labels, config.tokenClassifier);
  bool opt = config.family == "opt";
  Value table = param((opt ? "model.decoder." : "model.") +
                          std::string("embed_tokens.weight"),
                      {vocab, d});
  if (has("lm_head.weight") && !(config.tieEmbeddings && !opt))
    table = param("lm_head.weight", {vocab, d});
  auto outType = RankedTensorType::get({vocab}, builder.getF32Type());
  return builder.create<incnn::vqt::LinearOp>(loc, outType, x, table, Value());
}

OwningOpRef<ModuleOp> GraphBuilder::build(std::string &errorOut) {
  MLIRContext *ctx = builder.getContext();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  auto attr = [&](StringRef name, Attribute value) {
    (*module)->setAttr(("vqt." + name).str(), value);
  };
  attr("family", builder.getStringAttr(config.family));
  attr("task", builder.getStringAttr(config.tokenClassifier ? "token_classifier"
                                     : config.classifier    ? "classifier"
                                                            : "causal_lm"));
  attr("vocab_size", builder.getI64IntegerAttr(config.vocabSize));
  attr("max_positions", builder.getI64IntegerAttr(config.maxPositions));
  attr("position", builder.getStringAttr(config.position));
  attr("bos_token_id", builder.getI64IntegerAttr(config.bosTokenId));
  attr("eos_token_id", builder.getI64IntegerAttr(config.eosTokenId));
  attr("pad_token_id", builder.getI64IntegerAttr(config.padTokenId));
  if (config.classifier) {
    SmallVector<Attribute> labels;
    for (const std::string &label : config.labels)
      labels.push_back(builder.getStringAttr(label));
    attr("labels", builder.getArrayAttr(labels));
  }

  int64_t outWidth =
      config.classifier ? int64_t(config.labels.size()) : config.vocabSize;
  Type outType = config.tokenClassifier
                     ? Type(rows(outWidth))
                     : RankedTensorType::get({outWidth}, builder.getF32Type());
  auto funcType =
      builder.getFunctionType({incnn::vqt::getTokenIdsType(ctx)}, {outType});
  builder.setInsertionPointToEnd(module->getBody());
  auto func = builder.create<func::FuncOp>(loc, "forward", funcType);
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToStart(entry);

  Value x = embeddings(entry->getArgument(0));
  if (config.family == "bert")
    x = bertLayers(x);
  else if (config.family == "modernbert")
    x = modernBertLayers(x);
  else
    x = decoderLayers(x);
  Value logits = error.empty() ? head(x) : Value();
  if (!error.empty()) {
    errorOut = error;
    return nullptr;
  }
  builder.create<func::ReturnOp>(loc, logits);
  if (failed(module->verify())) {
    errorOut = "internal error: the imported module does not verify";
    return nullptr;
  }
  return module;
}

} // namespace

OwningOpRef<ModuleOp> incnn::importCheckpoint(MLIRContext &context,
                                              const Checkpoint &checkpoint,
                                              std::string &error) {
  context.loadDialect<vqt::VQTDialect, func::FuncDialect>();
  return GraphBuilder(context, checkpoint).build(error);
}
