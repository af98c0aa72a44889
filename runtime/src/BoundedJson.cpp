//===- BoundedJson.cpp - JSON parsing with limits applied while reading ---===//
#include "incnn/runtime/BoundedJson.h"

#include <string>

namespace incnn::runtime {

namespace {

/// Thrown from the parser callback to stop reading at the first broken limit.
struct LimitBroken {
  std::string message;
};

} // namespace

Status parseBoundedJson(std::string_view text, const JsonLimits &limits,
                        nlohmann::json &out) {
  using json = nlohmann::json;
  if (text.size() > limits.maxBytes)
    return Status::exhausted(
        "the JSON text has " + std::to_string(text.size()) +
        " bytes, over the limit of " + std::to_string(limits.maxBytes));
  size_t values = 0;
  json::parser_callback_t check = [&](int depth, json::parse_event_t event,
                                      json &) -> bool {
    if (depth > limits.maxDepth)
      throw LimitBroken{"JSON nested deeper than " +
                        std::to_string(limits.maxDepth) + " levels"};
    if ((event == json::parse_event_t::value ||
         event == json::parse_event_t::object_start ||
         event == json::parse_event_t::array_start) &&
        ++values > limits.maxValues)
      throw LimitBroken{"more than " + std::to_string(limits.maxValues) +
                        " JSON values"};
    return true;
  };
  try {
    out = json::parse(text.begin(), text.end(), check);
  } catch (const LimitBroken &e) {
    return Status::exhausted(e.message);
  } catch (const json::exception &e) {
    return Status::invalidArgument(std::string("malformed JSON: ") + e.what());
  } catch (const std::bad_alloc &) {
    return Status::exhausted("out of memory parsing JSON");
  }
  return Status::success();
}

} // namespace incnn::runtime
