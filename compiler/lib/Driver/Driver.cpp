//===- Driver.cpp - checkpoint -> program, the whole compilation ----------===//
#include "incnn/Compiler/Driver.h"

#include "../../checkpoint/Checkpoint.h"
#include "incnn/Compiler/BuildProgram.h"
#include "incnn/Compiler/Calibrate.h"
#include "incnn/Compiler/Import.h"
#include "incnn/Compiler/InitAll.h"
#include "incnn/Compiler/Pipelines.h"
#include "incnn/Dialect/Delta/DeltaOps.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Tokenizer.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace incnn {

namespace {

namespace delta = incnn::delta;

/// "warning: WHERE: message", where WHERE names the model part (the
/// importer's location names); notes follow as their own lines.
void formatDiagnostic(mlir::Diagnostic &diag,
                      const std::function<void(const std::string &)> &sink) {
  const char *severity = "error";
  switch (diag.getSeverity()) {
  case mlir::DiagnosticSeverity::Warning:
    severity = "warning";
    break;
  case mlir::DiagnosticSeverity::Note:
    severity = "note";
    break;
  case mlir::DiagnosticSeverity::Remark:
    severity = "remark";
    break;
  case mlir::DiagnosticSeverity::Error:
    break;
  }
  std::string where;
  if (auto name = mlir::dyn_cast<mlir::NameLoc>(diag.getLocation()))
    where = name.getName().str() + ": ";
  else if (!mlir::isa<mlir::UnknownLoc>(diag.getLocation()))
    llvm::raw_string_ostream(where) << diag.getLocation() << ": ";
  if (sink)
    sink(std::string(severity) + ": " + where + diag.str());
  for (mlir::Diagnostic &note : diag.getNotes())
    formatDiagnostic(note, sink);
}

/// Reads the calibration text (or token ids) into context-sized windows and
/// fits the requested VQ codebooks into `checkpoint`.
std::string calibrate(const CompileOptions &o, mlir::MLIRContext &context,
                      checkpoint::Checkpoint &checkpoint) {
  std::ifstream in(o.calibrationFile, std::ios::binary);
  if (!in)
    return "cannot read calibration file '" + o.calibrationFile + "'";
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  std::vector<int32_t> tokens;
  bool numeric = !text.empty() && text.find_first_not_of("0123456789 \t\r\n") ==
                                      std::string::npos;
  if (numeric) {
    std::stringstream ids(text);
    int64_t id;
    while (ids >> id) {
      if (id < 0 || id >= checkpoint.config.vocabSize)
        return "calibration token " + std::to_string(id) +
               " is outside the vocabulary";
      tokens.push_back(int32_t(id));
    }
  } else {
    if (checkpoint.tokenizer.empty())
      return "--vq-calibrate with text needs tokenizer.model in the checkpoint";
    std::unique_ptr<runtime::Tokenizer> tokenizer;
    if (auto st = runtime::Tokenizer::create(checkpoint.tokenizer, tokenizer);
        !st.ok())
      return st.error;
    if (auto st = tokenizer->encode(text, tokens); !st.ok())
      return st.error;
  }
  CalibrationOptions options;
  std::string sites = o.calibrationSites;
  if (sites.empty())
    for (int l = 0; l < checkpoint.config.layers; ++l)
      sites += (l ? "," : "") + std::to_string(l) + ":attn_out:1:64";
  if (std::string e = parseVQSites(sites, options.sites); !e.empty())
    return e;
  size_t window = size_t(checkpoint.config.maxPositions);
  for (size_t i = 0; i < tokens.size(); i += window)
    options.windows.emplace_back(
        tokens.begin() + int64_t(i),
        tokens.begin() + int64_t(std::min(tokens.size(), i + window)));
  if (o.progress)
    o.progress("calibrating " + std::to_string(options.sites.size()) +
               " VQ site(s) on " + std::to_string(tokens.size()) + " tokens");
  options.progress = o.progress ? o.progress : [](const std::string &) {};
  return calibrateVQ(context, checkpoint, options);
}

/// ", and 35.0 MiB of tables the runtime computes once" when there are any.
std::string computedTablesNote(const runtime::Program &program) {
  int64_t bytes = runtime::computedTableBytes(program);
  if (bytes == 0)
    return "";
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f", double(bytes) / double(1 << 20));
  return std::string(", and ") + mib +
         " MiB of tables the runtime computes once per program";
}

} // namespace

std::string compileModel(const CompileOptions &o, CompileResult &result) {
  result = CompileResult();
  if (o.cachePlan != "minimal" && o.cachePlan != "all")
    return "unknown cache plan '" + o.cachePlan + "' (minimal or all)";
  if (o.emit == CompileOptions::Emit::Program && o.outputPath.empty())
    return "no output path for the program file";
  auto progress = [&](const std::string &m) {
    if (o.progress)
      o.progress(m);
  };
  auto start = std::chrono::steady_clock::now();
  checkpoint::Checkpoint checkpoint;
  if (std::string error = checkpoint::loadCheckpoint(o.modelDir, checkpoint);
      !error.empty())
    return error;
  int64_t window = o.maxPositions;
  if (window == 0 && checkpoint.config.position == "none" &&
      checkpoint.config.maxPositions < kDefaultNoPEWindow)
    window = kDefaultNoPEWindow; // no position table caps the length
  if (window > 0) {
    if (checkpoint.config.position == "learned")
      return "--max-positions: this model has learned positions, a table of "
             "max_position_embeddings rows; its window cannot grow";
    if (window > (int64_t(1) << 20))
      return "--max-positions " + std::to_string(window) +
             " exceeds the runtime's limit of 1048576 tokens";
    progress("context window " + std::to_string(window) +
             " tokens (the checkpoint declares " +
             std::to_string(checkpoint.config.maxPositions) + ")");
    checkpoint.config.maxPositions = int(window);
  }

  mlir::DialectRegistry registry;
  registerAllDialects(registry);
  mlir::MLIRContext context(registry);
  context.printOpOnDiagnostic(false);
  mlir::ScopedDiagnosticHandler diagnostics(
      &context, [&](mlir::Diagnostic &diag) {
        formatDiagnostic(diag, o.diagnostic);
        return mlir::success();
      });
  if (!o.calibrationFile.empty())
    if (std::string e = calibrate(o, context, checkpoint); !e.empty())
      return e;
  std::string error;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  bool hasDelta = false;
  if (!o.irFile.empty()) {
    module = mlir::parseSourceFile<mlir::ModuleOp>(o.irFile, &context);
    if (!module)
      return o.irFile + ": cannot parse the module";
    module->walk([&](mlir::Operation *op) {
      hasDelta |= mlir::isa<delta::DeltaDialect>(op->getDialect());
    });
    progress("read " + o.irFile +
             (hasDelta ? " (with its delta program)" : " (vqt only)"));
  } else {
    module = importCheckpoint(context, checkpoint, error);
    if (!module)
      return o.modelDir + ": " + error;
    const auto &config = checkpoint.config;
    progress("imported " + config.family + " " + config.architecture + ": " +
             std::to_string(config.layers) +
             " layers, d=" + std::to_string(config.hidden) + ", " +
             std::to_string(config.vq.size()) + " VQ site(s), positions " +
             config.position);
  }

  mlir::PassManager pm(&context);
  if (hasDelta) {
    // Built as given.
  } else if (o.emit == CompileOptions::Emit::VQT) {
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  } else {
    IncrementalPipelineOptions pipeline;
    pipeline.vqCutoff = o.vqCutoff;
    pipeline.deferAttention = o.deferAttention;
    buildIncrementalPipeline(pm, pipeline);
  }
  if (mlir::failed(pm.run(*module)))
    return "the compilation pipeline failed";

  if (o.emit != CompileOptions::Emit::Program) {
    llvm::raw_string_ostream os(result.ir);
    module->print(os);
    return "";
  }
  runtime::Program program;
  if (std::string e = buildProgram(*module, checkpoint, program); !e.empty())
    return e;
  if (o.cachePlan == "all")
    for (runtime::ValueInfo &v : program.values) {
      v.keepAllRows = true; // every row stored, none read from a table
      v.tableRows = false;
    }
  result.cacheBytesPerToken = runtime::cacheBytesPerToken(program);
  progress("cache plan (" + o.cachePlan +
           "): " + std::to_string(result.cacheBytesPerToken) +
           " bytes per token" + computedTablesNote(program));
  for (const auto &weight : program.weights)
    result.numParameters += weight.numElements();
  result.numInstructions = int64_t(program.instrs.size());
  if (runtime::Status st = runtime::writeProgram(program, o.outputPath);
      !st.ok())
    return st.error;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  progress("wrote " + o.outputPath + ": " +
           std::to_string(program.instrs.size()) + " instructions, " +
           std::to_string(result.numParameters) + " parameters (" +
           std::to_string(result.numParameters * 4 / 1024) + " KiB) in " +
           std::to_string(seconds).substr(0, 5) + " s");
  return "";
}

} // namespace incnn
