//===- incnn-compile.cpp - checkpoint -> incnn program --------------------===//
//
//   incnn-compile MODEL_DIR -o MODEL.incnn
//   incnn-compile MODEL_DIR --emit=vqt        (prints the imported IR)
//   incnn-compile MODEL_DIR --ir FILE.mlir -o MODEL.incnn  (a given module)
//
//===----------------------------------------------------------------------===//
#include "incnn/Compiler/Driver.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"

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

cl::opt<std::string> cachePlan(
    "cache-plan",
    cl::desc("Rows kept between edits: minimal (the compiler's cache plan, "
             "default) or all (every row of every value)"),
    cl::init("minimal"), cl::value_desc("minimal|all"));

cl::opt<std::string>
    irFile("ir",
           cl::desc("Build this vqt (or vqt + delta) module, e.g. an edited "
                    "--emit=delta output, with the checkpoint's weights"),
           cl::value_desc("file.mlir"));

cl::opt<int64_t> maxPositions(
    "max-positions",
    cl::desc("The program's context window in tokens, replacing the "
             "checkpoint's max_position_embeddings (not for learned "
             "positions; at most 1048576). Default: the checkpoint's, "
             "and at least 65536 for models without positions"),
    cl::init(0), cl::value_desc("N"));

cl::opt<bool> noVQCutoff(
    "no-vq-cutoff",
    cl::desc("Compile quantizers without cutoff steps: every row an attention "
             "touches stays dirty (an ablation; same outputs)"),
    cl::init(false));

cl::opt<bool>
    defer("defer",
          cl::desc("Attention updates defer the rows whose codes a certificate "
                   "proves unchanged instead of updating them (same outputs; "
                   "experimental: on the bundled model it does not pay yet)"),
          cl::init(false));

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
  // --version prints the project's version, as the runtime tools do.
  cl::SetVersionPrinter([](llvm::raw_ostream &os) {
    os << "incnn-compile " << INCNN_VERSION << "\n";
  });
  cl::ParseCommandLineOptions(argc, argv,
                              "incnn-compile: compile a checkpoint directory "
                              "into an incnn program\n");
  if (emitKind == EmitKind::Program && outputPath.empty())
    return fail("missing -o MODEL.incnn (or use --emit=vqt)");
  incnn::CompileOptions options;
  options.modelDir = modelDir;
  options.outputPath = outputPath;
  options.emit = emitKind == EmitKind::VQT ? incnn::CompileOptions::Emit::VQT
                 : emitKind == EmitKind::Delta
                     ? incnn::CompileOptions::Emit::Delta
                     : incnn::CompileOptions::Emit::Program;
  options.calibrationFile = calibrationFile;
  options.calibrationSites = calibrationSites;
  options.cachePlan = cachePlan;
  options.irFile = irFile;
  options.vqCutoff = !noVQCutoff;
  options.deferAttention = defer;
  options.maxPositions = maxPositions;
  options.progress = progress;
  options.diagnostic = [](const std::string &line) {
    llvm::errs() << "incnn-compile: " << line << "\n";
  };
  incnn::CompileResult result;
  if (std::string error = incnn::compileModel(options, result); !error.empty())
    return fail(error);
  if (emitKind == EmitKind::Program)
    return 0;
  std::error_code ec;
  llvm::raw_fd_ostream out(
      outputPath.empty() ? std::string("-") : outputPath.getValue(), ec);
  if (ec)
    return fail("cannot write " + outputPath + ": " + ec.message());
  out << result.ir;
  return 0;
}
