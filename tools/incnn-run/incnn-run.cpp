//===- incnn-run.cpp - Run an incnn program on a document with edits ------===//
//
//   incnn-run MODEL.incnn (--tokens "ID ..." | --text FILE)
//             [--edits EDITS.jsonl] [--verify] [--json] [--generate N]
//             [--threads N]
//
// Step 0 evaluates the document from scratch (Session::reset); every line of
// the edits file is one incremental update (Session::apply). The output is
// printed after every step. --verify also evaluates every step from scratch
// with an Evaluator and exits 1 on any bit of difference; with --text it also
// checks the incrementally kept tokens against a full tokenization of the
// text. --generate appends
// greedy tokens one insert at a time, stopping at EOS.
//
// --text: the file is tokenized without BOS, except that a causal LM with a
// BOS id gets BOS prepended (as the model was trained). A document longer
// than the context window is cut to its first maxPositions tokens, with a
// warning.
//
// Exit status: 0 ok; 1 runtime error (bad model file, --verify mismatch);
// 2 usage error, bad input tokens or an invalid edit (the session is left
// untouched: every edit line is validated before it is applied).
//
//===----------------------------------------------------------------------===//

#include "incnn/runtime/Document.h"
#include "incnn/runtime/EditLine.h"
#include "incnn/runtime/Limits.h"
#include "incnn/runtime/Program.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Serialize.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Tokenizer.h"

#include "ToolOptions.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
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
using incnn::tools::ToolCli;
using json = nlohmann::json;

namespace {

struct Options {
  std::string model;
  std::optional<std::string> tokens, textFile, editsFile;
  bool verify = false, jsonOut = false, printProgram = false;
  int generate = 0, threads = 0;
};

/// Thrown for errors that end the run with a message and an exit status.
struct Exit {
  int code;
  std::string message;
};

[[noreturn]] void die(int code, std::string message) {
  throw Exit{code, std::move(message)};
}

bool parseInt(const std::string &s, int64_t &out) {
  const char *b = s.data(), *e = s.data() + s.size();
  auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e;
}

Options parseArgs(int argc, char **argv) {
  Options o;
  std::string tokens, textFile, editsFile;
  ToolCli cli("incnn-run",
              "MODEL.incnn (--tokens \"ID ...\" | --text FILE)\n"
              "                 [--edits EDITS.jsonl] [--verify] [--json] "
              "[--generate N] [--threads N]\n"
              "       incnn-run MODEL.incnn --print-program",
              "Runs a compiled program on a document (step 0, from scratch), "
              "then applies\nevery line of an edits file incrementally, "
              "printing the output after each\nstep.");
  cli.addModel(o.model);
  cli.addString("--tokens", tokens,
                "the document as token ids (spaces or "
                "commas between them)",
                "\"ID ...\"");
  cli.addString("--text", textFile,
                "tokenize FILE (BOS first for causal LMs that have one; cut "
                "to the context window with a warning)");
  cli.addString("--edits", editsFile,
                "JSON lines: replace/insert/delete/text edits, or an array of "
                "them as one batch; one incremental step each",
                "EDITS.jsonl");
  cli.addFlag("--verify", o.verify,
              "compare every step with a from-scratch run, and the tokens "
              "with a full tokenization (exit 1)");
  cli.addJsonFlag(o.jsonOut, "one JSON object per step (docs/json.md)");
  cli.addFlag("--print-program", o.printProgram,
              "print the instructions and change-propagation steps and exit");
  cli.addInt("--generate", o.generate, 0, 1 << 20,
             "append up to N greedy tokens (stops at EOS)");
  cli.addThreads(o.threads);
  cli.parse(argc, argv);
  if (cli.given("--tokens"))
    o.tokens = tokens;
  if (cli.given("--text"))
    o.textFile = textFile;
  if (cli.given("--edits"))
    o.editsFile = editsFile;
  if (!o.printProgram && o.tokens.has_value() == o.textFile.has_value())
    cli.usageError("give exactly one of --tokens and --text");
  return o;
}

/// Space- or comma-separated token ids.
std::vector<int32_t> parseTokenList(const std::string &s) {
  std::vector<int32_t> ids;
  std::string item = s;
  std::replace(item.begin(), item.end(), ',', ' ');
  std::stringstream ss(item);
  std::string tok;
  while (ss >> tok) {
    int64_t x;
    if (!parseInt(tok, x) || x < INT32_MIN || x > INT32_MAX)
      die(2, "bad token id '" + tok + "' in --tokens");
    ids.push_back(int32_t(x));
  }
  return ids;
}

class Runner {
public:
  Runner(const Options &opts, const Program &program)
      : opts(opts), program(program),
        session(program, SessionOptions{opts.threads}) {
    if (!program.tokenizer.empty()) {
      Status st = Tokenizer::create(program.tokenizer, tokenizer);
      if (!st.ok())
        die(1, st.error);
    }
    if (opts.verify)
      verifier =
          std::make_unique<Evaluator>(program, EvaluatorOptions{opts.threads});
  }

  void start() {
    if (opts.generate > 0 && program.task != TaskKind::CausalLM)
      die(2, "--generate needs a causal language model");
    std::vector<int32_t> tokens;
    if (opts.tokens) {
      tokens = parseTokenList(*opts.tokens);
    } else {
      if (!tokenizer)
        die(2, "--text needs a program with a tokenizer");
      std::ifstream in(*opts.textFile, std::ios::binary | std::ios::ate);
      if (!in)
        die(2, "cannot read '" + *opts.textFile + "'");
      if (uint64_t(in.tellg()) > kMaxTextBytes)
        die(2, "'" + *opts.textFile + "' has " +
                   std::to_string(uint64_t(in.tellg())) +
                   " bytes, over the document limit of " +
                   std::to_string(kMaxTextBytes));
      in.seekg(0);
      std::stringstream ss;
      ss << in.rdbuf();
      std::vector<int32_t> prefix;
      if (addsBos())
        prefix.push_back(program.bosTokenId);
      document = std::make_unique<Document>(session, *tokenizer, prefix);
      Status st = document->reset(ss.str());
      if (!st.ok())
        die(2, "bad input: " + st.error);
      if (document->truncated())
        std::cerr << "incnn-run: warning: the document has "
                  << document->allTokens().size() << " tokens; the model sees "
                  << "the first " << program.maxPositions
                  << " (its context window)\n";
      haveText = true;
      finishStep();
      return;
    }
    Status st = session.reset(tokens);
    if (!st.ok())
      die(2, "bad input: " + st.error);
    finishStep();
  }

  void runEdits(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      die(2, "cannot read edits file '" + path + "'");
    std::string line;
    int lineNo = 0;
    Status lineError;
    while (readEditLine(in, line, lineError)) {
      ++lineNo;
      if (!lineError.ok())
        die(2, path + ":" + std::to_string(lineNo) + ": " + lineError.error);
      if (line.find_first_not_of(" \t\r") == std::string::npos)
        continue;
      std::string where = path + ":" + std::to_string(lineNo) + ": ";
      std::vector<TokenEdit> edits = parseLine(line, where);
      Status st = pendingPlan ? document->commit(std::move(*pendingPlan))
                              : session.apply(edits);
      pendingPlan.reset();
      if (!st.ok())
        die(2, where + st.error);
      finishStep();
    }
    if (in.bad())
      die(2, "error reading edits file '" + path + "'");
  }

  void generate(int count) {
    std::vector<int32_t> generated;
    uint64_t macs = 0, macsFull = 0;
    double micros = 0;
    const char *stop = "count";
    for (int i = 0; i < count; ++i) {
      const std::vector<float> &logits = session.output();
      int32_t next = int32_t(argmaxOf(logits.data(), logits.size()));
      if (next == program.eosTokenId) {
        stop = "eos";
        break;
      }
      int64_t n = int64_t(session.tokens().size());
      if (n >= program.maxPositions) {
        std::cerr << "incnn-run: warning: context window full after " << i
                  << " generated tokens\n";
        stop = "context";
        break;
      }
      Status st = session.apply(TokenEdit::insert(n, {next}));
      if (!st.ok())
        die(1, st.error);
      generated.push_back(next);
      const EditStats &s = session.stats();
      macs += s.macs;
      macsFull += s.macsFull;
      micros += s.micros;
      verify("generated token " + std::to_string(i));
    }
    std::string decoded;
    bool haveDecoded = tokenizer && tokenizer->decode(generated, decoded).ok();
    if (opts.jsonOut) {
      json j;
      j["generated"] = generated;
      if (haveDecoded)
        j["text"] = decoded;
      j["stop"] = stop;
      j["macs"] = macs;
      j["macs_full"] = macsFull;
      j["us"] = std::round(micros * 10) / 10;
      std::cout << dumpJson(j) << "\n";
    } else {
      std::cout << "generated:";
      for (int32_t t : generated)
        std::cout << " " << t;
      std::cout << "\n";
      if (haveDecoded)
        std::cout << "text: " << decoded << "\n";
      std::cout << "stopped at " << stop << "; " << generated.size()
                << " tokens in " << formatMillis(micros) << ", " << macs
                << " MACs" << ratio(macs, macsFull) << "\n";
    }
    std::cout.flush();
  }

private:
  const Options &opts;
  const Program &program;
  Session session;
  std::unique_ptr<Evaluator> verifier;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Document> document;        ///< with --text
  std::optional<Document::Plan> pendingPlan; ///< the line's text edits
  bool haveText = false; ///< the document still matches the tokens
  int step = 0;

  bool addsBos() const {
    return program.task == TaskKind::CausalLM && program.bosTokenId >= 0;
  }

  static std::string formatMillis(double us) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.3f ms", us / 1000.0);
    return buf;
  }

  static std::string ratio(uint64_t macs, uint64_t full) {
    if (!macs)
      return "";
    char buf[48];
    std::snprintf(buf, sizeof(buf), " (%.2fx fewer than from scratch)",
                  double(full) / double(macs));
    return buf;
  }

  /// With --verify, compares the session output with a from-scratch run.
  void verify(const std::string &what) {
    if (!verifier)
      return;
    if (document && haveText)
      if (Status st = document->verifyTokens(); !st.ok())
        die(1, "--verify: " + what + ": " + st.error);
    if (Status st = compareWithFromScratch(session, *verifier); !st.ok())
      die(1, "--verify: " + what + ": " + st.error);
  }

  void finishStep() {
    verify("step " + std::to_string(step));
    print();
    ++step;
  }

  std::string labelName(size_t label) const {
    return label < program.labels.size() ? program.labels[label]
                                         : std::to_string(label);
  }

  /// A token classifier's label of each row (argmax of its logits).
  std::vector<size_t> tokenLabels() const {
    return rowLabels(session.output(), program.labels.size());
  }

  /// Per token: its label, and with a document its byte range.
  void addTokenOutputs(nlohmann::ordered_json &line) const {
    nlohmann::ordered_json labels = nlohmann::ordered_json::array();
    for (size_t label : tokenLabels())
      labels.push_back(labelName(label));
    line["labels"] = std::move(labels);
    line["output"] = outputToJson(session);
    if (document && haveText) {
      nlohmann::ordered_json bytes = nlohmann::ordered_json::array();
      for (int64_t i = 0; i < int64_t(session.tokens().size()); ++i) {
        int64_t begin = 0, end = 0;
        document->tokenBytes(i, begin, end);
        bytes.push_back({begin, end});
      }
      line["token_bytes"] = std::move(bytes);
    }
    line["changed_rows"] = session.stats().changedOutputRows;
  }

  /// Text form of a token classifier's step: the tokens whose label is not
  /// the first (e.g. "O"), with their text when there is a document.
  void printTokenLabels() const {
    std::vector<size_t> labels = tokenLabels();
    size_t flagged = 0;
    for (size_t label : labels)
      flagged += label != 0;
    std::cout << flagged << " of " << labels.size() << " tokens labelled";
    size_t shown = 0;
    for (size_t i = 0; i < labels.size() && shown < 20; ++i) {
      if (!labels[i])
        continue;
      std::cout << (shown++ ? ", " : ": ") << i;
      if (document && haveText) {
        int64_t begin = 0, end = 0;
        document->tokenBytes(int64_t(i), begin, end);
        std::cout << " '"
                  << document->text().substr(size_t(begin), size_t(end - begin))
                  << "'";
      }
      std::cout << " " << labelName(labels[i]);
    }
    if (shown < flagged)
      std::cout << ", ...";
    std::cout << "; " << session.stats().changedOutputRows.size()
              << " rows changed";
  }

  void print() {
    const std::vector<float> &out = session.output();
    const EditStats &st = session.stats();
    size_t best = argmaxOf(out.data(), out.size());
    bool classifier = program.task == TaskKind::Classifier;
    bool tagger = program.task == TaskKind::TokenClassifier;
    if (opts.jsonOut) {
      nlohmann::ordered_json line;
      line["step"] = step;
      line["tokens"] = session.tokens().size();
      if (classifier)
        line["label"] = labelName(best);
      if (tagger)
        addTokenOutputs(line);
      else
        line["output"] = floatsToJson(out);
      nlohmann::ordered_json stats = statsToJson(st);
      if (step == 0)
        stats["cache_bytes_per_token"] =
            session.cacheBytes() / int64_t(session.tokens().size());
      line["stats"] = std::move(stats);
      std::cout << dumpJson(line) << "\n";
      std::cout.flush();
      return;
    }
    std::cout << "step " << step << ": ";
    if (tagger) {
      printTokenLabels();
    } else if (classifier) {
      std::cout << "class " << best;
      if (best < program.labels.size())
        std::cout << " (" << program.labels[best] << ")";
    } else {
      std::cout << "next token " << best;
      if (tokenizer)
        std::cout << " '" << tokenizer->piece(int32_t(best)) << "'";
      std::cout << " (logit " << formatFloat(out[best]) << ")";
    }
    std::cout << "  [" << session.tokens().size() << " tokens, "
              << formatMillis(st.micros) << ", " << st.macs << " MACs"
              << (step ? ratio(st.macs, st.macsFull) : "") << "]\n";
    std::cout.flush();
  }

  // Edits -------------------------------------------------------------------

  /// Parses one line (an edit object or an array of them, one batch) into
  /// token edits without touching the session; the session validates them
  /// when it applies them. A text edit also sets pendingPlan, the validated
  /// text edits.
  std::vector<TokenEdit> parseLine(const std::string &line,
                                   const std::string &where) {
    EditLine parsed;
    if (Status st = parseEditLine(line, program.vocabSize,
                                  size_t(program.maxPositions), parsed);
        !st.ok())
      die(2, where + st.error);
    std::vector<TokenEdit> edits = std::move(parsed.tokenEdits);
    const std::vector<TextEdit> &textEdits = parsed.textEdits;
    if (!textEdits.empty() && !tokenizer)
      die(2, where + "text edits need a program with a tokenizer");
    if (!textEdits.empty() && !haveText)
      die(2, where + "text edits need --text and no earlier token edit");
    if (!textEdits.empty()) {
      Document::Plan plan;
      if (Status st = document->plan(textEdits, plan); !st.ok())
        die(2, where + st.error);
      edits = plan.tokenEdits;
      pendingPlan = std::move(plan);
    }
    if (textEdits.empty())
      haveText = false; // token edits detach the document text
    return edits;
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
    if (opts.printProgram) {
      std::cout << printProgram(program);
      return 0;
    }
    Runner runner(opts, program);
    runner.start();
    if (opts.editsFile)
      runner.runEdits(*opts.editsFile);
    if (opts.generate > 0)
      runner.generate(opts.generate);
  } catch (const Exit &e) {
    std::cout.flush();
    std::cerr << "incnn-run: error: " << e.message << "\n";
    return e.code;
  } catch (const std::exception &e) {
    std::cout.flush();
    std::cerr << "incnn-run: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
