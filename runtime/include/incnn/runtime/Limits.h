//===- Limits.h - bounds on every input the runtime reads --------*- C++
//-*-===//
//
// Inputs past these limits are refused with a clear error before they are
// read whole or copied, so no input can take unbounded time or memory.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_LIMITS_H
#define INCNN_RUNTIME_LIMITS_H

#include <cstddef>

namespace incnn::runtime {

/// Bytes of document text a Document or the tokenizer entry points accept.
inline constexpr size_t kMaxTextBytes = size_t(4) << 20;
/// Bytes of one line of an edits file (room for a text edit of
/// kMaxTextBytes, JSON-escaped).
inline constexpr size_t kMaxEditLineBytes = size_t(16) << 20;
/// JSON nesting of an edits line (a batch array of edit objects of arrays).
inline constexpr int kMaxEditJsonDepth = 4;
/// Edits in one batch (C API and edits files).
inline constexpr size_t kMaxEditsPerBatch = 4096;
/// Kernel threads a session or evaluator may be asked for (0: one per core):
/// the C API, the Python module and every tool's --threads.
inline constexpr int kMaxThreads = 1024;

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_LIMITS_H
