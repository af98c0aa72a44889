//===- incnn-bench.cpp - replay edit traces, report incremental ratios ----===//
//
//   incnn-bench MODEL.incnn --trace EDITS.jsonl[.gz] [--json OUT]
//   incnn-bench MODEL.incnn --synthetic TEXT [--edits N] [--json OUT]
//
// Every atomic edit is applied to the document text, turned into token edits
// by the model's tokenizer and applied incrementally. Per edit it measures the
// incremental update against a from-scratch run of the same tokens in the same
// process (MACs and wall time), the prefix-reuse baseline (recompute from the
// first changed token), and checks the output bits.
//
//===----------------------------------------------------------------------===//
#include "incnn/runtime/Document.h"
#include "incnn/runtime/Runtime.h"
#include "incnn/runtime/Serialize.h"
#include "incnn/runtime/Session.h"
#include "incnn/runtime/Tokenizer.h"

#include "ToolOptions.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace incnn::runtime;
using json = nlohmann::json;
using incnn::tools::ToolCli;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string model, trace, synthetic, jsonOut, torchModel;
  int64_t maxDocs = -1, syntheticEdits = 300, checkEvery = 1, span = 1;
  int threads = 0;
  bool quiet = false;
  /// Where synthetic edits draw their new tokens from: any vocabulary id, or
  /// the ids of the document's initial tokens (realistic text).
  bool newTokensFromDocument = false;
};

[[noreturn]] void die(const std::string &message, int code = 1) {
  std::fprintf(stderr, "incnn-bench: error: %s\n", message.c_str());
  std::exit(code);
}

Options parseArgs(int argc, char **argv) {
  Options o;
  std::string newTokens = "any";
  ToolCli cli("incnn-bench",
              "MODEL.incnn (--trace EDITS.jsonl[.gz] | --synthetic TEXT_FILE)\n"
              "                   [--json OUT] [--docs N] [--edits N] "
              "[--span K] [--new-tokens any|document]\n"
              "                   [--check-every K] [--threads N] "
              "[--torch DIR] [--quiet]",
              "Replays edits on a document: every edit is applied "
              "incrementally and measured\nagainst a from-scratch run of "
              "the same tokens (MACs, wall time, output bits).");
  cli.addModel(o.model);
  cli.addString("--trace", o.trace,
                "PEP-style edit histories (base text + line hunks)",
                "EDITS.jsonl[.gz]");
  cli.addString("--synthetic", o.synthetic,
                "single-token replace/insert/delete at uniform positions",
                "TEXT_FILE");
  cli.addString("--json", o.jsonOut,
                "write the summary and every edit's statistics to OUT "
                "(docs/json.md)",
                "OUT");
  cli.addInt("--docs", o.maxDocs, 0, INT64_MAX,
             "replay only the first N documents of the trace");
  cli.addInt("--edits", o.syntheticEdits, 0, INT64_MAX,
             "synthetic edits (default 300)");
  cli.addInt("--span", o.span, 0, INT64_MAX,
             "synthetic edits replace, insert or delete K consecutive tokens "
             "(default 1; PEP hunks are ~30)",
             "K");
  cli.addChoice("--new-tokens", newTokens, {"any", "document"},
                "synthetic edits draw the new token from the whole vocabulary "
                "(default) or from the document's own tokens");
  cli.addInt("--check-every", o.checkEvery, 0, INT64_MAX,
             "run from scratch (timing and exactness) every K edits "
             "(default 1)",
             "K");
  cli.addThreads(o.threads);
  cli.addString("--torch", o.torchModel,
                "also time PyTorch (Debian torch, training/incnn_ref.py) on "
                "the checkpoint DIR the program was compiled from",
                "DIR");
  cli.addFlag("--quiet", o.quiet, "no progress on stderr");
  cli.parse(argc, argv);
  o.newTokensFromDocument = newTokens == "document";
  o.checkEvery = std::max<int64_t>(1, o.checkEvery);
  if (o.trace.empty() == o.synthetic.empty())
    cli.usageError("give exactly one of --trace and --synthetic");
  return o;
}

/// Reads a file, gunzipping it when it is gzip-compressed.
std::string readMaybeGzip(const std::string &path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f)
    die("cannot open " + path);
  std::string out;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(f, buffer, sizeof(buffer))) > 0)
    out.append(buffer, size_t(n));
  int err = 0;
  const char *message = gzerror(f, &err);
  gzclose(f);
  if (n < 0 || err < 0)
    die(path + ": " + (message ? message : "read error"));
  return out;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(std::min<double>(
      double(v.size() - 1), std::floor(p * double(v.size() - 1) + 0.5)));
  return v[i];
}

double mean(const std::vector<double> &v) {
  double s = 0;
  for (double x : v)
    s += x;
  return v.empty() ? 0 : s / double(v.size());
}

/// Measured read bandwidth (bytes/s) over a buffer larger than the caches.
double measureBandwidth() {
  std::vector<float> buffer(size_t(64) << 20, 1.0f); // 256 MB
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < 3; ++r) {
    auto t0 = Clock::now();
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= buffer.size(); i += 4) {
      s0 += buffer[i];
      s1 += buffer[i + 1];
      s2 += buffer[i + 2];
      s3 += buffer[i + 3];
    }
    sink = s0 + s1 + s2 + s3;
    double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, double(buffer.size() * sizeof(float)) / sec);
  }
  (void)sink;
  return best;
}

struct EditRecord {
  int64_t tokens = 0, changedRows = 0;
  uint64_t stateBytes = 0;
  uint64_t macs = 0, macsFull = 0, macsPrefix = 0, macsFloor = 0;
  double us = 0, usFull = -1, usTokenize = 0, usFullTokenize = -1;
  int64_t retokenizedBytes = 0;
  bool checked = false, exact = true;
  nlohmann::ordered_json stats; ///< statsToJson of the update
  std::vector<double> stepUs;   ///< EditStats::stepMicros
  std::vector<AttentionMicros> attentionUs;
};

class Bench {
public:
  Bench(const Options &options, const Program &program,
        const Tokenizer &tokenizer)
      : options(options), program(program), session(program, {options.threads}),
        oracle(program, {options.threads}), document(session, tokenizer) {
    if (!oracle.prepare().ok())
      die("cannot prepare the weights");
  }

  void resetDocument(const std::string &text) {
    if (Status st = document.reset(text); !st.ok())
      die("cannot evaluate a document: " + st.error);
  }

  /// Applies one text edit and records it.
  void edit(int64_t start, int64_t end, const std::string &replacement) {
    Document::EditResult r;
    if (Status st = document.applyText(start, end, replacement, &r); !st.ok())
      die("a trace edit was rejected: " + st.error);
    record(r, true);
  }

  /// Applies token edits directly to the session and records them.
  void tokenEdit(const std::vector<TokenEdit> &edits) {
    if (Status st = session.apply(edits); !st.ok())
      die("a synthetic edit was rejected: " + st.error);
    Document::EditResult r;
    r.insideWindow = r.tokensChanged = true;
    r.firstChanged = edits.front().at;
    r.tokenEdits = edits;
    record(r);
  }

  void record(const Document::EditResult &r, bool textEdit = false) {
    ++total;
    if (!r.tokensChanged) {
      ++unchangedTokens; // e.g. a whitespace change the tokenizer collapses
      return;
    }
    if (!r.insideWindow) {
      ++outsideWindow;
      return;
    }
    const EditStats &s = session.stats();
    EditRecord rec;
    rec.tokens = s.numTokens;
    rec.macs = s.macs;
    rec.macsFull = s.macsFull;
    rec.stateBytes = s.stateBytes;
    rec.us = s.micros;
    rec.usTokenize = r.tokenizeMicros;
    rec.retokenizedBytes = r.retokenizedBytes;
    rec.stats = statsToJson(s);
    rec.stepUs = s.stepMicros;
    rec.attentionUs = s.attentionMicros;
    // Prefix reuse: rows before the first change are kept, the rest rerun.
    rec.macsPrefix = s.macsFull - countMacs(program, r.firstChanged);
    for (const TokenEdit &e : r.tokenEdits)
      rec.changedRows +=
          e.kind == TokenEdit::Kind::Delete ? 0 : int64_t(e.tokens.size());
    // Floor: the changed rows alone through every layer.
    rec.macsFloor = uint64_t(double(countMacs(program, 1)) *
                             double(std::max<int64_t>(rec.changedRows, 1)));
    if (records.size() % size_t(options.checkEvery) == 0) {
      if (textEdit) { // a full tokenization, checked against the incremental
        auto t0 = Clock::now();
        if (Status st = document.verifyTokens(); !st.ok()) {
          std::fprintf(stderr, "\nincremental tokenization: %s\n",
                       st.error.c_str());
          ++mismatches;
        }
        rec.usFullTokenize =
            std::chrono::duration<double, std::micro>(Clock::now() - t0)
                .count();
      }
      auto t0 = Clock::now();
      Status exact = compareWithFromScratch(session, oracle);
      rec.usFull =
          std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      rec.checked = true;
      rec.exact = exact.ok();
      if (!rec.exact) {
        std::fprintf(stderr, "\nedit %zu: %s\n", records.size(),
                     exact.error.c_str());
        ++mismatches;
      }
    }
    records.push_back(std::move(rec));
  }

  void progress(const std::string &where, bool force = false) {
    if (options.quiet)
      return;
    auto now = Clock::now();
    if (!force &&
        std::chrono::duration<double>(now - lastProgress).count() < 0.5)
      return;
    lastProgress = now;
    std::vector<double> ratios;
    for (const EditRecord &r : records)
      ratios.push_back(double(r.macsFull) /
                       double(std::max<uint64_t>(r.macs, 1)));
    std::fprintf(stderr,
                 "\r%s  edits %lld (outside window %lld)  median MAC ratio "
                 "%.1fx  mismatches %lld   ",
                 where.c_str(), (long long)total, (long long)outsideWindow,
                 median(ratios), (long long)mismatches);
    if (force)
      std::fprintf(stderr, "\n");
  }

  json summary(double bandwidth) const {
    std::vector<double> macRatio, wallRatio, prefixRatio, floorRatio, us,
        usFull, tok, tokens, fullTok, endToEnd, tokOverUpdate, retokenized,
        stateBytes;
    bool exact = mismatches == 0;
    int64_t checked = 0;
    for (const EditRecord &r : records) {
      double m = double(std::max<uint64_t>(r.macs, 1));
      macRatio.push_back(double(r.macsFull) / m);
      prefixRatio.push_back(double(r.macsFull) /
                            double(std::max<uint64_t>(r.macsPrefix, 1)));
      floorRatio.push_back(double(r.macsFull) /
                           double(std::max<uint64_t>(r.macsFloor, 1)));
      us.push_back(r.us);
      stateBytes.push_back(double(r.stateBytes));
      tok.push_back(r.usTokenize);
      tokens.push_back(double(r.tokens));
      tokOverUpdate.push_back(r.usTokenize / std::max(r.us, 1e-3));
      retokenized.push_back(double(r.retokenizedBytes));
      if (r.checked) {
        ++checked;
        usFull.push_back(r.usFull);
        wallRatio.push_back(r.usFull / std::max(r.us, 1e-3));
        if (r.usFullTokenize >= 0) {
          fullTok.push_back(r.usFullTokenize);
          endToEnd.push_back((r.usFullTokenize + r.usFull) /
                             std::max(r.usTokenize + r.us, 1e-3));
        }
      }
    }
    int64_t weightBytes = 0;
    for (const Weight &w : program.weights)
      weightBytes += w.numElements() * 4;
    json s;
    s["edits"] = records.size();
    s["edits_total"] = total;
    s["outside_window"] = outsideWindow;
    s["no_token_change"] = unchangedTokens;
    s["checked"] = checked;
    s["exact"] = exact && checked > 0;
    s["median_mac_ratio"] = median(macRatio);
    s["mean_mac_ratio"] = mean(macRatio);
    s["median_wall_ratio"] = median(wallRatio);
    s["p90_wall_ratio"] = percentile(wallRatio, 0.9);
    s["p10_wall_ratio"] = percentile(wallRatio, 0.1);
    s["median_prefix_reuse_mac_ratio"] = median(prefixRatio);
    s["median_floor_mac_ratio"] = median(floorRatio);
    s["median_update_us"] = median(us);
    s["p90_update_us"] = percentile(us, 0.9);
    s["p99_update_us"] = percentile(us, 0.99);
    s["median_from_scratch_us"] = median(usFull);
    s["median_tokenize_us"] = median(tok);
    s["p99_tokenize_us"] = percentile(tok, 0.99);
    s["median_tokenize_over_update"] = median(tokOverUpdate);
    s["median_retokenized_bytes"] = median(retokenized);
    s["median_full_tokenize_us"] = median(fullTok);
    // Per checked text edit: (full tokenization + from scratch) over
    // (incremental tokenization + update).
    s["median_end_to_end_ratio"] = median(endToEnd);
    s["p10_end_to_end_ratio"] = percentile(endToEnd, 0.1);
    s["p90_end_to_end_ratio"] = percentile(endToEnd, 0.9);
    s["median_tokens"] = median(tokens);
    s["cache_bytes_per_token"] =
        session.tokens().empty()
            ? 0.0
            : double(session.cacheBytes()) / double(session.tokens().size());
    s["weight_bytes"] = weightBytes;
    s["bandwidth_gb_s"] = bandwidth / 1e9;
    s["weight_stream_us"] = double(weightBytes) / bandwidth * 1e6;
    // The update's floor in memory traffic: its rewritten accumulators.
    s["median_state_bytes"] = median(stateBytes);
    s["state_stream_us"] = median(stateBytes) / bandwidth * 1e6;
    s["time_by_step"] = timeByStep();
    return s;
  }

  /// Shares of the summed update time: each attention update (and its
  /// parts), the other steps by kind, and the work outside the steps.
  json timeByStep() const {
    size_t numSteps = program.steps.size();
    std::vector<double> steps(numSteps, 0.0);
    std::vector<AttentionMicros> layers;
    double total = 0;
    for (const EditRecord &r : records) {
      total += r.us;
      for (size_t i = 0; i < std::min(numSteps, r.stepUs.size()); ++i)
        steps[i] += r.stepUs[i];
      layers.resize(std::max(layers.size(), r.attentionUs.size()));
      for (size_t l = 0; l < r.attentionUs.size(); ++l) {
        layers[l].plan += r.attentionUs[l].plan;
        layers[l].deltaTerms += r.attentionUs[l].deltaTerms;
        layers[l].fullRows += r.attentionUs[l].fullRows;
      }
    }
    auto share = [&](double us) { return total > 0 ? us / total : 0.0; };
    json out = json::array();
    std::map<std::string, std::pair<double, int64_t>> byKind;
    double inSteps = 0;
    size_t layer = 0;
    for (size_t i = 0; i < numSteps; ++i) {
      const Step &step = program.steps[i];
      inSteps += steps[i];
      if (step.kind != StepKind::AttentionUpdate || layer >= layers.size()) {
        auto &[us, count] = byKind[stepKindName(step.kind)];
        us += steps[i];
        ++count;
        continue;
      }
      const AttentionMicros &t = layers[layer++];
      const Instr &in = program.instrs[size_t(step.instr)];
      std::string name = program.values[size_t(in.results[0])].name;
      out.push_back(
          {{"step", "attention_update @" + std::to_string(step.instr) +
                        (name.empty() ? "" : " '" + name + "'")},
           {"share", share(steps[i])},
           {"plan", share(t.plan)},
           {"delta_terms", share(t.deltaTerms)},
           {"full_rows", share(t.fullRows)}});
    }
    for (const auto &[kind, usCount] : byKind)
      out.push_back({{"step", kind + " (" + std::to_string(usCount.second) +
                                  (usCount.second == 1 ? " step)" : " steps)")},
                     {"share", share(usCount.first)}});
    out.push_back(
        {{"step", "outside the steps"}, {"share", share(total - inSteps)}});
    return out;
  }

  json perEdit() const {
    json edits = json::array();
    for (const EditRecord &r : records) {
      // The update's statistics (docs/json.md), then the benchmark's own.
      json e = r.stats;
      e["changed_rows"] = r.changedRows;
      e["macs_prefix"] = r.macsPrefix;
      e["tokenize_us"] = r.usTokenize;
      e["retokenized_bytes"] = r.retokenizedBytes;
      if (r.usFullTokenize >= 0)
        e["full_tokenize_us"] = r.usFullTokenize;
      if (r.checked) {
        e["us_full"] = r.usFull;
        e["exact"] = r.exact;
      }
      edits.push_back(std::move(e));
    }
    return edits;
  }

  Session &getSession() { return session; }
  Document &getDocument() { return document; }
  int64_t mismatches = 0;

private:
  const Options &options;
  const Program &program;
  Session session;
  Evaluator oracle;
  Document document;
  std::vector<EditRecord> records;
  int64_t total = 0, outsideWindow = 0, unchangedTokens = 0;
  Clock::time_point lastProgress{};
};

/// Byte offset of line `line` (0-based; lines end with '\n').
int64_t lineOffset(const std::string &text, int64_t line) {
  int64_t offset = 0;
  for (int64_t l = 0; l < line; ++l) {
    size_t nl = text.find('\n', size_t(offset));
    if (nl == std::string::npos)
      return int64_t(text.size());
    offset = int64_t(nl) + 1;
  }
  return offset;
}

void replayTrace(Bench &bench, const Options &o) {
  std::string data = readMaybeGzip(o.trace);
  std::istringstream lines(data);
  std::string line;
  int64_t docIndex = 0, lineNo = 0;
  int64_t numDocs = std::count(data.begin(), data.end(), '\n');
  while (std::getline(lines, line)) {
    ++lineNo;
    if (line.empty())
      continue;
    if (o.maxDocs >= 0 && docIndex >= o.maxDocs)
      break;
    json doc = json::parse(line, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("base") ||
        !doc["base"].is_string() || !doc.contains("revisions") ||
        !doc["revisions"].is_array())
      die(o.trace + ":" + std::to_string(lineNo) +
          ": expected an object with 'base' text and 'revisions'");
    ++docIndex;
    std::string where =
        "[doc " + std::to_string(docIndex) + "/" +
        std::to_string(o.maxDocs >= 0 ? std::min(o.maxDocs, numDocs)
                                      : numDocs) +
        "]";
    bench.resetDocument(doc["base"].get<std::string>());
    for (const json &rev : doc["revisions"]) {
      if (!rev.is_object() || !rev.contains("hunks") ||
          !rev["hunks"].is_array())
        die(o.trace + ":" + std::to_string(lineNo) + ": malformed revision");
      // Hunks refer to the previous revision: apply from the highest start.
      std::vector<json> hunks(rev["hunks"].begin(), rev["hunks"].end());
      std::stable_sort(hunks.begin(), hunks.end(),
                       [](const json &a, const json &b) {
                         return a[0].get<int64_t>() > b[0].get<int64_t>();
                       });
      for (const json &h : hunks) {
        if (!h.is_array() || h.size() != 3 || !h[0].is_number_integer() ||
            !h[1].is_number_integer() || !h[2].is_array())
          die(o.trace + ":" + std::to_string(lineNo) + ": malformed hunk");
        const std::string &text = bench.getDocument().text();
        int64_t start = lineOffset(text, h[0].get<int64_t>());
        int64_t end =
            lineOffset(text, h[0].get<int64_t>() + h[1].get<int64_t>());
        std::string inserted;
        for (const json &l : h[2])
          if (l.is_string())
            inserted += l.get<std::string>();
        bench.edit(start, end, inserted);
        bench.progress(where);
      }
    }
  }
  bench.progress("[done]", true);
}

void runSynthetic(Bench &bench, const Options &o) {
  std::ifstream in(o.synthetic, std::ios::binary);
  if (!in)
    die("cannot read " + o.synthetic);
  std::stringstream buffer;
  buffer << in.rdbuf();
  bench.resetDocument(buffer.str());
  Session &session = bench.getSession();
  std::mt19937 rng(1234);
  std::vector<int32_t> pool;
  if (o.newTokensFromDocument)
    pool = session.tokens();
  if (pool.empty())
    for (int32_t id = 0; id < session.program().vocabSize; ++id)
      pool.push_back(id);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  auto tok = [&](std::mt19937 &g) { return pool[pick(g)]; };
  // Replace / insert / delete of `span` tokens at uniform positions, in
  // turn; the length stays within the window.
  int64_t span = std::max<int64_t>(1, o.span);
  for (int64_t e = 0; e < o.syntheticEdits; ++e) {
    int64_t n = int64_t(session.tokens().size());
    int64_t k = std::min(span, n);
    std::uniform_int_distribution<int64_t> pos(0, n - k);
    int kind = int(e % 3);
    if (kind == 1 && n + k > session.program().maxPositions)
      kind = 2;
    if (kind == 2 && n <= k)
      kind = 0;
    std::vector<int32_t> fresh(static_cast<size_t>(k));
    for (int32_t &t : fresh)
      t = tok(rng);
    if (kind == 0)
      bench.tokenEdit({TokenEdit::replace(pos(rng), fresh)});
    else if (kind == 1)
      bench.tokenEdit({TokenEdit::insert(pos(rng), fresh)});
    else
      bench.tokenEdit({TokenEdit::erase(pos(rng), k)});
    bench.progress("[synthetic]");
  }
  bench.progress("[done]", true);
}

/// Times PyTorch (training/bench_torch_model.py, Debian's torch) on the same
/// checkpoint and window length; returns the median seconds or -1.
double torchSeconds(const std::string &modelDir, int64_t tokens, int threads) {
  std::string cmd = "/usr/bin/python3 training/bench_torch_model.py '" +
                    modelDir + "' --tokens " + std::to_string(tokens) +
                    " --threads " + std::to_string(threads ? threads : 2);
  FILE *p = popen(cmd.c_str(), "r");
  if (!p)
    return -1;
  char line[256] = {0};
  double seconds = -1;
  while (std::fgets(line, sizeof(line), p))
    if (std::sscanf(line, "median_s %lf", &seconds) == 1)
      break;
  pclose(p);
  return seconds;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  Program program;
  if (Status st = loadProgram(o.model, program); !st.ok())
    die(st.error);
  if (program.tokenizer.empty())
    die(o.model + " has no tokenizer: text edits need one");
  std::unique_ptr<Tokenizer> tokenizer;
  if (Status st = Tokenizer::create(program.tokenizer, tokenizer); !st.ok())
    die(st.error);
  Bench bench(o, program, *tokenizer);
  if (!o.trace.empty())
    replayTrace(bench, o);
  else
    runSynthetic(bench, o);
  double bandwidth = measureBandwidth();
  json s = bench.summary(bandwidth);
  std::printf("\n== incnn-bench: %s on %s\n", o.model.c_str(),
              (o.trace.empty() ? o.synthetic : o.trace).c_str());
  std::printf("edits in window          %lld (outside the window: %lld; "
              "no token changed: %lld; checked from scratch: %lld)\n",
              (long long)s["edits"].get<int64_t>(),
              (long long)s["outside_window"].get<int64_t>(),
              (long long)s["no_token_change"].get<int64_t>(),
              (long long)s["checked"].get<int64_t>());
  std::printf("exact                    %s\n",
              s["exact"].get<bool>() ? "yes (every checked edit, bit for bit)"
                                     : "NO");
  std::printf("MAC ratio                median %.1fx, mean %.1fx  "
              "(prefix reuse: median %.1fx; changed-rows floor: %.0fx)\n",
              s["median_mac_ratio"].get<double>(),
              s["mean_mac_ratio"].get<double>(),
              s["median_prefix_reuse_mac_ratio"].get<double>(),
              s["median_floor_mac_ratio"].get<double>());
  std::printf(
      "wall ratio               median %.1fx, p10 %.1fx, p90 %.1fx "
      "(update %.0f us vs from scratch %.0f us; tokenize %.0f us)\n",
      s["median_wall_ratio"].get<double>(), s["p10_wall_ratio"].get<double>(),
      s["p90_wall_ratio"].get<double>(), s["median_update_us"].get<double>(),
      s["median_from_scratch_us"].get<double>(),
      s["median_tokenize_us"].get<double>());
  std::printf(
      "update                   median %.0f us, p90 %.0f us, p99 %.0f us\n",
      s["median_update_us"].get<double>(), s["p90_update_us"].get<double>(),
      s["p99_update_us"].get<double>());
  if (s["median_full_tokenize_us"].get<double>() > 0)
    std::printf(
        "tokenize                 incremental median %.0f us (p99 %.0f us, "
        "%.0f bytes read; %.2f of the update) vs full %.0f us\n"
        "end to end               median %.1fx, p10 %.1fx, p90 %.1fx (full "
        "tokenization + from scratch vs incremental tokenization + update)\n",
        s["median_tokenize_us"].get<double>(),
        s["p99_tokenize_us"].get<double>(),
        s["median_retokenized_bytes"].get<double>(),
        s["median_tokenize_over_update"].get<double>(),
        s["median_full_tokenize_us"].get<double>(),
        s["median_end_to_end_ratio"].get<double>(),
        s["p10_end_to_end_ratio"].get<double>(),
        s["p90_end_to_end_ratio"].get<double>());
  std::printf("cache                    %.0f bytes per token\n",
              s["cache_bytes_per_token"].get<double>());
  std::printf("weights                  %.1f MB; streaming them once takes "
              "%.0f us at %.1f GB/s\n",
              double(s["weight_bytes"].get<int64_t>()) / 1e6,
              s["weight_stream_us"].get<double>(),
              s["bandwidth_gb_s"].get<double>());
  std::printf("accumulators             median %.1f MB rewritten per edit; "
              "reading them once takes %.0f us (%.2f of the median update)\n",
              s["median_state_bytes"].get<double>() / 1e6,
              s["state_stream_us"].get<double>(),
              s["state_stream_us"].get<double>() /
                  std::max(s["median_update_us"].get<double>(), 1e-3));
  std::printf("time by step             share of the summed update time\n");
  for (const json &t : s["time_by_step"]) {
    std::printf("  %-42s %5.1f%%", t["step"].get<std::string>().c_str(),
                100 * t["share"].get<double>());
    if (t.contains("plan"))
      std::printf(": plan %.1f%%, delta terms %.1f%%, full rows %.1f%%",
                  100 * t["plan"].get<double>(),
                  100 * t["delta_terms"].get<double>(),
                  100 * t["full_rows"].get<double>());
    std::printf("\n");
  }
  if (!o.torchModel.empty()) {
    int64_t n = int64_t(s["median_tokens"].get<double>());
    double t = torchSeconds(o.torchModel, n, o.threads);
    if (t > 0) {
      double ours = s["median_from_scratch_us"].get<double>() * 1e-6;
      double update = s["median_update_us"].get<double>() * 1e-6;
      s["torch_from_scratch_us"] = t * 1e6;
      s["torch_vs_incnn_scratch"] = t / ours;
      s["torch_vs_incnn_update"] = t / update;
      double incremental =
          update + s["median_tokenize_us"].get<double>() * 1e-6;
      s["torch_end_to_end_ratio"] = t / incremental;
      std::printf(
          "PyTorch (same weights)   %.0f us per forward at %lld tokens: "
          "%.1fx our from-scratch time, %.1fx our median update\n",
          t * 1e6, (long long)n, t / ours, t / update);
    } else {
      std::printf(
          "PyTorch (same weights)   unavailable (needs /usr/bin/python3 "
          "with torch, run from the repository root)\n");
    }
  }
  if (!o.jsonOut.empty()) {
    json out;
    out["model"] = o.model;
    out["input"] = o.trace.empty() ? o.synthetic : o.trace;
    out["summary"] = s;
    out["edits"] = bench.perEdit();
    std::ofstream f(o.jsonOut);
    if (!f)
      die("cannot write " + o.jsonOut);
    f << out.dump(1) << "\n";
  }
  return bench.mismatches ? 1 : 0;
}
