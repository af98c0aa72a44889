//===- incnn-compile.cpp - checkpoint -> incnn program --------------------===//
//
//   incnn-compile MODEL_DIR -o MODEL.incnn
//   incnn-compile MODEL_DIR --emit=vqt        (prints the imported IR)
//
//===----------------------------------------------------------------------===//
#include "../../compiler/checkpoint/Checkpoint.h"
#include "incnn/Compiler/BuildProgram.h"
#include "incnn/Compiler/Calibrate.h"
#include "incnn/Compiler/Import.h"
#include "incnn/Compiler/InitAll.h"
#include "incnn/Compiler/Pipelines.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Tokenizer.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <fstream>
#include <sstream>

namespace cl = llvm::cl;

namespace {
enum class EmitKind { Program, VQT, Delta };

cl::opt<std::string> modelDir(cl::Positional, cl::desc("<model directory>"),
                              cl::Required);
cl::opt<std::string> outputPath("o", cl::desc("Output program file"),
                                cl::value_desc("file"));
cl::opt<EmitKind> emitKind(
    "emit", cl::desc("What to produce"), cl::init(EmitKind::Program),
    cl::values(clEnumValN(EmitKind::Program, "program",
                          "the runtime program file (default)"),
               clEnumValN(EmitKind::VQT, "vqt", "the imported vqt IR"),
               clEnumValN(EmitKind::Delta, "delta",
                          "the vqt IR with its delta change-propagation "
                          "program and cache plan")));
cl::opt<bool> quiet("q", cl::desc("No progress output"), cl::init(false));
cl::opt<std::string> calibrationFile(
    "vq-calibrate",
    cl::desc("Fit VQ codebooks of a dense checkpoint by k-means on its own "
             "activations over this text file (or whitespace-separated token "
             "ids)"),
    cl::value_desc("file"));
cl::opt<std::string> calibrationSites(
    "vq-sites",
    cl::desc("VQ sites to calibrate, LAYER:SITE:GROUPS:CODES,... (default: "
             "attn_out of every layer, 1 group x 64 codes)"),
    cl::value_desc("sites"));

int fail(const std::string &message) {
  llvm::errs() << "incnn-compile: error: " << message << "\n";
  return 1;
}

void progress(const std::string &message) {
  if (!quiet)
    llvm::errs() << "incnn-compile: " << message << "\n";
}

/// Prints compiler diagnostics as "incnn-compile: warning: WHERE: message",
/// where WHERE names the model part (the importer's location names).
void printDiagnostic(mlir::Diagnostic &diag) {
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
  llvm::errs() << "incnn-compile: " << severity << ": " << where << diag.str()
               << "\n";
  for (mlir::Diagnostic &note : diag.getNotes())
    printDiagnostic(note);
}

/// Reads the calibration text (or token ids) into context-sized windows and
/// fits the requested VQ codebooks into `checkpoint`.
std::string calibrate(mlir::MLIRContext &context,
                      incnn::checkpoint::Checkpoint &checkpoint) {
  std::ifstream in(calibrationFile, std::ios::binary);
  if (!in)
    return "cannot read calibration file '" + calibrationFile + "'";
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
    std::unique_ptr<incnn::runtime::Tokenizer> tokenizer;
    if (auto st =
            incnn::runtime::Tokenizer::create(checkpoint.tokenizer, tokenizer);
        !st.ok())
      return st.error;
    if (auto st = tokenizer->encode(text, tokens); !st.ok())
      return st.error;
  }
  incnn::CalibrationOptions options;
  std::string sites = calibrationSites;
  if (sites.empty())
    for (int l = 0; l < checkpoint.config.layers; ++l)
      sites += (l ? "," : "") + std::to_string(l) + ":attn_out:1:64";
  if (std::string e = incnn::parseVQSites(sites, options.sites); !e.empty())
    return e;
  size_t window = size_t(checkpoint.config.maxPositions);
  for (size_t i = 0; i < tokens.size(); i += window)
    options.windows.emplace_back(
        tokens.begin() + int64_t(i),
        tokens.begin() + int64_t(std::min(tokens.size(), i + window)));
  progress("calibrating " + std::to_string(options.sites.size()) +
           " VQ site(s) on " + std::to_string(tokens.size()) + " tokens");
  options.progress = progress;
  return incnn::calibrateVQ(context, checkpoint, options);
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv,
                              "incnn-compile: compile a checkpoint directory "
                              "into an incnn program\n");
  if (emitKind == EmitKind::Program && outputPath.empty())
    return fail("missing -o MODEL.incnn (or use --emit=vqt)");

  auto start = std::chrono::steady_clock::now();
  incnn::checkpoint::Checkpoint checkpoint;
  if (std::string error =
          incnn::checkpoint::loadCheckpoint(modelDir, checkpoint);
      !error.empty())
    return fail(error);

  mlir::DialectRegistry registry;
  incnn::registerAllDialects(registry);
  mlir::MLIRContext context(registry);
  context.printOpOnDiagnostic(false);
  mlir::ScopedDiagnosticHandler diagnostics(&context,
                                            [](mlir::Diagnostic &diag) {
                                              printDiagnostic(diag);
                                              return mlir::success();
                                            });
  if (!calibrationFile.empty())
    if (std::string e = calibrate(context, checkpoint); !e.empty())
      return fail(e);
  std::string error;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      incnn::importCheckpoint(context, checkpoint, error);
  if (!module)
    return fail(modelDir + ": " + error);
  const auto &config = checkpoint.config;
  progress("imported " + config.family + " " + config.architecture + ": " +
           std::to_string(config.layers) +
           " layers, d=" + std::to_string(config.hidden) + ", " +
           std::to_string(config.vq.size()) + " VQ site(s), positions " +
           config.position);

  mlir::PassManager pm(&context);
  if (emitKind == EmitKind::VQT) {
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  } else {
    incnn::buildIncrementalPipeline(pm);
  }
  if (mlir::failed(pm.run(*module)))
    return fail("the compilation pipeline failed");
  if (auto bytes = (*module)->getAttrOfType<mlir::IntegerAttr>(
          "delta.cache_bytes_per_token"))
    progress("cache plan: " + std::to_string(bytes.getInt()) +
             " bytes per token");

  if (emitKind != EmitKind::Program) {
    std::error_code ec;
    llvm::raw_fd_ostream out(
        outputPath.empty() ? std::string("-") : outputPath.getValue(), ec);
    if (ec)
      return fail("cannot write " + outputPath + ": " + ec.message());
    module->print(out);
    return 0;
  }

  incnn::runtime::Program program;
  if (std::string e = incnn::buildProgram(*module, checkpoint, program);
      !e.empty())
    return fail(e);
  int64_t parameters = 0;
  for (const auto &weight : program.weights)
    parameters += weight.numElements();
  incnn::runtime::Status status =
      incnn::runtime::writeProgram(program, outputPath);
  if (!status.ok())
    return fail(status.error);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  progress("wrote " + outputPath + ": " +
           std::to_string(program.instrs.size()) + " instructions, " +
           std::to_string(parameters) + " parameters (" +
           std::to_string(parameters * 4 / 1024) + " KiB) in " +
           std::to_string(seconds).substr(0, 5) + " s");
  return 0;
}
