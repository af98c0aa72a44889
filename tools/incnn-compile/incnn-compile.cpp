//===- incnn-compile.cpp - checkpoint -> incnn program --------------------===//
//
//   incnn-compile MODEL_DIR -o MODEL.incnn
//   incnn-compile MODEL_DIR --emit=vqt        (prints the imported IR)
//
//===----------------------------------------------------------------------===//
#include "../../compiler/checkpoint/Checkpoint.h"
#include "incnn/Compiler/BuildProgram.h"
#include "incnn/Compiler/Import.h"
#include "incnn/Compiler/InitAll.h"
#include "incnn/Compiler/Pipelines.h"
#include "incnn/runtime/Program.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

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

int fail(const std::string &message) {
  llvm::errs() << "incnn-compile: error: " << message << "\n";
  return 1;
}

void progress(const std::string &message) {
  if (!quiet)
    llvm::errs() << "incnn-compile: " << message << "\n";
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
