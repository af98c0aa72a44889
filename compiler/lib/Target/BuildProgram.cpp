//===- BuildProgram.cpp - vqt IR -> runtime program -----------------------===//
#include "incnn/Compiler/BuildProgram.h"

#include "../../checkpoint/Checkpoint.h"
#include "CertificateTable.h"
#include "incnn/Dialect/Delta/DeltaOps.h"
#include "incnn/Dialect/VQT/VQTOps.h"
#include "incnn/runtime/Program.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
namespace rt = incnn::runtime;
namespace vqt = incnn::vqt;
namespace delta = incnn::delta;

namespace {

class ProgramBuilder {
public:
  ProgramBuilder(const incnn::checkpoint::Checkpoint &checkpoint,
                 rt::Program &program)
      : ckpt(checkpoint), program(program) {}

  std::string build(ModuleOp module);

private:
  int32_t valueId(Value value) {
    auto it = valueIds.find(value);
    if (it != valueIds.end())
      return it->second;
    int32_t id = static_cast<int32_t>(program.values.size());
    rt::ValueInfo info;
    auto type = cast<RankedTensorType>(value.getType());
    info.perToken = type.isDynamicDim(0);
    info.width = type.getRank() == 1 && info.perToken
                     ? 1
                     : static_cast<int32_t>(type.getShape().back());
    info.name = "v" + std::to_string(id);
    // The importer names the parts users reason about (attention, VQ).
    if (Operation *def = value.getDefiningOp())
      if (auto loc = dyn_cast<NameLoc>(def->getLoc()))
        info.name = loc.getName().str() +
                    (cast<OpResult>(value).getResultNumber() ? " codes" : "");
    program.values.push_back(info);
    valueIds[value] = id;
    return id;
  }

  /// The weight id of a `vqt.param` value, binding its data on first use.
  int32_t weightId(Value value) {
    auto param = value.getDefiningOp<vqt::ParamOp>();
    if (!param) {
      fail("weights must come from vqt.param ops");
      return 0;
    }
    std::string name = param.getName().str();
    std::optional<int64_t> firstRow = param.getRows();
    auto shape = cast<RankedTensorType>(param.getType()).getShape();
    // A slice is a weight of its own, named after the rows it holds.
    std::string key = firstRow ? name + "[" + std::to_string(*firstRow) + ":" +
                                     std::to_string(*firstRow + shape[0]) + "]"
                               : name;
    auto it = weightIds.find(key);
    if (it != weightIds.end())
      return it->second;
    rt::Weight weight;
    weight.name = key;
    weight.shape.assign(shape.begin(), shape.end());
    const auto *info = ckpt.weights.find(name);
    std::vector<int64_t> whole = weight.shape;
    if (firstRow && info && !info->shape.empty())
      whole[0] = info->shape[0];
    if (!info || info->shape != whole ||
        (firstRow && *firstRow + shape[0] > whole[0])) {
      fail("weight '" + key + "' is missing or misshapen in the checkpoint");
      return 0;
    }
    if (!firstRow && info->dtype == "F32" &&
        reinterpret_cast<uintptr_t>(info->data) % alignof(float) == 0) {
      weight.data = reinterpret_cast<const float *>(info->data);
    } else if (std::string e = ckpt.weights.readFloat32(name, weight.owned);
               !e.empty()) {
      fail(e);
      return 0;
    } else {
      if (firstRow) {
        int64_t rowSize = weight.numElements() / shape[0];
        auto begin = weight.owned.begin() + *firstRow * rowSize;
        weight.owned.assign(begin, begin + weight.numElements());
      }
      weight.data = weight.owned.data();
    }
    int32_t id = static_cast<int32_t>(program.weights.size());
    program.weights.push_back(std::move(weight));
    // `owned` moved with the vector; re-point at the stored copy.
    rt::Weight &stored = program.weights.back();
    if (!stored.owned.empty())
      stored.data = stored.owned.data();
    weightIds[name] = id;
    return id;
  }

  void emit(rt::OpCode code, std::vector<Value> operands,
            std::vector<Value> weights, std::vector<Value> results,
            rt::InstrAttrs attrs = {}) {
    rt::Instr instr;
    instr.op = code;
    for (Value v : operands)
      instr.operands.push_back(valueId(v));
    for (Value v : weights)
      instr.weights.push_back(weightId(v));
    for (Value v : results)
      instr.results.push_back(valueId(v));
    instr.attrs = attrs;
    program.instrs.push_back(std::move(instr));
  }

  void lower(Operation *op);
  /// Appends the step of a delta op (the change-propagation program).
  void lowerStep(Operation *op);
  int32_t rowSet(Value rows) {
    auto [it, inserted] = rowSetIds.try_emplace(rows, program.numRowSets);
    if (inserted)
      ++program.numRowSets;
    return it->second;
  }
  int32_t instrOf(Value v) {
    auto it = instrIds.find(v.getDefiningOp());
    if (it == instrIds.end()) {
      fail("a delta step updates a value that no instruction defines");
      return -1;
    }
    return it->second;
  }

  void fail(std::string message) {
    if (error.empty())
      error = std::move(message);
  }

  const incnn::checkpoint::Checkpoint &ckpt;
  rt::Program &program;
  llvm::DenseMap<Value, int32_t> valueIds, rowSetIds;
  llvm::DenseMap<Operation *, int32_t> instrIds;
  std::map<std::string, int32_t> weightIds;
  std::string error;
  /// Attention instructions whose update step defers certified rows.
  std::vector<int32_t> deferred;
};

void ProgramBuilder::lowerStep(Operation *op) {
  using rt::StepKind;
  auto step = [&](StepKind kind, int32_t instr, std::vector<Value> inputs,
                  Value output) {
    rt::Step s;
    s.kind = kind;
    s.instr = instr;
    for (Value v : inputs)
      s.inputs.push_back(rowSet(v));
    s.output = rowSet(output);
    program.steps.push_back(std::move(s));
  };
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](delta::EditedRowsOp e) {
        step(StepKind::EditedRows, -1, {}, e.getRows());
      })
      .Case([&](delta::ShiftedRowsOp e) {
        step(StepKind::ShiftedRows, -1, {}, e.getRows());
      })
      .Case([&](delta::UnionOp u) {
        step(StepKind::Union, -1,
             std::vector<Value>(u.getInputs().begin(), u.getInputs().end()),
             u.getRows());
      })
      .Case([&](delta::RecomputeRowsOp r) {
        step(StepKind::RecomputeRows, instrOf(r.getValue()), {r.getDirty()},
             r.getRows());
      })
      .Case([&](delta::AttentionUpdateOp a) {
        step(StepKind::AttentionUpdate, instrOf(a.getValue()),
             {a.getQuery(), a.getKeys()}, a.getRows());
        if (a.getDefer())
          deferred.push_back(instrOf(a.getValue()));
      })
      .Case([&](delta::VQCutoffOp q) {
        step(StepKind::VQCutoff, instrOf(q.getValue()), {q.getDirty()},
             q.getRows());
      })
      .Case([&](delta::PoolUpdateOp q) {
        step(StepKind::PoolUpdate, instrOf(q.getValue()), {q.getDirty()},
             q.getRows());
      })
      .Case([&](delta::VectorUpdateOp q) {
        step(StepKind::VectorUpdate, instrOf(q.getValue()), {q.getDirty()},
             q.getRows());
      })
      .Case(
          [&](delta::OutputOp o) { program.outputRows = rowSet(o.getDirty()); })
      .Case([&](delta::CacheOp c) {
        auto it = valueIds.find(c.getValue());
        if (it == valueIds.end())
          fail("delta.cache of a value that no instruction defines");
        else {
          program.values[size_t(it->second)].keepAllRows = true;
          program.values[size_t(it->second)].tableRows = c.getFromTable();
        }
      })
      .Default([&](Operation *other) {
        fail("cannot lower op '" + other->getName().getStringRef().str() +
             "' to a program step");
      });
}

void ProgramBuilder::lower(Operation *op) {
  using rt::OpCode;
  size_t before = program.instrs.size();
  auto recordInstr = llvm::make_scope_exit([&] {
    if (program.instrs.size() > before)
      instrIds[op] = int32_t(before);
  });
  // Elementwise ops lower by the op table: operands and results as they are.
  if (std::optional<OpCode> code =
          rt::opCodeOfMnemonic(op->getName().stripDialect().str());
      code && rt::opFamily(*code) != rt::OpFamily::Special) {
    emit(*code, std::vector<Value>(op->operand_begin(), op->operand_end()), {},
         std::vector<Value>(op->result_begin(), op->result_end()));
    return;
  }
  llvm::TypeSwitch<Operation *>(op)
      .Case([&](vqt::ParamOp) {}) // bound lazily by the ops that use them
      .Case([&](vqt::EmbedOp e) {
        std::vector<Value> tables = {e.getTable()};
        if (e.getTypeTable())
          tables.push_back(e.getTypeTable());
        emit(OpCode::Embed, {e.getTokens()}, tables, {e.getResult()});
      })
      .Case([&](vqt::AddPositionsOp p) {
        rt::InstrAttrs attrs;
        attrs.positionOffset = static_cast<int32_t>(p.getOffset());
        emit(OpCode::AddLearnedPositions, {p.getInput()}, {p.getTable()},
             {p.getResult()}, attrs);
      })
      .Case([&](vqt::LayerNormOp n) {
        rt::InstrAttrs attrs;
        attrs.epsilon = n.getEpsilon().convertToFloat();
        std::vector<Value> weights = {n.getGamma()};
        if (n.getBeta())
          weights.push_back(n.getBeta());
        emit(OpCode::LayerNorm, {n.getInput()}, weights, {n.getResult()},
             attrs);
      })
      .Case([&](vqt::RmsNormOp n) {
        rt::InstrAttrs attrs;
        attrs.epsilon = n.getEpsilon().convertToFloat();
        emit(OpCode::RmsNorm, {n.getInput()}, {n.getGamma()}, {n.getResult()},
             attrs);
      })
      .Case([&](vqt::LinearOp l) {
        std::vector<Value> weights = {l.getWeight()};
        if (l.getBias())
          weights.push_back(l.getBias());
        emit(OpCode::Linear, {l.getInput()}, weights, {l.getResult()});
      })
      .Case([&](vqt::AttentionOp a) {
        rt::InstrAttrs attrs;
        attrs.numHeads = static_cast<int32_t>(a.getNumHeads());
        attrs.numKvHeads = static_cast<int32_t>(a.getNumKvHeads());
        attrs.causal = a.getMask() == vqt::MaskKind::causal;
        attrs.ropeTheta =
            a.getRopeTheta() ? a.getRopeTheta()->convertToFloat() : 0.0f;
        attrs.scale = a.getEffectiveScale();
        attrs.window = a.getWindow() ? int64_t(*a.getWindow()) : 0;
        emit(OpCode::Attention, {a.getQuery(), a.getKey(), a.getValue()}, {},
             {a.getResult()}, attrs);
      })
      .Case([&](vqt::VectorQuantizeOp q) {
        emit(OpCode::VectorQuantize, {q.getInput()}, {q.getCodebook()},
             {q.getResult(), q.getCodes()});
      })
      .Case([&](vqt::PoolOp p) {
        rt::InstrAttrs attrs;
        attrs.pool = p.getKind() == vqt::PoolKind::mean    ? rt::PoolKind::Mean
                     : p.getKind() == vqt::PoolKind::first ? rt::PoolKind::First
                                                           : rt::PoolKind::Last;
        emit(OpCode::Pool, {p.getInput()}, {}, {p.getResult()}, attrs);
      })
      .Case([&](func::ReturnOp r) {
        if (r.getNumOperands() != 1)
          fail("@forward must return exactly one value");
        else
          program.outputValue = valueId(r.getOperand(0));
      })
      .Default([&](Operation *other) {
        fail("cannot lower op '" + other->getName().getStringRef().str() +
             "' to a runtime program");
      });
}

int64_t intAttr(ModuleOp module, StringRef name, int64_t fallback) {
  if (auto attr = module->getAttrOfType<IntegerAttr>(name))
    return attr.getInt();
  return fallback;
}

std::string strAttr(ModuleOp module, StringRef name) {
  if (auto attr = module->getAttrOfType<StringAttr>(name))
    return attr.str();
  return "";
}

std::string ProgramBuilder::build(ModuleOp module) {
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward || forward.getBody().getBlocks().size() != 1 ||
      forward.getNumArguments() != 1 ||
      !vqt::isTokenIdsType(forward.getArgument(0).getType()))
    return "the module needs a single-block func.func @forward(tensor<?xi32>)";

  program.family = strAttr(module, "vqt.family");
  if (!rt::taskOfName(strAttr(module, "vqt.task"), program.task))
    return "unknown vqt.task '" + strAttr(module, "vqt.task") + "'";
  program.vocabSize =
      static_cast<int32_t>(intAttr(module, "vqt.vocab_size", 0));
  program.maxPositions =
      static_cast<int32_t>(intAttr(module, "vqt.max_positions", 0));
  program.positionScheme = strAttr(module, "vqt.position");
  program.bosTokenId =
      static_cast<int32_t>(intAttr(module, "vqt.bos_token_id", -1));
  program.eosTokenId =
      static_cast<int32_t>(intAttr(module, "vqt.eos_token_id", -1));
  program.padTokenId =
      static_cast<int32_t>(intAttr(module, "vqt.pad_token_id", -1));
  if (auto labels = module->getAttrOfType<ArrayAttr>("vqt.labels"))
    for (Attribute label : labels)
      if (auto name = dyn_cast<StringAttr>(label))
        program.labels.push_back(name.str());
  program.tokenizer = ckpt.tokenizer;

  program.tokenValue = valueId(forward.getArgument(0));
  // The graph's ops become instructions, the delta ops steps; only the
  // values delta.cache names keep every row.
  bool hasSteps = false;
  for (Operation &op : forward.getBody().front()) {
    if (isa<delta::DeltaDialect>(op.getDialect())) {
      hasSteps = true;
      continue;
    }
    lower(&op);
    if (!error.empty())
      return error;
  }
  if (!hasSteps)
    return "the module has no delta program: run the incremental pipeline "
           "(incnn-opt --incnn-incremental-pipeline) first";
  for (rt::ValueInfo &info : program.values)
    info.keepAllRows = !info.perToken;
  for (Operation &op : forward.getBody().front())
    if (isa<delta::DeltaDialect>(op.getDialect())) {
      lowerStep(&op);
      if (!error.empty())
        return error;
    }
  rt::Status status = rt::verifyProgram(program);
  if (!status.ok())
    return "the lowered program does not verify: " + status.error;
  // The certificate chains, with norm bounds the runtime proves again at
  // load (here too: a claim that fails is a compiler bug).
  incnn::addCertificateChains(program, deferred);
  status = rt::verifyProgram(program);
  if (!status.ok())
    return "the program's certificate table does not verify: " + status.error;
  return "";
}

} // namespace

std::string incnn::buildProgram(ModuleOp module,
                                const checkpoint::Checkpoint &checkpoint,
                                rt::Program &program) {
  return ProgramBuilder(checkpoint, program).build(module);
}
