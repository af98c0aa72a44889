//===- Driver.h - checkpoint -> program, the whole compilation ---*- C++
//-*-===//
//
// The one compilation path behind incnn-compile and the Python module:
// load a checkpoint directory, optionally fit VQ codebooks by calibration,
// import it as vqt, run the incremental pipeline and write the program file
// (or print the IR after import or after the pipeline).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_COMPILER_DRIVER_H
#define INCNN_COMPILER_DRIVER_H

#include <cstdint>
#include <functional>
#include <string>

namespace incnn {

/// The default context window of models without positions (NoPE): whole
/// documents, not the training length.
constexpr int64_t kDefaultNoPEWindow = 65536;

struct CompileOptions {
  std::string modelDir;
  /// A vqt or vqt + delta module to build instead of importing the
  /// checkpoint (whose weights it binds by name). A module that already has
  /// its delta program is built as it is: the compiler checks, not repairs.
  std::string irFile;
  /// The program file to write (Emit::Program), or where to print the IR
  /// ("" or "-": the `ir` result).
  std::string outputPath;
  enum class Emit { Program, VQT, Delta } emit = Emit::Program;
  /// Text (or whitespace-separated token ids) for k-means VQ calibration of
  /// a dense checkpoint; empty: none.
  std::string calibrationFile;
  /// LAYER:SITE:GROUPS:CODES,... (default: attn_out of every layer, 1x64).
  std::string calibrationSites;
  /// "minimal" (the delta-plan-cache plan) or "all" (every row of every
  /// value is kept).
  std::string cachePlan = "minimal";
  /// false: quantizers recompute their rows and stop nothing (an ablation
  /// that shows what VQ cutoff saves).
  bool vqCutoff = true;
  /// Attention updates defer the rows whose codes a certificate proves
  /// unchanged (same outputs; off by default, docs/benchmarks.md).
  bool deferAttention = false;
  /// > 0: the program's context window, replacing max_position_embeddings
  /// (models without learned positions run at any length; the runtime's
  /// limit is 2^20 tokens). 0: the checkpoint's, except that models without
  /// positions (NoPE) get at least kDefaultNoPEWindow.
  int64_t maxPositions = 0;
  /// Progress lines ("imported ...", "wrote ..."); may be empty.
  std::function<void(const std::string &)> progress;
  /// Compiler diagnostics as "warning: WHERE: message" (notes and errors
  /// alike); may be empty.
  std::function<void(const std::string &)> diagnostic;
};

struct CompileResult {
  std::string ir;                  ///< printed IR, for Emit::VQT / Delta
  int64_t cacheBytesPerToken = -1; ///< from the cache plan, when known
  int64_t numInstructions = 0, numParameters = 0;
};

/// Runs the compilation. Returns an error message, or "" on success.
std::string compileModel(const CompileOptions &options, CompileResult &result);

} // namespace incnn

#endif // INCNN_COMPILER_DRIVER_H
