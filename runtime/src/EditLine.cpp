//===- EditLine.cpp - one line of an edits file ---------------------------===//
#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/BoundedJson.h"
#include "incnn/runtime/Limits.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace incnn::runtime {

namespace {

using json = nlohmann::json;

struct LineError {
  std::string message;
};

[[noreturn]] void fail(std::string message) {
  throw LineError{std::move(message)};
}

int64_t getInt(const json &j, const char *key, const std::string &where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    fail(where + "'" + key + "' must be an integer");
  return it->get<int64_t>();
}

std::vector<int32_t> getTokens(const json &j, int32_t vocabSize,
                               size_t maxTokens, const std::string &where) {
  auto it = j.find("tokens");
  if (it == j.end() || !it->is_array() || it->empty())
    fail(where + "'tokens' must be a non-empty array of token ids");
  if (it->size() > maxTokens)
    fail(where + std::to_string(it->size()) + " tokens exceed the context of " +
         std::to_string(maxTokens));
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (const json &t : *it) {
    if (!t.is_number_integer())
      fail(where + "token ids must be integers");
    int64_t id = t.get<int64_t>();
    if (id < 0 || id >= vocabSize)
      fail(where + "token " + std::to_string(id) +
           " is outside the vocabulary [0, " + std::to_string(vocabSize) + ")");
    ids.push_back(int32_t(id));
  }
  return ids;
}

void checkKeys(const json &j, std::initializer_list<const char *> keys,
               const std::string &op, const std::string &where) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::none_of(keys.begin(), keys.end(),
                     [&](const char *k) { return it.key() == k; }))
      fail(where + "unexpected key '" + it.key() + "' in a '" + op + "' edit");
}

} // namespace

Status parseEditLine(std::string_view line, int32_t vocabSize, size_t maxTokens,
                     EditLine &out) {
  try {
    json j;
    if (Status st = parseBoundedJson(line,
                                     {kMaxEditLineBytes, kMaxEditJsonDepth,
                                      maxTokens + 8 * kMaxEditsPerBatch},
                                     j);
        !st.ok())
      return st;
    const json *items = &j;
    json single = json::array();
    if (j.is_array()) {
      if (j.empty())
        fail("empty edit batch");
      if (j.size() > kMaxEditsPerBatch)
        fail(std::to_string(j.size()) + " edits in one batch exceed the " +
             "limit of " + std::to_string(kMaxEditsPerBatch));
    } else {
      single.push_back(std::move(j));
      items = &single;
    }
    EditLine result;
    for (size_t i = 0; i < items->size(); ++i) {
      const json &e = (*items)[i];
      std::string at =
          items->size() > 1 ? "edit " + std::to_string(i) + ": " : "";
      if (!e.is_object() || !e.contains("op") || !e["op"].is_string())
        fail(at + "an edit is an object with a string 'op'");
      std::string op = e["op"].get<std::string>();
      if (op == "replace" || op == "insert") {
        checkKeys(e, {"op", "at", "tokens"}, op, at);
        int64_t pos = getInt(e, "at", at);
        std::vector<int32_t> ids = getTokens(e, vocabSize, maxTokens, at);
        result.tokenEdits.push_back(
            op == "replace" ? TokenEdit::replace(pos, std::move(ids))
                            : TokenEdit::insert(pos, std::move(ids)));
      } else if (op == "delete") {
        checkKeys(e, {"op", "at", "count"}, op, at);
        int64_t pos = getInt(e, "at", at);
        result.tokenEdits.push_back(
            TokenEdit::erase(pos, getInt(e, "count", at)));
      } else if (op == "text") {
        checkKeys(e, {"op", "start", "end", "text"}, op, at);
        if (!e.contains("text") || !e["text"].is_string())
          fail(at + "'text' must be a string");
        result.textEdits.push_back(TextEdit{getInt(e, "start", at),
                                            getInt(e, "end", at),
                                            e["text"].get<std::string>()});
      } else {
        fail(at + "unknown edit op '" + op + "'");
      }
    }
    if (!result.textEdits.empty() && !result.tokenEdits.empty())
      fail("a batch cannot mix text and token edits");
    out = std::move(result);
  } catch (const LineError &e) {
    return Status::invalidArgument(e.message);
  } catch (const std::bad_alloc &) {
    return Status::exhausted("out of memory parsing the edit line");
  }
  return Status::success();
}

bool readEditLine(std::istream &in, std::string &line, Status &error) {
  line.clear();
  error = Status::success();
  std::streambuf *buf = in.rdbuf();
  bool any = false;
  for (;;) {
    int c = buf->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n')
      return true;
    if (line.size() == kMaxEditLineBytes) {
      error = Status::exhausted("the line is longer than the limit of " +
                                std::to_string(kMaxEditLineBytes) + " bytes");
      return true;
    }
    line.push_back(char(c));
  }
}

} // namespace incnn::runtime
