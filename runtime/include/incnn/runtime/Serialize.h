//===- Serialize.h - incnn's JSON: floats, edit statistics ------*- C++ -*-===//
//
// One serializer for what every front end prints (docs/json.md): incnn-run
// --json, incnn-bench, incnn-serve's answers, the Python module's `.stats`
// and the C API's incnn_session_stats_json.
//
// Floats: a float32 is held in a JSON value as its exact value (a double)
// and printed by dumpJson() in the shortest decimal that parses back to the
// same float32 bits, also when read as a double and then rounded to float32
// (what a JSON reader does; formatFloat). Non-finite floats are null.
// nlohmann's own dump() prints such a double with up to 17 digits: it
// round-trips too, but use dumpJson() for incnn's documented form.
//
// Not installed (it pulls in nlohmann/json.hpp, like BoundedJson.h).
//
//===----------------------------------------------------------------------===//
#ifndef INCNN_RUNTIME_SERIALIZE_H
#define INCNN_RUNTIME_SERIALIZE_H

#include "incnn/runtime/Session.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace incnn::runtime {

/// A float32 as JSON: its exact value, or null if it is not finite.
nlohmann::json jsonFloat(float x);

/// An array of float32s (jsonFloat each).
nlohmann::json floatsToJson(const std::vector<float> &values);

/// The index of the largest of `width` floats (the first wins ties): a
/// classifier's label, a causal LM's greedy token.
size_t argmaxOf(const float *values, size_t width);

/// The label of each row of `width` logits (a token classifier's output).
std::vector<size_t> rowLabels(const std::vector<float> &output, size_t width);

/// The session's output: an array of floats, or for a per-token output (a
/// token classifier) an array of rows, one per token.
nlohmann::json outputToJson(const Session &session);

/// The shortest decimal that parses back to the same float32 bits, read as
/// a float32 or (like JSON readers) as a double then rounded to float32: at
/// most 9 significant digits, std::to_chars' shortest form but for a few
/// values that a double reader would round to a neighbour. "null" if not
/// finite; always a JSON number with a '.' or an exponent ("3.0", "1e-05"),
/// so that readers see a float.
std::string formatFloat(float x);

/// The keys of statsToJson, in its order.
inline constexpr const char *kStatsKeys[] = {"macs",
                                             "macs_full",
                                             "tokens",
                                             "dirty_rows",
                                             "updated_rows",
                                             "code_flips",
                                             "certified_rows",
                                             "deferred_rows",
                                             "recomputed_rows",
                                             "state_bytes",
                                             "us",
                                             "step_us",
                                             "attention_us"};

/// Every field of EditStats, under the keys of kStatsKeys (docs/json.md):
/// counts are integers; dirty_rows and updated_rows per attention layer and
/// code_flips per VQ site are arrays; recomputed_rows counts the rows some
/// attention layer recomputed in full (0 from scratch); state_bytes the
/// accumulator bytes it rewrote; us is the update's
/// wall time in microseconds rounded to 0.1, step_us each program step's,
/// and attention_us per attention layer its update's parts (plan,
/// delta_terms, full_rows; empty from scratch).
nlohmann::ordered_json statsToJson(const EditStats &stats);

/// Compact JSON text, like dump() with invalid UTF-8 replaced by U+FFFD,
/// except that a number that is exactly a float32 prints as formatFloat
/// does.
std::string dumpJson(const nlohmann::json &value);
std::string dumpJson(const nlohmann::ordered_json &value);

} // namespace incnn::runtime

#endif // INCNN_RUNTIME_SERIALIZE_H
