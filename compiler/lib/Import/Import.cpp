//===- Import.cpp - checkpoint -> vqt IR ----------------------------------===//
//
// Builds the decoder graph of docs/checkpoint-format.md in the vqt dialect.
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
  Value param(const std::string &name, ArrayRef<int64_t> shape) {
    const incnn::checkpoint::TensorInfo *info = ckpt.weights.find(name);
    if (!info) {
      fail("model.safetensors: missing tensor '" + name + "' (expected shape " +
           shapeString(shape) + ")");
    } else if (ArrayRef<int64_t>(info->shape) != shape) {
      fail("model.safetensors: tensor '" + name + "' has shape " +
           shapeString(info->shape) + ", expected " + shapeString(shape));
    } else if (info->dtype != "F32" && info->dtype != "F16" &&
               info->dtype != "BF16") {
      fail("model.safetensors: tensor '" + name + "' has dtype " + info->dtype +
           "; expected F32, F16 or BF16");
    }
    auto type = RankedTensorType::get(shape, builder.getF32Type());
    return builder.create<incnn::vqt::ParamOp>(loc, type, name);
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

  Value linear(Value x, const std::string &prefix, int64_t in, int64_t out,
               bool bias) {
    Value w = param(prefix + ".weight", {out, in});
    Value b = bias ? param(prefix + ".bias", {out}) : Value();
    return builder.create<incnn::vqt::LinearOp>(loc, rows(out), x, w, b);
  }

  Value norm(Value x, const std::string &prefix) {
    int64_t d = config.hidden;
    Value gamma = param(prefix + ".weight", {d});
    FloatAttr eps = builder.getF32FloatAttr(config.normEps);
    if (config.family == "opt") {
      Value beta = param(prefix + ".bias", {d});
      return builder.create<incnn::vqt::LayerNormOp>(loc, x.getType(), x, gamma,
                                                     beta, eps);
    }
    return builder.create<incnn::vqt::RmsNormOp>(loc, x.getType(), x, gamma,
                                                 eps);
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

  Value attention(Value x, const std::string &prefix, int layer);
  Value mlp(Value x, const std::string &prefix);

  const Checkpoint &ckpt;
  const ModelConfig &config;
  OpBuilder builder;
  Location loc;
  std::string error;
};

Value GraphBuilder::attention(Value x, const std::string &prefix, int layer) {
  bool opt = config.family == "opt";
  int64_t d = config.hidden, hd = config.headDim();
  int64_t kvWidth = int64_t(config.kvHeads) * hd;
  std::string attn = prefix + ".self_attn.";
  Value q = linear(x, attn + "q_proj", d, d, config.enableBias);
  Value k = linear(x, attn + "k_proj", d, kvWidth, config.enableBias);
  Value v = linear(x, attn + "v_proj", d, kvWidth, config.enableBias);
  FloatAttr theta = config.position == "rope"
                        ? builder.getF32FloatAttr(config.ropeTheta)
                        : FloatAttr();
  auto mask = config.causal ? incnn::vqt::MaskKind::causal
                            : incnn::vqt::MaskKind::bidirectional;
  Location attnLoc = NameLoc::get(
      builder.getStringAttr("layer " + std::to_string(layer) + " attention"));
  int window = config.windowOf(layer);
  IntegerAttr windowAttr =
      window > 0 ? builder.getI64IntegerAttr(window) : IntegerAttr();
  Value o = builder.create<incnn::vqt::AttentionOp>(
      attnLoc, q.getType(), q, k, v, mask, config.heads, config.kvHeads, theta,
      FloatAttr(), windowAttr);
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
    if (config.activation == "relu")
      h = builder.create<incnn::vqt::ReluOp>(loc, h);
    else if (config.activation == "gelu_new")
      h = builder.create<incnn::vqt::GeluTanhOp>(loc, h);
    else if (config.activation == "geglu")
      h = builder.create<incnn::vqt::GeGluOp>(loc, rows(f), h);
    else if (config.activation == "swiglu")
      h = builder.create<incnn::vqt::SwiGluOp>(loc, rows(f), h);
    else
      h = builder.create<incnn::vqt::GeluOp>(loc, h);
    return linear(h, prefix + ".fc2", f, d, config.enableBias);
  }
  Value gate = linear(x, prefix + ".mlp.gate_proj", d, f, false);
  Value up = linear(x, prefix + ".mlp.up_proj", d, f, false);
  Value act = builder.create<incnn::vqt::SiluOp>(loc, gate);
  Value h = builder.create<incnn::vqt::MulOp>(loc, act, up);
  return linear(h, prefix + ".mlp.down_proj", f, d, false);
}

OwningOpRef<ModuleOp> GraphBuilder::build(std::string &errorOut) {
  MLIRContext *ctx = builder.getContext();
  bool opt = config.family == "opt";
  int64_t d = config.hidden, vocab = config.vocabSize;
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  auto attr = [&](StringRef name, Attribute value) {
    (*module)->setAttr(("vqt." + name).str(), value);
  };
  attr("family", builder.getStringAttr(config.family));
  attr("task",
       builder.getStringAttr(config.classifier ? "classifier" : "causal_lm"));
  attr("vocab_size", builder.getI64IntegerAttr(vocab));
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

  int64_t outWidth = config.classifier ? int64_t(config.labels.size()) : vocab;
  auto outType = RankedTensorType::get({outWidth}, builder.getF32Type());
  auto funcType =
      builder.getFunctionType({incnn::vqt::getTokenIdsType(ctx)}, {outType});
  builder.setInsertionPointToEnd(module->getBody());
  auto func = builder.create<func::FuncOp>(loc, "forward", funcType);
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToStart(entry);

  std::string base = opt ? "model.decoder." : "model.";
  Value embedTable = param(base + "embed_tokens.weight", {vocab, d});
  Value x = builder.create<incnn::vqt::EmbedOp>(
      loc, rows(d), entry->getArgument(0), embedTable);
  if (config.position == "learned") {
    Value table = param(base + "embed_positions.weight",
                        {int64_t(config.maxPositions) + 2, d});
    x = builder.create<incnn::vqt::AddPositionsOp>(
        loc, x, table, builder.getI64IntegerAttr(2));
  }

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
  x = norm(x, opt ? "model.decoder.final_layer_norm" : "model.norm");

  auto poolKind = config.classifier && config.pool == "mean"
                      ? incnn::vqt::PoolKind::mean
                      : incnn::vqt::PoolKind::last;
  auto vecType = RankedTensorType::get({d}, builder.getF32Type());
  Value pooled = builder.create<incnn::vqt::PoolOp>(loc, vecType, poolKind, x);
  Value headWeight;
  if (config.classifier)
    headWeight = param("score.weight", {outWidth, d});
  else if (has("lm_head.weight") && !(config.tieEmbeddings && !opt))
    headWeight = param("lm_head.weight", {outWidth, d});
  else
    headWeight = embedTable;
  Value logits = builder.create<incnn::vqt::LinearOp>(loc, outType, pooled,
                                                      headWeight, Value());
  builder.create<func::ReturnOp>(loc, logits);

  if (!error.empty()) {
    errorOut = error;
    return nullptr;
  }
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
