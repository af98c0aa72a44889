//===- incnn-run.cpp - Run an incnn program on tokens or text -------------===//
//
//   incnn-run MODEL.incnn (--tokens "ID ..." | --text FILE)
//             [--edits EDITS.jsonl] [--verify] [--json] [--generate N]
//             [--threads N]
//
// Prints the output after the first evaluation (step 0) and after every edit.
// Edits are applied by re-evaluating from scratch until the incremental
// engine lands; --verify compares against an independent from-scratch
// evaluation and exits 1 on any bit of difference.
//
// Exit status: 0 ok; 1 runtime error (bad model file, bad tokens, --verify
// mismatch); 2 usage error or invalid edit.
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace incnn::runtime;
using json = nlohmann::json;

namespace {

const char *kUsage =
    "usage: incnn-run MODEL.incnn (--tokens \"ID ...\" | --text FILE)\n"
    "                 [--edits EDITS.jsonl] [--verify] [--json] "
    "[--generate N] [--threads N]\n";

struct Options {
  std::string model;
  std::optional<std::string> tokens, textFile, editsFile;
  bool verify = false, jsonOut = false;
  int generate = 0, threads = 0;
};

/// Thrown for errors that end the run with a message and an exit status.
struct Exit {
  int code;
  std::string message;
  bool showUsage = false;
};

[[noreturn]] void die(int code, std::string message) {
  throw Exit{code, std::move(message)};
}

[[noreturn]] void usageError(std::string message) {
  throw Exit{2, std::move(message), true};
}

bool parseInt(const std::string &s, int64_t &out) {
  const char *b = s.data(), *e = s.data() + s.size();
  auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc)
        usageError("missing value after " + a);
      return argv[++i];
    };
    auto nextInt = [&](int64_t lo, int64_t hi) {
      std::string v = next();
      int64_t x;
      if (!parseInt(v, x) || x < lo || x > hi)
        usageError("bad value '" + v + "' for " + a);
      return int(x);
    };
    if (a == "--tokens")
      o.tokens = next();
    else if (a == "--text")
      o.textFile = next();
    else if (a == "--edits")
      o.editsFile = next();
    else if (a == "--verify")
      o.verify = true;
    else if (a == "--json")
      o.jsonOut = true;
    else if (a == "--generate")
      o.generate = nextInt(0, 1 << 20);
    else if (a == "--threads")
      o.threads = nextInt(0, 1024);
    else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (!a.empty() && a[0] == '-')
      usageError("unknown option " + a);
    else if (o.model.empty())
      o.model = a;
    else
      usageError("unexpected argument '" + a + "'");
  }
  if (o.model.empty())
    usageError("no model file given");
  if (o.tokens.has_value() == o.textFile.has_value())
    usageError("give exactly one of --tokens and --text");
  return o;
}

std::vector<int32_t> parseTokenList(const std::string &s) {
  std::vector<int32_t> ids;
  std::string item;
  std::stringstream ss(s);
  while (ss >> item) {
    // Accept commas as separators too.
    std::stringstream parts(item);
    std::string tok;
    while (std::getline(parts, tok, ',')) {
      if (tok.empty())
        continue;
      int64_t x;
      if (!parseInt(tok, x) || x < INT32_MIN || x > INT32_MAX)
        die(2, "bad token id '" + tok + "' in --tokens");
      ids.push_back(int32_t(x));
    }
  }
  return ids;
}

std::string formatFloat(float x) {
  if (!std::isfinite(x))
    return "null";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), x);
  return std::string(buf, r.ptr);
}

size_t argmax(const std::vector<float> &v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best])
      best = i;
  return best;
}

class Session {
public:
  Session(const Options &opts, const Program &program)
      : opts(opts), program(program),
        evaluator(program, EvaluatorOptions{opts.threads}) {
    if (!program.tokenizer.empty()) {
      Status st = Tokenizer::create(program.tokenizer, tokenizer);
      if (!st.ok())
        die(1, st.error);
    }
  }

  void start() {
    if (opts.generate > 0 && program.task != TaskKind::CausalLM)
      die(2, "--generate needs a causal language model");
    Status prep = evaluator.prepare();
    if (!prep.ok())
      die(1, prep.error);
    if (opts.tokens) {
      tokens = parseTokenList(*opts.tokens);
    } else {
      if (!tokenizer)
        die(2, "--text needs a program with a tokenizer");
      std::ifstream in(*opts.textFile, std::ios::binary);
      if (!in)
        die(1, "cannot read '" + *opts.textFile + "'");
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
      haveText = true;
      tokens = tokenize(text, 1);
    }
    evaluateAndPrint(1);
  }

  void runEdits(const std::string &path) {
    std::ifstream in(path);
    if (!in)
      die(2, "cannot read edits file '" + path + "'");
    std::string line;
    int lineNo = 0;
    while (std::getline(in, line)) {
      ++lineNo;
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue;
      std::string where = path + ":" + std::to_string(lineNo) + ": ";
      applyEdit(line, where);
      evaluateAndPrint(1);
    }
  }

  void generate(int count) {
    if (program.task != TaskKind::CausalLM)
      die(2, "--generate needs a causal language model");
    std::vector<int32_t> generated;
    for (int i = 0; i < count; ++i) {
      if (int64_t(tokens.size()) >= program.maxPositions) {
        std::cerr << "incnn-run: context window full after " << i
                  << " generated tokens\n";
        break;
      }
      int32_t next = int32_t(argmax(evaluator.output()));
      generated.push_back(next);
      tokens.push_back(next);
      evaluate(1);
    }
    std::string decoded;
    bool haveDecoded = tokenizer && tokenizer->decode(generated, decoded).ok();
    if (opts.jsonOut) {
      json j;
      j["generated"] = generated;
      if (haveDecoded)
        j["text"] = decoded;
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
    } else {
      std::cout << "generated:";
      for (int32_t t : generated)
        std::cout << " " << t;
      std::cout << "\n";
      if (haveDecoded)
        std::cout << "text: " << decoded << "\n";
    }
  }

private:
  const Options &opts;
  const Program &program;
  Evaluator evaluator;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int32_t> tokens;
  std::string text;
  bool haveText = false;
  int step = 0;
  double lastUs = 0;

  std::vector<int32_t> tokenize(const std::string &s, int code) {
    std::vector<int32_t> ids;
    Status st = tokenizer->encode(s, ids);
    if (!st.ok())
      die(code, st.error);
    return ids;
  }

  void evaluate(int code) {
    auto t0 = std::chrono::steady_clock::now();
    Status st = evaluator.evaluate(tokens);
    auto t1 = std::chrono::steady_clock::now();
    if (!st.ok())
      die(code, st.error);
    lastUs = std::chrono::duration<double, std::micro>(t1 - t0).count();
    if (opts.verify && step > 0) {
      Evaluator fresh(program, EvaluatorOptions{opts.threads});
      Status fs = fresh.evaluate(tokens);
      if (!fs.ok())
        die(1, fs.error);
      const std::vector<float> &a = evaluator.output(), &b = fresh.output();
      if (a.size() != b.size() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0)
        die(1, "--verify: step " + std::to_string(step) +
                   " differs from a from-scratch evaluation");
    }
  }

  void evaluateAndPrint(int code) {
    evaluate(code);
    print();
    ++step;
  }

  void print() {
    const std::vector<float> &out = evaluator.output();
    if (opts.jsonOut) {
      std::string s = "{\"step\":" + std::to_string(step) + ",\"output\":[";
      for (size_t i = 0; i < out.size(); ++i) {
        if (i)
          s += ',';
        s += formatFloat(out[i]);
      }
      uint64_t full = countMacs(program, int64_t(tokens.size()));
      s += "],\"stats\":{\"macs\":" + std::to_string(evaluator.macs()) +
           ",\"macs_full\":" + std::to_string(full) +
           ",\"dirty_rows\":[],\"code_flips\":[],\"us\":" +
           std::to_string(int64_t(std::llround(lastUs))) + "}}\n";
      std::cout << s;
      std::cout.flush();
      return;
    }
    size_t best = argmax(out);
    std::cout << "step " << step << ": ";
    if (program.task == TaskKind::Classifier) {
      std::cout << "class " << best;
      if (best < program.labels.size())
        std::cout << " (" << program.labels[best] << ")";
      std::cout << "  logits:";
      for (float x : out)
        std::cout << " " << formatFloat(x);
    } else {
      std::cout << "next token " << best;
      if (tokenizer)
        std::cout << " '" << tokenizer->piece(int32_t(best)) << "'";
      std::cout << " (logit " << formatFloat(out[best]) << ")";
    }
    std::cout << "  [" << tokens.size() << " tokens, " << evaluator.macs()
              << " MACs, " << int64_t(lastUs) << " us]\n";
  }

  // Edits -------------------------------------------------------------------

  int64_t getIndex(const json &j, const char *key, const std::string &where) {
    if (!j.contains(key) || !j[key].is_number_integer())
      die(2, where + "'" + key + "' must be an integer");
    return j[key].get<int64_t>();
  }

  std::vector<int32_t> getTokens(const json &j, const std::string &where) {
    if (!j.contains("tokens") || !j["tokens"].is_array() || j["tokens"].empty())
      die(2, where + "'tokens' must be a non-empty array of token ids");
    std::vector<int32_t> ids;
    for (const json &t : j["tokens"]) {
      if (!t.is_number_integer())
        die(2, where + "token ids must be integers");
      int64_t id = t.get<int64_t>();
      if (id < 0 || id >= program.vocabSize)
        die(2, where + "token " + std::to_string(id) +
                   " is outside the vocabulary");
      ids.push_back(int32_t(id));
    }
    return ids;
  }

  /// Validates and applies one edit; on error exits 2 with the state
  /// untouched.
  void applyEdit(const std::string &line, const std::string &where) {
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception &e) {
      die(2, where + "malformed JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("op") || !j["op"].is_string())
      die(2, where + "an edit is an object with a string 'op'");
    std::string op = j["op"].get<std::string>();
    const int64_t n = int64_t(tokens.size());
    std::vector<int32_t> next = tokens;
    if (op == "replace" || op == "insert") {
      int64_t at = getIndex(j, "at", where);
      std::vector<int32_t> ins = getTokens(j, where);
      int64_t len = int64_t(ins.size());
      if (op == "replace") {
        if (at < 0 || at > n || len > n - at)
          die(2, where + "replace range out of bounds");
        std::copy(ins.begin(), ins.end(), next.begin() + at);
      } else {
        if (at < 0 || at > n)
          die(2, where + "insert position out of bounds");
        next.insert(next.begin() + at, ins.begin(), ins.end());
      }
    } else if (op == "delete") {
      int64_t at = getIndex(j, "at", where);
      int64_t count = getIndex(j, "count", where);
      if (at < 0 || count < 1 || at > n || count > n - at)
        die(2, where + "delete range out of bounds");
      next.erase(next.begin() + at, next.begin() + at + count);
    } else if (op == "text") {
      if (!tokenizer || !haveText)
        die(2, where + "text edits need --text (and no earlier token edit)");
      int64_t start = getIndex(j, "start", where);
      int64_t end = getIndex(j, "end", where);
      if (!j.contains("text") || !j["text"].is_string())
        die(2, where + "'text' must be a string");
      if (start < 0 || end < start || end > int64_t(text.size()))
        die(2, where + "text range out of bounds");
      std::string newText = text.substr(0, size_t(start)) +
                            j["text"].get<std::string>() +
                            text.substr(size_t(end));
      next = tokenize(newText, 2);
      Status st = validateTokens(program, next);
      if (!st.ok())
        die(2, where + st.error);
      text = std::move(newText);
      tokens = std::move(next);
      return;
    } else {
      die(2, where + "unknown edit op '" + op + "'");
    }
    Status st = validateTokens(program, next);
    if (!st.ok())
      die(2, where + st.error);
    tokens = std::move(next);
    haveText = false; // token edits detach the text
  }
};

} // namespace

int main(int argc, char **argv) {
  try {
    Options opts = parseArgs(argc, argv);
    Program program;
    Status st = loadProgram(opts.model, program);
    if (!st.ok())
      die(1, st.error);
    Session session(opts, program);
    session.start();
    if (opts.editsFile)
      session.runEdits(*opts.editsFile);
    if (opts.generate > 0)
      session.generate(opts.generate);
  } catch (const Exit &e) {
    std::cout.flush();
    std::cerr << "incnn-run: error: " << e.message << "\n";
    if (e.showUsage)
      std::cerr << kUsage;
    return e.code;
  } catch (const std::exception &e) {
    std::cerr << "incnn-run: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
