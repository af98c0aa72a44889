//===- BoundedJson.h - JSON parsing with limits applied while reading -----===//
//
// One parser for every JSON input a caller controls: lines of an edits file
// and incnn-serve's request bodies. Size, nesting and the number of values
// are checked while the text is read, so a hostile input (a 24 MB array of
// empty objects, five million levels of nesting) is refused before it costs
// memory.
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_BOUNDEDJSON_H
#define INCNN_RUNTIME_BOUNDEDJSON_H

#include "incnn/runtime/Program.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string_view>

namespace incnn::runtime {

struct JsonLimits {
  size_t maxBytes;  ///< the text's length
  int maxDepth;     ///< nesting of arrays and objects
  size_t maxValues; ///< values of any kind, containers included
};

/// Parses `text` into `out`, or says which limit it broke or where the JSON
/// is malformed (invalid UTF-8 and numbers out of double range included).
Status parseBoundedJson(std::string_view text, const JsonLimits &limits,
                        nlohmann::json &out);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_BOUNDEDJSON_H
